package mapping

import (
	"strings"
	"testing"
)

type valueCase struct {
	name string
	t    *Type
	text string
	want string // show() rendering, or "" when an error is expected
	err  string // substring of the expected error
}

func runValueCases(t *testing.T, cases []valueCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			av, err := Value(c.t, []byte(c.text))
			if c.err != "" {
				if err == nil {
					t.Fatalf("Value(%s, %q) = %s, want error containing %q", c.t.Name, c.text, show(av), c.err)
				}
				if !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Value(%s, %q) error %q, want it to contain %q", c.t.Name, c.text, err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Value(%s, %q) error: %v", c.t.Name, c.text, err)
			}
			if got := show(av); got != c.want {
				t.Fatalf("Value(%s, %q) = %s, want %s", c.t.Name, c.text, got, c.want)
			}
		})
	}
}

func TestValueNumbers(t *testing.T) {
	runValueCases(t, []valueCase{
		{"int2", tInt2, "-32768", `N"-32768"`, ""},
		{"int4", tInt4, "42", `N"42"`, ""},
		{"int8 max", tInt8, "9223372036854775807", `N"9223372036854775807"`, ""},
		{"oid", tOID, "4294967295", `N"4294967295"`, ""},
		{"numeric", tNumeric, "-123.45", `N"-123.45"`, ""},
		{"numeric trailing zeros", tNumeric, "123.4500", `N"123.4500"`, ""},
		{"numeric zero with scale", tNumeric, "0.000", `N"0.000"`, ""},
		{"numeric NaN", tNumeric, "NaN", `S"NaN"`, ""},
		{"numeric Infinity", tNumeric, "Infinity", `S"Infinity"`, ""},
		{"numeric -Infinity", tNumeric, "-Infinity", `S"-Infinity"`, ""},
		{"numeric 38 digits", tNumeric, "12345678901234567890123456789012345678", `N"12345678901234567890123456789012345678"`, ""},
		{"numeric 39 digits", tNumeric, "123456789012345678901234567890123456789", `S"123456789012345678901234567890123456789"`, ""},
		{"numeric 39 digits fraction", tNumeric, "1234567890123456789.01234567890123456789", `S"1234567890123456789.01234567890123456789"`, ""},
		{"numeric 38 digits plus trailing zeros", tNumeric, "1234567890123456789012345678901234567800000", `N"1234567890123456789012345678901234567800000"`, ""},
		{"numeric leading zeros in fraction", tNumeric, "0.00000000000000000000012345678901234567890123456789012345678", `N"0.00000000000000000000012345678901234567890123456789012345678"`, ""},
		{"numeric 1E-130 fits", tNumeric, "0." + strings.Repeat("0", 129) + "1", `N"0.` + strings.Repeat("0", 129) + `1"`, ""},
		{"numeric below 1E-130", tNumeric, "0." + strings.Repeat("0", 130) + "1", `S"0.` + strings.Repeat("0", 130) + `1"`, ""},
		{"numeric 126 integer digits", tNumeric, strings.Repeat("9", 38) + strings.Repeat("0", 88), `N"` + strings.Repeat("9", 38) + strings.Repeat("0", 88) + `"`, ""},
		{"numeric 1E+126", tNumeric, "1" + strings.Repeat("0", 126), `S"1` + strings.Repeat("0", 126) + `"`, ""},
		{"float8", tFloat8, "3.141592653589793", `N"3.141592653589793"`, ""},
		{"float8 exponent", tFloat8, "1e+30", `N"1e+30"`, ""},
		{"float8 negative exponent", tFloat8, "1.5e-07", `N"1.5e-07"`, ""},
		{"float8 1e+300", tFloat8, "1e+300", `S"1e+300"`, ""},
		{"float8 tiny", tFloat8, "5e-324", `S"5e-324"`, ""},
		{"float8 1e+125", tFloat8, "1e+125", `N"1e+125"`, ""},
		{"float8 -0", tFloat8, "-0", `N"-0"`, ""},
		{"float8 NaN", tFloat8, "NaN", `S"NaN"`, ""},
		{"float8 -Infinity", tFloat8, "-Infinity", `S"-Infinity"`, ""},
		{"float4", tFloat4, "3.4028235e+38", `N"3.4028235e+38"`, ""},
		{"float4 Infinity", tFloat4, "Infinity", `S"Infinity"`, ""},
		{"money is a string", tMoney, "$1,234.56", `S"$1,234.56"`, ""},

		{"int4 garbage", tInt4, "abc", "", `mapping int4: invalid number "abc"`},
		{"int4 NaN", tInt4, "NaN", "", `mapping int4: invalid number "NaN"`},
		{"int4 empty", tInt4, "", "", `mapping int4: invalid number ""`},
		{"numeric dangling dot", tNumeric, "1.", "", `mapping numeric: invalid number "1."`},
		{"float8 bad exponent", tFloat8, "1e", "", `mapping float8: invalid number "1e"`},
		{"long bad number clipped", tInt4, strings.Repeat("x", 100), "", `invalid number "` + strings.Repeat("x", maxExcerpt) + `"...`},
	})
}

func TestValueScalars(t *testing.T) {
	runValueCases(t, []valueCase{
		{"bool true", tBool, "t", "BOOL:true", ""},
		{"bool false", tBool, "f", "BOOL:false", ""},
		{"bool bad", tBool, "yes", "", `mapping bool: invalid boolean "yes"`},

		{"bytea", tBytea, `\x0102ff`, "B:0102ff", ""},
		{"bytea upper hex", tBytea, `\xDEADBEEF`, "B:deadbeef", ""},
		{"bytea empty", tBytea, `\x`, "B:", ""},
		{"bytea escape format", tBytea, `ab\\\001\377`, "B:61625c01ff", ""},
		{"bytea escape empty", tBytea, ``, "B:", ""},
		{"bytea odd hex", tBytea, `\x012`, "", `mapping bytea: invalid bytea hex "\\x012"`},
		{"bytea bad hex", tBytea, `\xzz`, "", `invalid bytea hex`},
		{"bytea bad escape", tBytea, `a\9`, "", `invalid bytea escape`},

		{"text", tText, "hello, world", `S"hello, world"`, ""},
		{"text empty", tText, "", `S""`, ""},
		{"text unicode", tText, "żółw 🐢", `S"żółw 🐢"`, ""},
		{"text invalid utf8", tText, "a\xffb", "", `mapping text: invalid UTF-8 in "a\xffb"`},
		{"varchar", tVarchar, "v", `S"v"`, ""},
		{"bpchar keeps padding", tBPChar, "ab   ", `S"ab   "`, ""},
		{"name", tName, "pg_class", `S"pg_class"`, ""},
		{"uuid", tUUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `S"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"`, ""},
		{"enum", tEnum, "happy", `S"happy"`, ""},
		{"citext", tCitext, "MiXeD", `S"MiXeD"`, ""},
		{"timestamp", tTimestamp, "2024-05-01 10:20:30.5", `S"2024-05-01 10:20:30.5"`, ""},
		{"date", tDate, "2024-05-01", `S"2024-05-01"`, ""},
		{"time", tTime, "10:20:30", `S"10:20:30"`, ""},
		{"timetz", tTimetz, "10:20:30+02", `S"10:20:30+02"`, ""},
		{"interval", tInterval, "1 year 2 mons 3 days 04:05:06", `S"1 year 2 mons 3 days 04:05:06"`, ""},
		{"inet", tInet, "192.168.0.1/24", `S"192.168.0.1/24"`, ""},
		{"cidr", tCidr, "10.0.0.0/8", `S"10.0.0.0/8"`, ""},
		{"macaddr", tMacaddr, "08:00:2b:01:02:03", `S"08:00:2b:01:02:03"`, ""},
		{"point", tPoint, "(1,2)", `S"(1,2)"`, ""},
		{"box", tBox, "(2,2),(0,0)", `S"(2,2),(0,0)"`, ""},
		{"xml", tXML, "<a>b</a>", `S"<a>b</a>"`, ""},
		{"tsvector", tTSVector, "'a':1 'b':2", `S"'a':1 'b':2"`, ""},
		{"bit", tBit, "1010", `S"1010"`, ""},
		{"int4range", tInt4range, "[1,10)", `S"[1,10)"`, ""},
		{"composite", tComposite, `(1,"a b")`, `S"(1,\"a b\")"`, ""},
		{"int2vector is not braced", tInt2vector, "1 2 3", `S"1 2 3"`, ""},
	})
}

func TestValueTimestamptz(t *testing.T) {
	runValueCases(t, []valueCase{
		{"6 digits", tTimestamptz, "2024-05-01 10:20:30.123456+00", `S"2024-05-01T10:20:30.123456Z"`, ""},
		{"0 digits", tTimestamptz, "2024-05-01 10:20:30+00", `S"2024-05-01T10:20:30.000000Z"`, ""},
		{"1 digit", tTimestamptz, "2024-05-01 10:20:30.5+00", `S"2024-05-01T10:20:30.500000Z"`, ""},
		{"3 digits", tTimestamptz, "2024-05-01 10:20:30.012+00", `S"2024-05-01T10:20:30.012000Z"`, ""},
		{"+05:30", tTimestamptz, "2024-05-01 10:20:30.25+05:30", `S"2024-05-01T04:50:30.250000Z"`, ""},
		{"-08 crosses midnight", tTimestamptz, "2024-12-31 20:00:00-08", `S"2025-01-01T04:00:00.000000Z"`, ""},
		{"LMT offset with seconds", tTimestamptz, "1850-01-01 00:00:00+01:24:00", `S"1849-12-31T22:36:00.000000Z"`, ""},
		{"year 1", tTimestamptz, "0001-01-01 00:00:00+00", `S"0001-01-01T00:00:00.000000Z"`, ""},
		{"year 9999", tTimestamptz, "9999-12-31 23:59:59.999999+00", `S"9999-12-31T23:59:59.999999Z"`, ""},
		{"leap day", tTimestamptz, "2024-02-29 00:00:00+00", `S"2024-02-29T00:00:00.000000Z"`, ""},
		{"infinity", tTimestamptz, "infinity", `S"infinity"`, ""},
		{"-infinity", tTimestamptz, "-infinity", `S"-infinity"`, ""},
		{"BC", tTimestamptz, "0044-03-15 12:00:00+00 BC", `S"0044-03-15 12:00:00+00 BC"`, ""},
		{"1 BC is a leap year", tTimestamptz, "0001-02-29 00:00:00+00 BC", `S"0001-02-29 00:00:00+00 BC"`, ""},
		{"BC is checked", tTimestamptz, "\x80 BC", "", "invalid timestamptz"},
		{"year 10000 is checked", tTimestamptz, "10000-\x80", "", "invalid timestamptz"},
		{"year 10000", tTimestamptz, "10000-01-01 00:00:00+00", `S"10000-01-01 00:00:00+00"`, ""},
		{"offset pushes past 9999", tTimestamptz, "9999-12-31 23:00:00-05", `S"9999-12-31 23:00:00-05"`, ""},
		{"offset pushes before year 1", tTimestamptz, "0001-01-01 01:00:00+05", `S"0001-01-01 01:00:00+05"`, ""},

		{"postgres datestyle", tTimestamptz, "Wed May 01 10:20:30.123456 2024 UTC", "", `mapping timestamptz: invalid timestamptz "Wed May 01`},
		{"missing offset", tTimestamptz, "2024-05-01 10:20:30", "", "missing UTC offset"},
		{"Feb 30", tTimestamptz, "2024-02-30 00:00:00+00", "", "day out of range"},
		{"7 fraction digits", tTimestamptz, "2024-05-01 10:20:30.1234567+00", "", "invalid timestamptz"},
		{"trailing junk", tTimestamptz, "2024-05-01 10:20:30+00 x", "", "unexpected text"},
	})
}

func TestValueJSON(t *testing.T) {
	big := "123456789012345678901234567890123456789"
	runValueCases(t, []valueCase{
		{"object", tJSONB, `{"a": 1, "b": "x", "c": true, "d": null}`, `M{"a":N"1" "b":S"x" "c":BOOL:true "d":NULL}`, ""},
		{"nested", tJSONB, `{"o": [{"k": {"deep": [1, [2.5, {"z": false}]]}}, "s"], "e": {}, "l": []}`,
			`M{"e":M{} "l":L[] "o":L[M{"k":M{"deep":L[N"1" L[N"2.5" M{"z":BOOL:false}]]}} S"s"]}`, ""},
		{"big numbers", tJSONB, `{"big": ` + big + `, "ok": 12345678901234567890123456789012345678, "huge": 1e400, "tiny": 1e-200, "exp": 1.5E+10}`,
			`M{"big":S"` + big + `" "exp":N"1.5E+10" "huge":S"1e400" "ok":N"12345678901234567890123456789012345678" "tiny":S"1e-200"}`, ""},
		{"json keeps number text", tJSON, `[1.50, -0, 1e2]`, `L[N"1.50" N"-0" N"1e2"]`, ""},
		{"json duplicate keys last wins", tJSON, `{"a":1,"a":2}`, `M{"a":N"2"}`, ""},
		{"unicode escapes", tJSONB, `"caf\u00e9 \ud83d\ude00"`, `S"café 😀"`, ""},
		{"top-level string", tJSONB, `"x"`, `S"x"`, ""},
		{"top-level number", tJSONB, `5`, `N"5"`, ""},
		{"top-level big number", tJSONB, big, `S"` + big + `"`, ""},
		{"top-level true", tJSONB, `true`, `BOOL:true`, ""},
		{"top-level null", tJSONB, `null`, `NULL`, ""},
		{"top-level empty array", tJSON, ` [] `, `L[]`, ""},

		{"invalid", tJSONB, `{"a":`, "", `mapping jsonb: invalid JSON: `},
		{"trailing data", tJSON, `{} {}`, "", `mapping json: invalid JSON: trailing data`},
		{"empty", tJSONB, ``, "", `mapping jsonb: invalid JSON`},
	})
}

func TestValueNilType(t *testing.T) {
	if _, err := Value(nil, []byte("x")); err == nil {
		t.Fatal("Value(nil type) succeeded")
	}
}
