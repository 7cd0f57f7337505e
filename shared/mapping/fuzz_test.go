package mapping

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/localstack/dynamocheck"
)

// fuzzTypes is every mapped type the fuzzer tries, one per mapping path.
var fuzzTypes = []*Type{
	tInt2, tInt4, tInt8, tOID, tFloat4, tFloat8, tNumeric, tMoney, tBool, tBytea, tJSON, tJSONB,
	tText, tVarchar, tBPChar, tName, tUUID, tEnum, tCitext, tTimestamptz, tTimestamp, tDate, tTime,
	tTimetz, tInterval, tInet, tCidr, tMacaddr, tPoint, tBox, tXML, tTSVector, tBit, tInt4range,
	tComposite, tInt2vector,
	tInt4Arr, tTextArr, tBoolArr, tNumericArr, tJSONBArr, tByteaArr, tTstzArr, tBoxArr, tEnumArr, tCompositeArr,
}

func fuzzTypeIndex(t *Type) uint8 {
	for i, ft := range fuzzTypes {
		if ft == t {
			return uint8(i)
		}
	}
	panic("type not in fuzzTypes: " + t.Name)
}

// FuzzValue feeds the text form of every mapped type to Value (and KeyValue): it must
// never panic, an error must name the type, what it returns must be an attribute DynamoDB
// accepts, and it must round-trip where the mapping promises it (numbers keep their
// digits, bytea its bytes, json its document, timestamptz its instant).
func FuzzValue(f *testing.F) {
	seeds := []struct {
		t    *Type
		text string
	}{
		{tInt4, "42"}, {tInt8, "-9223372036854775808"}, {tNumeric, "123.4500"}, {tNumeric, "NaN"},
		{tNumeric, "123456789012345678901234567890123456789"}, {tNumeric, "0." + strings.Repeat("0", 129) + "1"},
		{tNumeric, "1" + strings.Repeat("0", 126)}, {tFloat8, "1.5e-07"}, {tFloat8, "-Infinity"}, {tFloat4, "3.4028235e+38"},
		{tMoney, "$1,234.56"}, {tBool, "t"}, {tBool, "f"}, {tBytea, `\x0102ff`}, {tBytea, `ab\\\001\377`}, {tBytea, `\x012`},
		{tJSONB, `{"a": [1, {"b": null}], "c": 1e400, "d": "x", "e": true}`}, {tJSON, `[1.50, -0, 1e2]`},
		{tJSONB, strings.Repeat("[", 33) + strings.Repeat("]", 33)}, {tJSONB, `{"": 1}`}, {tJSON, `"caf\u00e9 \ud83d\ude00"`},
		{tText, "hello"}, {tText, "a\xffb"}, {tUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
		{tTimestamptz, "2024-05-01 10:20:30.123456+00"}, {tTimestamptz, "1850-01-01 00:00:00+01:24:00"},
		{tTimestamptz, "0044-03-15 12:00:00+00 BC"}, {tTimestamptz, "10000-01-01 00:00:00+00"}, {tTimestamptz, "infinity"},
		{tTimestamptz, "9999-12-31 23:00:00-05"}, {tTimestamp, "2024-05-01 10:20:30.5"}, {tDate, "2024-05-01"},
		{tInterval, "1 year 2 mons 3 days 04:05:06"}, {tInterval, "-00:00:01.5"}, {tTimetz, "10:20:30+02"},
		{tInt4Arr, "{1,2,NULL}"}, {tTextArr, `{"a,b","c\"d",NULL,"NULL"}`}, {tInt4Arr, "[0:1]={1,2}"},
		{tJSONBArr, `{"{\"a\": [1]}",NULL}`}, {tByteaArr, `{"\\x0102","\\x"}`}, {tTstzArr, `{"2024-05-01 10:20:30.5+00",infinity}`},
		{tBoxArr, `{(2,2),(0,0);(3,3),(1,1)}`}, {tNumericArr, `{1.50,NaN}`}, {tInt2vector, "1 2 3"},
	}
	for _, s := range seeds {
		f.Add(fuzzTypeIndex(s.t), []byte(s.text))
	}
	f.Fuzz(func(t *testing.T, which uint8, text []byte) {
		typ := fuzzTypes[int(which)%len(fuzzTypes)]
		in := bytes.Clone(text)
		av, err := Value(typ, text)
		if !bytes.Equal(in, text) {
			t.Fatalf("Value(%s) changed its input", typ.Name)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "mapping "+typ.Name+": ") {
				t.Fatalf("Value(%s, %q) error does not name the type: %v", typ.Name, text, err)
			}
		} else {
			if err := dynamocheck.Value(av); err != nil {
				t.Fatalf("Value(%s, %q) = %s, which DynamoDB refuses: %v", typ.Name, text, show(av), err)
			}
			checkRoundTrip(t, typ, text, av)
			_ = attrSize(av)
		}
		kt, kerr := KeyType(typ)
		if kerr != nil {
			return
		}
		kav, err := KeyValue(typ, text)
		if err != nil {
			if !strings.Contains(err.Error(), typ.label()) {
				t.Fatalf("KeyValue(%s, %q) error does not name the type: %v", typ.Name, text, err)
			}
			return
		}
		if show(kav) != show(av) {
			t.Fatalf("KeyValue(%s, %q) = %s, Value = %s: a key must equal its column's attribute", typ.Name, text, show(kav), show(av))
		}
		if err := dynamocheck.Key(kav, dynamocheck.KeyAttr{Name: "k", Type: kt}); err != nil && !strings.Contains(err.Error(), "bytes, over") {
			t.Fatalf("KeyValue(%s, %q) = %s, which DynamoDB refuses as a %s key: %v", typ.Name, text, show(kav), kt, err)
		}
	})
}

var normalizedTimestamptz = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func checkRoundTrip(t *testing.T, typ *Type, text []byte, av types.AttributeValue) {
	t.Helper()
	s := string(text)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("Value(%s, %q) = %s: %s", typ.Name, text, show(av), fmt.Sprintf(format, args...))
	}
	if typ.isArray() {
		if _, ok := av.(*types.AttributeValueMemberL); !ok {
			fail("an array must map to L")
		}
		return
	}
	switch typ {
	case tInt2, tInt4, tInt8, tOID, tFloat4, tFloat8, tNumeric:
		switch v := av.(type) {
		case *types.AttributeValueMemberN:
			if v.Value != s {
				fail("N must keep the number's text")
			}
		case *types.AttributeValueMemberS:
			if v.Value != s {
				fail("S must keep the number's text")
			}
			if dynamocheck.Number(s) == nil {
				fail("a number DynamoDB can hold exactly must be N")
			}
		default:
			fail("a number must map to N or S")
		}
	case tBool:
		if v, ok := av.(*types.AttributeValueMemberBOOL); !ok || (s != "t" && s != "f") || v.Value != (s == "t") {
			fail("bool must be BOOL of t or f")
		}
	case tBytea:
		b, ok := av.(*types.AttributeValueMemberB)
		if !ok {
			fail("bytea must map to B")
		}
		if strings.HasPrefix(s, `\x`) {
			want, err := hex.DecodeString(s[2:])
			if err != nil || !bytes.Equal(want, b.Value) {
				fail("B must be the hex digits' bytes")
			}
		}
		// Both text forms of the bytes read back to the same bytes.
		for _, form := range []string{`\x` + hex.EncodeToString(b.Value), byteaEscape(b.Value)} {
			again, err := Value(tBytea, []byte(form))
			if err != nil || !bytes.Equal(again.(*types.AttributeValueMemberB).Value, b.Value) {
				fail("re-reading %q: %v", form, err)
			}
		}
	case tJSON, tJSONB:
		if !utf8.Valid(text) {
			fail("JSON that is not UTF-8 must be refused, not silently repaired")
		}
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.UseNumber()
		var doc any
		if err := dec.Decode(&doc); err != nil {
			fail("invalid JSON accepted: %v", err)
		}
		if why := jsonEquiv(av, doc); why != "" {
			fail("not the document: %s", why)
		}
	case tTimestamptz:
		v, ok := av.(*types.AttributeValueMemberS)
		if !ok {
			fail("timestamptz must map to S")
		}
		if v.Value == s {
			return // kept as PostgreSQL wrote it (infinity, BC, years beyond 9999)
		}
		if !normalizedTimestamptz.MatchString(v.Value) {
			fail("neither the text nor RFC 3339 UTC with microseconds")
		}
		got, err := time.Parse(time.RFC3339Nano, v.Value)
		if err != nil {
			fail("output does not parse: %v", err)
		}
		if want, ok := pgTimestamptz(s); ok && !want.Equal(got) {
			fail("instant %s, the input is %s", got, want)
		}
	default:
		if v, ok := av.(*types.AttributeValueMemberS); !ok || v.Value != s {
			fail("must be S of the text")
		}
	}
}

// pgTimestamptz reads PostgreSQL's ISO timestamptz output with the time package.
func pgTimestamptz(s string) (time.Time, bool) {
	s = strings.Replace(s, "T", " ", 1)
	for _, layout := range []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999-07:00:00"} {
		if ts, err := time.Parse(layout, s); err == nil {
			return ts, true
		}
	}
	return time.Time{}, false
}

// byteaEscape is bytea's escape output format.
func byteaEscape(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == '\\':
			sb.WriteString(`\\`)
		case c < 0x20 || c > 0x7e:
			fmt.Fprintf(&sb, `\%03o`, c)
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// jsonEquiv explains how av differs from the decoded JSON document doc ("" if it does not):
// numbers keep their text, as N when DynamoDB can hold them and as S otherwise.
func jsonEquiv(av types.AttributeValue, doc any) string {
	switch d := doc.(type) {
	case map[string]any:
		m, ok := av.(*types.AttributeValueMemberM)
		if !ok || len(m.Value) != len(d) {
			return "object is not an M of as many keys"
		}
		for k, e := range d {
			if why := jsonEquiv(m.Value[k], e); why != "" {
				return k + ": " + why
			}
		}
	case []any:
		l, ok := av.(*types.AttributeValueMemberL)
		if !ok || len(l.Value) != len(d) {
			return "array is not an L as long"
		}
		for i, e := range d {
			if why := jsonEquiv(l.Value[i], e); why != "" {
				return fmt.Sprintf("[%d]: %s", i, why)
			}
		}
	case string:
		if s, ok := av.(*types.AttributeValueMemberS); !ok || s.Value != d {
			return "string is not S of it"
		}
	case json.Number:
		switch v := av.(type) {
		case *types.AttributeValueMemberN:
			if v.Value != string(d) {
				return "number's N changed its text"
			}
		case *types.AttributeValueMemberS:
			if v.Value != string(d) || dynamocheck.Number(string(d)) == nil {
				return "number is S though DynamoDB can hold it as N"
			}
		default:
			return "number is neither N nor S"
		}
	case bool:
		if b, ok := av.(*types.AttributeValueMemberBOOL); !ok || b.Value != d {
			return "boolean is not BOOL of it"
		}
	case nil:
		if _, ok := av.(*types.AttributeValueMemberNULL); !ok {
			return "null is not NULL"
		}
	}
	return ""
}
