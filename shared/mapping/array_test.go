package mapping

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/localstack/dynamocheck"
)

func TestValueArrays(t *testing.T) {
	runValueCases(t, []valueCase{
		{"int4 with NULL", tInt4Arr, `{1,2,NULL}`, `L[N"1" N"2" NULL]`, ""},
		{"empty", tInt4Arr, `{}`, `L[]`, ""},
		{"2-D", tInt4Arr, `{{1,2},{3,4}}`, `L[L[N"1" N"2"] L[N"3" N"4"]]`, ""},
		{"3-D", tInt4Arr, `{{{1},{2}},{{3},{4}}}`, `L[L[L[N"1"] L[N"2"]] L[L[N"3"] L[N"4"]]]`, ""},
		{"dimension decoration", tInt4Arr, `[0:1]={1,2}`, `L[N"1" N"2"]`, ""},
		{"2-D dimension decoration", tInt4Arr, `[-1:0][2:3]={{1,2},{3,4}}`, `L[L[N"1" N"2"] L[N"3" N"4"]]`, ""},
		{"quoted with escapes", tTextArr, `{"a,b","c\"d",NULL,"NULL"}`, `L[S"a,b" S"c\"d" NULL S"NULL"]`, ""},
		{"quoted backslash braces spaces", tTextArr, `{"x\\y","{}"," lead","",plain}`, `L[S"x\\y" S"{}" S" lead" S"" S"plain"]`, ""},
		{"lowercase null is SQL NULL", tTextArr, `{null,Null}`, `L[NULL NULL]`, ""},
		{"escaped NULL is a string", tTextArr, `{N\ULL}`, `L[S"NULL"]`, ""},
		{"array_in whitespace", tTextArr, ` { a b , "c" , d\  } `, `L[S"a b" S"c" S"d "]`, ""},
		{"unicode", tTextArr, `{żółw,"🐢 x"}`, `L[S"żółw" S"🐢 x"]`, ""},
		{"all NULL", tTextArr, `{NULL,NULL}`, `L[NULL NULL]`, ""},
		{"2-D text with NULL", tTextArr, `{{a,NULL},{"b c",d}}`, `L[L[S"a" NULL] L[S"b c" S"d"]]`, ""},
		{"bool", tBoolArr, `{t,f,NULL}`, `L[BOOL:true BOOL:false NULL]`, ""},
		{"numeric with NaN", tNumericArr, `{1.50,NaN,Infinity,123456789012345678901234567890123456789}`,
			`L[N"1.50" S"NaN" S"Infinity" S"123456789012345678901234567890123456789"]`, ""},
		{"jsonb native elements", tJSONBArr, `{"{\"a\": [1, {\"b\": null}]}","[]",NULL,"\"s\"","null","1e400"}`,
			`L[M{"a":L[N"1" M{"b":NULL}]} L[] NULL S"s" NULL S"1e400"]`, ""},
		{"bytea", tByteaArr, `{"\\x0102","\\x",NULL}`, `L[B:0102 B: NULL]`, ""},
		{"timestamptz", tTstzArr, `{"2024-05-01 10:20:30.5+00",infinity}`, `L[S"2024-05-01T10:20:30.500000Z" S"infinity"]`, ""},
		{"box uses ; delimiter", tBoxArr, `{(2,2),(0,0);(3,3),(1,1)}`, `L[S"(2,2),(0,0)" S"(3,3),(1,1)"]`, ""},
		{"enum", tEnumArr, `{happy,sad}`, `L[S"happy" S"sad"]`, ""},
		{"composite elements", tCompositeArr, `{"(1,\"a b\")","(2,)"}`, `L[S"(1,\"a b\")" S"(2,)"]`, ""},

		{"unterminated quote", tInt4Arr, `{"a`, "", `mapping _int4: unterminated quoted element in "{\"a"`},
		{"unterminated array", tInt4Arr, `{1,2`, "", `mapping _int4: unterminated array at offset 4`},
		{"bad element", tInt4Arr, `{1,x}`, "", `mapping _int4: element 2: mapping int4: invalid number "x"`},
		{"bad nested element", tInt4Arr, `{{1},{y}}`, "", `mapping _int4: element 2: mapping int4: invalid number "y"`},
		{"bad jsonb element", tJSONBArr, `{"{"}`, "", `mapping _jsonb: element 1: mapping jsonb: invalid JSON`},
		{"no braces", tInt4Arr, `1,2`, "", `array must start with '{'`},
		{"empty text", tInt4Arr, ``, "", `array must start with '{'`},
		{"junk after", tInt4Arr, `{1}x`, "", `junk after closing '}'`},
		{"empty element", tInt4Arr, `{1,,2}`, "", `empty unquoted element`},
		{"trailing delimiter", tInt4Arr, `{1,}`, "", `empty unquoted element`},
		{"mixed dimensions", tInt4Arr, `{{1},2}`, "", `mixed sub-arrays and elements`},
		{"mixed dimensions 2", tInt4Arr, `{1,{2}}`, "", `mixed sub-arrays and elements`},
		{"too deep", tInt4Arr, `{{{{{{{1}}}}}}}`, "", `more than 6 dimensions`},
		{"bad decoration", tInt4Arr, `[1:x]={1}`, "", `invalid dimension decoration`},
		{"decoration without =", tInt4Arr, `[1:2]{1,2}`, "", `missing '='`},
		{"quote inside unquoted", tTextArr, `{a"b}`, "", `unexpected '"' in unquoted element`},
		{"no element type", &Type{OID: 1007, Name: "_int4", Category: 'A'}, `{1}`, "", `mapping _int4: array type has no element type`},
	})
}

// pgArrayLiteral quotes the way array_out does, so the round trip below
// exercises exactly the text PostgreSQL produces.
func pgArrayLiteral(elems []*string, delim byte) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(delim)
		}
		if e == nil {
			b.WriteString("NULL")
			continue
		}
		b.WriteString(arrayElement(*e, delim))
	}
	b.WriteByte('}')
	return b.String()
}

// arrayElement is one element's text as array_out writes it: quoted, with '"' and '\'
// escaped, when it is empty, reads as NULL, or holds a delimiter, brace, quote,
// backslash or white space.
func arrayElement(s string, delim byte) string {
	if s != "" && !strings.EqualFold(s, "NULL") && !strings.ContainsAny(s, "\"\\{} \t\n\r\v\f"+string(delim)) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func TestArrayRoundTrip(t *testing.T) {
	str := func(s string) *string { return &s }
	elems := []*string{str(""), str("NULL"), str("null"), nil, str(`a"b`), str(`c\d`), str("{x}"), str(" sp "), str("a,b"), str("tab\there"), str("plain"), str("ünï")}
	text := pgArrayLiteral(elems, ',')
	av, err := Value(tTextArr, []byte(text))
	if err != nil {
		t.Fatalf("Value(%q): %v", text, err)
	}
	l := av.(*types.AttributeValueMemberL).Value
	if len(l) != len(elems) {
		t.Fatalf("got %d elements, want %d", len(l), len(elems))
	}
	for i, e := range elems {
		if e == nil {
			if _, ok := l[i].(*types.AttributeValueMemberNULL); !ok {
				t.Errorf("element %d = %s, want NULL", i, show(l[i]))
			}
			continue
		}
		if s, ok := l[i].(*types.AttributeValueMemberS); !ok || s.Value != *e {
			t.Errorf("element %d = %s, want S%q", i, show(l[i]), *e)
		}
	}
}

// FuzzArrayParse feeds arbitrary text to the array mapping of several element types: it
// must never panic, an error must name the type, and an array it accepts must be an L
// that DynamoDB accepts (dynamocheck), whose every element is what the element type maps
// that element's text to, and which reads back the same from the text array_out would
// write for it (the elements round-trip; jsonb's, whose text is JSON, are left out).
func FuzzArrayParse(f *testing.F) {
	for _, s := range []string{
		`{}`, `{1,2,NULL}`, `{"a,b","c\"d",NULL,"NULL"}`, `{{1,2},{3,4}}`, `[0:1]={1,2}`,
		`[1:1][1:2]={{a,b}}`, `{"\\x01",NULL}`, `{(1,1),(0,0);(2,2),(1,1)}`, `{"{\"a\":[1]}"}`,
		` { a , "b" } `, `{"a`, `{{{{{{{1}}}}}}}`, `{a\`, `{1,}`, `[`, `{`, `}`,
	} {
		f.Add(s)
	}
	arrayTypes := []*Type{tTextArr, tInt4Arr, tJSONBArr, tBoxArr, tByteaArr, tBoolArr, tNumericArr}
	f.Fuzz(func(t *testing.T, text string) {
		for _, typ := range arrayTypes {
			av, err := Value(typ, []byte(text))
			if err != nil {
				if !strings.HasPrefix(err.Error(), "mapping "+typ.Name+": ") {
					t.Fatalf("Value(%s, %q) error without type prefix: %v", typ.Name, text, err)
				}
				continue
			}
			l, ok := av.(*types.AttributeValueMemberL)
			if !ok {
				t.Fatalf("Value(%s, %q) = %s, want L", typ.Name, text, show(av))
			}
			if err := dynamocheck.Value(av); err != nil {
				t.Fatalf("Value(%s, %q) = %s, which DynamoDB refuses: %v", typ.Name, text, show(av), err)
			}
			if typ == tJSONBArr {
				continue
			}
			literal, why := arrayOut(l.Value, typ, 1)
			if why != "" {
				t.Fatalf("Value(%s, %q) = %s: %s", typ.Name, text, show(av), why)
			}
			again, err := Value(typ, []byte(literal))
			if err != nil || show(again) != show(av) {
				t.Fatalf("Value(%s, %q) = %s, but its array_out text %q reads back as %v, %v", typ.Name, text, show(av), literal, showOrNil(again), err)
			}
		}
	})
}

// arrayOut writes the elements of an array (at dimension depth) as array_out would,
// checking on the way that each element is what typ's element type maps its text to. why
// says what is wrong ("" if nothing).
func arrayOut(elems []types.AttributeValue, typ *Type, depth int) (text string, why string) {
	delim := typ.Elem.Delim
	if delim == 0 {
		delim = ','
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(delim)
		}
		var s string
		switch v := e.(type) {
		case *types.AttributeValueMemberNULL:
			b.WriteString("NULL")
			continue
		case *types.AttributeValueMemberL:
			if depth >= maxArrayDims {
				return "", fmt.Sprintf("more than %d dimensions", maxArrayDims)
			}
			inner, why := arrayOut(v.Value, typ, depth+1)
			if why != "" {
				return "", why
			}
			b.WriteString(inner)
			continue
		case *types.AttributeValueMemberS:
			s = v.Value
		case *types.AttributeValueMemberN:
			s = v.Value
		case *types.AttributeValueMemberBOOL:
			s = map[bool]string{true: "t", false: "f"}[v.Value]
		case *types.AttributeValueMemberB:
			s = `\x` + hex.EncodeToString(v.Value)
		default:
			return "", fmt.Sprintf("element %d is %s, not a %s", i+1, show(e), typ.Elem.Name)
		}
		if scalar, err := Value(typ.Elem, []byte(s)); err != nil || show(scalar) != show(e) {
			return "", fmt.Sprintf("element %d is %s, but %s maps its text %q to %v, %v", i+1, show(e), typ.Elem.Name, s, showOrNil(scalar), err)
		}
		b.WriteString(arrayElement(s, delim))
	}
	b.WriteByte('}')
	return b.String(), ""
}

func showOrNil(av types.AttributeValue) string {
	if av == nil {
		return "nothing"
	}
	return show(av)
}
