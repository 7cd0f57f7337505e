package mapping

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestKeyType(t *testing.T) {
	const notKey = "cannot be a DynamoDB key attribute (allowed: numbers, strings, bytea and other scalar types)"
	cases := []struct {
		t    *Type
		want types.ScalarAttributeType
		err  string
	}{
		{tInt2, "N", ""}, {tInt4, "N", ""}, {tInt8, "N", ""}, {tOID, "N", ""},
		{tFloat4, "N", ""}, {tFloat8, "N", ""}, {tNumeric, "N", ""},
		{tBytea, "B", ""},
		{tText, "S", ""}, {tVarchar, "S", ""}, {tBPChar, "S", ""}, {tName, "S", ""}, {tUUID, "S", ""},
		{tEnum, "S", ""}, {tCitext, "S", ""}, {tDate, "S", ""}, {tTimestamp, "S", ""},
		{tTimestamptz, "S", ""}, {tTime, "S", ""}, {tInterval, "S", ""}, {tInet, "S", ""},
		{tMoney, "S", ""}, {tInt2vector, "S", ""},
		{tBool, "", "column type boolean " + notKey},
		{tJSON, "", "column type json " + notKey},
		{tJSONB, "", "column type jsonb " + notKey},
		{tInt4Arr, "", "column type _int4 " + notKey},
		{tTextArr, "", "column type _text " + notKey},
		{tComposite, "", "column type pair " + notKey},
	}
	for _, c := range cases {
		got, err := KeyType(c.t)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("KeyType(%s) = %q, %v; want error %q", c.t.Name, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("KeyType(%s) = %q, %v; want %q", c.t.Name, got, err, c.want)
		}
	}
	if _, err := KeyType(nil); err == nil {
		t.Error("KeyType(nil) succeeded")
	}
}

func TestKeyValue(t *testing.T) {
	cases := []struct {
		t    *Type
		text string
		want string
		err  string
	}{
		{tInt8, "-42", `N"-42"`, ""},
		{tNumeric, "123.4500", `N"123.4500"`, ""},
		{tFloat8, "1e+30", `N"1e+30"`, ""},
		{tText, "abc", `S"abc"`, ""},
		{tBPChar, "ab  ", `S"ab  "`, ""},
		{tUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `S"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, ""},
		{tTimestamptz, "2024-05-01 10:20:30+02", `S"2024-05-01T08:20:30.000000Z"`, ""},
		{tTimestamptz, "infinity", `S"infinity"`, ""},
		{tBytea, `\x00ff`, "B:00ff", ""},

		{tNumeric, "NaN", "", "numeric value NaN cannot be a DynamoDB N key"},
		{tFloat8, "-Infinity", "", "float8 value -Infinity cannot be a DynamoDB N key"},
		{tNumeric, "123456789012345678901234567890123456789", "", "numeric value 123456789012345678901234567890123456789 cannot be a DynamoDB N key (more than 38 significant digits"},
		{tFloat8, "1e+300", "", "float8 value 1e+300 cannot be a DynamoDB N key"},
		{tText, "", "", "empty text value cannot be a DynamoDB S key"},
		{tBytea, `\x`, "", "empty bytea value cannot be a DynamoDB B key"},
		{tInt4, "x", "", `mapping int4: invalid number "x"`},
		{tBool, "t", "", "column type boolean cannot be a DynamoDB key attribute"},
		{tJSONB, `{}`, "", "column type jsonb cannot be a DynamoDB key attribute"},
	}
	for _, c := range cases {
		got, err := KeyValue(c.t, []byte(c.text))
		if c.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), c.err) {
				t.Errorf("KeyValue(%s, %q) = %s, %v; want error %q", c.t.Name, c.text, show(got), err, c.err)
			}
			continue
		}
		if err != nil || show(got) != c.want {
			t.Errorf("KeyValue(%s, %q) = %s, %v; want %s", c.t.Name, c.text, show(got), err, c.want)
			continue
		}
		// The key attribute must equal the column attribute.
		v, _ := Value(c.t, []byte(c.text))
		if show(v) != show(got) {
			t.Errorf("KeyValue(%s, %q) = %s but Value = %s", c.t.Name, c.text, show(got), show(v))
		}
	}
}
