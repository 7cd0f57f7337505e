package verify

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
func l(v ...types.AttributeValue) types.AttributeValue {
	return &types.AttributeValueMemberL{Value: append([]types.AttributeValue{}, v...)}
}
func m(kv map[string]types.AttributeValue) types.AttributeValue {
	return &types.AttributeValueMemberM{Value: kv}
}

var (
	null  = &types.AttributeValueMemberNULL{Value: true}
	btrue = &types.AttributeValueMemberBOOL{Value: true}
)

func scalar(f family) *colType { return &colType{fam: f, name: "t"} }
func array(elem *colType, delim byte) *colType {
	return &colType{fam: famArray, name: "_t", elem: elem, delim: delim}
}

// TestExpect pins README "Items in DynamoDB"'s mapping for each type family, from PostgreSQL's text output.
func TestExpect(t *testing.T) {
	cases := []struct {
		name string
		typ  *colType
		text string
		want types.AttributeValue
	}{
		{"integer", scalar(famInteger), "-9223372036854775808", n("-9223372036854775808")},
		{"numeric", scalar(famFloat), "12.3400", n("12.3400")},
		{"numeric 38 digits", scalar(famFloat), "1234567890123456789012345678901234567.8", n("1234567890123456789012345678901234567.8")},
		{"numeric 39 digits", scalar(famFloat), "1234567890123456789012345678901234567.89", s("1234567890123456789012345678901234567.89")},
		{"numeric trailing zeros are not significant", scalar(famFloat), "1" + strings.Repeat("0", 60), n("1" + strings.Repeat("0", 60))},
		{"numeric too large", scalar(famFloat), "1" + strings.Repeat("0", 126), s("1" + strings.Repeat("0", 126))},
		{"numeric largest", scalar(famFloat), "9" + strings.Repeat("0", 125), n("9" + strings.Repeat("0", 125))},
		{"numeric too small", scalar(famFloat), "0." + strings.Repeat("0", 130) + "1", s("0." + strings.Repeat("0", 130) + "1")},
		{"numeric smallest", scalar(famFloat), "0." + strings.Repeat("0", 129) + "1", n("0." + strings.Repeat("0", 129) + "1")},
		{"numeric NaN", scalar(famFloat), "NaN", s("NaN")},
		{"float Infinity", scalar(famFloat), "Infinity", s("Infinity")},
		{"float -Infinity", scalar(famFloat), "-Infinity", s("-Infinity")},
		{"float exponent", scalar(famFloat), "1.5e-07", n("1.5e-07")},
		{"float out of range", scalar(famFloat), "1e+300", s("1e+300")},
		{"float tiny out of range", scalar(famFloat), "5e-324", s("5e-324")},
		{"zero", scalar(famFloat), "-0", n("-0")},
		{"bool true", scalar(famBool), "t", btrue},
		{"bool false", scalar(famBool), "f", &types.AttributeValueMemberBOOL{Value: false}},
		{"bytea", scalar(famBytea), `\x00ff10`, &types.AttributeValueMemberB{Value: []byte{0, 0xff, 0x10}}},
		{"bytea empty", scalar(famBytea), `\x`, &types.AttributeValueMemberB{Value: []byte{}}},
		{"char(n) keeps its padding", scalar(famString), "ab  ", s("ab  ")},
		{"uuid", scalar(famString), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")},
		{"timestamp without zone is text", scalar(famString), "2024-05-01 10:20:30.5", s("2024-05-01 10:20:30.5")},
		{"interval is text", scalar(famString), "1 day 02:00:00", s("1 day 02:00:00")},
		{"timestamptz", scalar(famTimestamptz), "2024-05-01 10:20:30.123456+00", s("2024-05-01T10:20:30.123456Z")},
		{"timestamptz whole seconds", scalar(famTimestamptz), "2024-05-01 10:20:30+00", s("2024-05-01T10:20:30.000000Z")},
		{"timestamptz short fraction", scalar(famTimestamptz), "2024-05-01 10:20:30.1+00", s("2024-05-01T10:20:30.100000Z")},
		{"timestamptz other zone", scalar(famTimestamptz), "2024-05-01 12:20:30.5+02", s("2024-05-01T10:20:30.500000Z")},
		{"timestamptz seconds offset", scalar(famTimestamptz), "1850-01-01 00:00:00+00:53:28", s("1849-12-31T23:06:32.000000Z")},
		{"timestamptz year 1", scalar(famTimestamptz), "0001-01-01 00:00:00+00", s("0001-01-01T00:00:00.000000Z")},
		{"timestamptz infinity", scalar(famTimestamptz), "infinity", s("infinity")},
		{"timestamptz -infinity", scalar(famTimestamptz), "-infinity", s("-infinity")},
		{"timestamptz BC", scalar(famTimestamptz), "0044-03-15 10:00:00+00 BC", s("0044-03-15 10:00:00+00 BC")},
		{"timestamptz year 10000", scalar(famTimestamptz), "10000-01-01 00:00:00+00", s("10000-01-01 00:00:00+00")},
		{"timestamptz crossing year 9999", scalar(famTimestamptz), "9999-12-31 23:00:00-02", s("9999-12-31 23:00:00-02")},
		{"json object", scalar(famJSON), `{"a": [1, "x", true, null, {"b": 2.50}], "c": {}}`,
			m(map[string]types.AttributeValue{"a": l(n("1"), s("x"), btrue, null, m(map[string]types.AttributeValue{"b": n("2.50")})), "c": m(map[string]types.AttributeValue{})})},
		{"json scalar string", scalar(famJSON), `"hi"`, s("hi")},
		{"json scalar number", scalar(famJSON), `42`, n("42")},
		{"json null", scalar(famJSON), `null`, null},
		{"json number N cannot hold", scalar(famJSON), `[1e400, 12345678901234567890123456789012345678901]`, l(s("1e400"), s("12345678901234567890123456789012345678901"))},
		{"int array", array(scalar(famInteger), ','), "{1,2,NULL}", l(n("1"), n("2"), null)},
		{"empty array", array(scalar(famInteger), ','), "{}", l()},
		{"2-d array", array(scalar(famInteger), ','), "{{1,2},{3,4}}", l(l(n("1"), n("2")), l(n("3"), n("4")))},
		{"array with bounds", array(scalar(famInteger), ','), "[0:1]={7,8}", l(n("7"), n("8"))},
		{"text array quoting", array(scalar(famString), ','), `{"a,b","say \"hi\"","back\\slash","NULL",plain,""," sp "}`,
			l(s("a,b"), s(`say "hi"`), s(`back\slash`), s("NULL"), s("plain"), s(""), s(" sp "))},
		{"box array delimiter", array(scalar(famString), ';'), "{(1,1),(0,0);(2,2),(1,1)}", l(s("(1,1),(0,0)"), s("(2,2),(1,1)"))},
		{"timestamptz array", array(scalar(famTimestamptz), ','), `{"2024-05-01 10:20:30+00",infinity}`, l(s("2024-05-01T10:20:30.000000Z"), s("infinity"))},
		{"bool array", array(scalar(famBool), ','), "{t,f}", l(btrue, &types.AttributeValueMemberBOOL{Value: false})},
		{"bytea array", array(scalar(famBytea), ','), `{"\\x01",NULL}`, l(&types.AttributeValueMemberB{Value: []byte{1}}, null)},
		{"jsonb array", array(scalar(famJSON), ','), `{"{\"a\": 1}","[]"}`, l(m(map[string]types.AttributeValue{"a": n("1")}), l())},
		{"numeric array NaN", array(scalar(famFloat), ','), "{1.5,NaN}", l(n("1.5"), s("NaN"))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := expect(c.typ, c.text)
			if err != nil {
				t.Fatalf("expect(%q): %v", c.text, err)
			}
			if !equalAV(c.want, got) || render(c.want) != render(got) {
				t.Errorf("expect(%q) = %s, want %s", c.text, render(got), render(c.want))
			}
		})
	}
}

func TestExpectRejects(t *testing.T) {
	for _, c := range []struct {
		typ  *colType
		text string
	}{
		{scalar(famBool), "yes"},
		{scalar(famBytea), `\000`},
		{scalar(famBytea), `\xzz`},
		{scalar(famJSON), `{"a":`},
		{scalar(famJSON), `1 2`},
		{scalar(famString), "\xff"},
		{array(scalar(famInteger), ','), "{1,2"},
		{array(scalar(famInteger), ','), "{1}x"},
		{array(scalar(famString), ','), `{"a}`},
	} {
		if av, err := expect(c.typ, c.text); err == nil {
			t.Errorf("expect(%q) = %s, want an error", c.text, render(av))
		}
	}
}

// TestEqualAV: numbers compare by value as DynamoDB compares them, everything else
// exactly; maps are unordered, lists ordered.
func TestEqualAV(t *testing.T) {
	eq := [][2]types.AttributeValue{
		{n("1"), n("1.0")},
		{n("1.5e-07"), n("0.00000015")},
		{m(map[string]types.AttributeValue{"a": n("1"), "b": s("x")}), m(map[string]types.AttributeValue{"b": s("x"), "a": n("1.00")})},
	}
	ne := [][2]types.AttributeValue{
		{n("1"), s("1")},
		{s("ab"), s("ab  ")},
		{l(n("1"), n("2")), l(n("2"), n("1"))},
		{l(n("1")), l(n("1"), null)},
		{m(map[string]types.AttributeValue{"a": n("1")}), m(map[string]types.AttributeValue{"a": n("1"), "b": null})},
		{&types.AttributeValueMemberB{Value: []byte{1}}, &types.AttributeValueMemberB{Value: []byte{2}}},
		{btrue, &types.AttributeValueMemberBOOL{Value: false}},
		{n("1"), nil},
	}
	for _, c := range eq {
		if !equalAV(c[0], c[1]) {
			t.Errorf("%s != %s, want equal", render(c[0]), render(c[1]))
		}
	}
	for _, c := range ne {
		if equalAV(c[0], c[1]) {
			t.Errorf("%s == %s, want different", render(c[0]), render(c[1]))
		}
	}
}

// TestSortKey re-derives the sort key of a table keyed by more than two columns: a JSON
// array of the text output of the second and later key columns.
func TestSortKey(t *testing.T) {
	src := &source{columns: []column{
		{"a", scalar(famInteger), "integer"}, {"b", scalar(famString), "text"}, {"c", scalar(famTimestamptz), "timestamp with time zone"}, {"v", scalar(famString), "text"},
	}}
	ks, err := expectedKeySchema(src, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if ks.hash != "a" || ks.hashType != types.ScalarAttributeTypeN || ks.rng != attrSortKey || ks.rngType != types.ScalarAttributeTypeS {
		t.Fatalf("key schema %s", ks)
	}
	str := func(v string) *string { return &v }
	attrs, problems := expectItem(src, ks, row{str("7"), str(`x"<y`), str("2024-05-01 10:20:30+00"), nil})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if got := render(attrs[attrSortKey]); got != render(s(`["x\"\u003cy","2024-05-01 10:20:30+00"]`)) {
		t.Errorf("__sk = %s", got)
	}
	if _, ok := attrs["v"]; ok {
		t.Error("a NULL column must be absent")
	}
	if got := ks.keyString(attrs); got != `a=7,b="x\"<y",c="2024-05-01 10:20:30+00"` {
		t.Errorf("keyString = %s", got)
	}
	if ks.keyID(attrs) != ks.keyID(item{"a": n("7.0"), attrSortKey: attrs[attrSortKey]}) {
		t.Error("key ids must compare numbers by value")
	}
	two, _ := expectedKeySchema(src, []string{"b", "a"})
	if two.rng != "a" || two.rngType != types.ScalarAttributeTypeN || two.sortCols != nil {
		t.Errorf("two-column key schema %s", two)
	}
}

func TestCompareItem(t *testing.T) {
	meta := item{attrLSN: n("100"), attrSrc: s("stream"), attrSeq: n("0")}
	with := func(base item, kv item) item {
		out := item{}
		for k, v := range base {
			out[k] = v
		}
		for k, v := range kv {
			if v == nil {
				delete(out, k)
			} else {
				out[k] = v
			}
		}
		return out
	}
	want := item{"id": n("1"), "name": s("x")}
	if d := compareItem("id=1", want, with(meta, want)); len(d) != 0 {
		t.Errorf("equal item: %v", d)
	}
	d := compareItem("id=1", want, with(meta, item{"id": n("1"), "name": s("y"), "gen": n("2")}))
	if len(d) != 2 || d[0].Kind != Differs || d[1].Kind != Differs {
		t.Fatalf("want two attribute differences, got %v", d)
	}
	if d := compareItem("id=1", want, with(with(meta, want), item{attrSeq: nil})); len(d) != 1 || d[0].Kind != Metadata {
		t.Errorf("a stream item without __seq: %v", d)
	}
	snap := item{attrLSN: n("100"), attrSrc: s("snapshot"), attrEpoch: n("1")}
	if d := compareItem("id=1", want, with(snap, want)); len(d) != 0 {
		t.Errorf("snapshot item: %v", d)
	}
	if d := compareItem("id=1", want, with(with(snap, want), item{attrEpoch: nil, attrExpires: n("5")})); len(d) != 2 {
		t.Errorf("a snapshot item without __epoch and with __expires: %v", d)
	}
	if d := compareItem("id=1", want, with(want, item{attrLSN: n("1")})); len(d) != 1 || !strings.Contains(d[0].Got, attrSrc) {
		t.Errorf("an item without __src: %v", d)
	}
}
