package verify

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// This file is README "Items in DynamoDB"'s type mapping, written again from the contract rather than
// taken from shared/mapping: an item is checked against what the contract says it must
// be, so a bug in Tandem's own mapping shows up as a difference instead of being
// reproduced on both sides of the comparison.

// family is how README "Items in DynamoDB" maps a column's (domain-resolved) type.
type family int

const (
	famString      family = iota // S of PostgreSQL's text output
	famInteger                   // N
	famFloat                     // N, or S of the text for NaN/±Infinity or what N cannot hold
	famBool                      // BOOL
	famBytea                     // B
	famJSON                      // native M/L/S/N/BOOL/NULL
	famTimestamptz               // S, RFC 3339 UTC with microseconds
	famArray                     // L of the element type's mapping, nested per dimension
)

// colType is what the expectation needs to know of a column's type, read from the
// catalog by this package.
type colType struct {
	fam   family
	name  string   // pg_type.typname of the resolved type, for messages
	elem  *colType // famArray only
	delim byte     // famArray only: the element type's typdelim
}

// Built-in type OIDs, from pg_type.dat (stable across PostgreSQL versions).
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt2vector  = 22
	oidInt4        = 23
	oidOID         = 26
	oidOIDvector   = 30
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// scalarFamily maps a base (non-domain, non-array) type OID. oid is counted as an
// integer type: it is PostgreSQL's unsigned four-byte integer and prints as one.
func scalarFamily(oid uint32) family {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID:
		return famInteger
	case oidFloat4, oidFloat8, oidNumeric:
		return famFloat
	case oidBool:
		return famBool
	case oidBytea:
		return famBytea
	case oidJSON, oidJSONB:
		return famJSON
	case oidTimestamptz:
		return famTimestamptz
	}
	// Everything else (text, varchar, char(n), uuid, enums, timestamp, date, time,
	// interval, money, composites, ranges, ...) is its text output.
	return famString
}

// keyType is the DynamoDB key attribute type a column of t must have as a key.
func (t *colType) keyType() types.ScalarAttributeType {
	switch t.fam {
	case famInteger, famFloat:
		return types.ScalarAttributeTypeN
	case famBytea:
		return types.ScalarAttributeTypeB
	}
	return types.ScalarAttributeTypeS
}

// expect returns the attribute README "Items in DynamoDB" prescribes for the non-NULL text output of a value of
// type t.
func expect(t *colType, text string) (types.AttributeValue, error) {
	switch t.fam {
	case famInteger, famFloat:
		return expectNumber(text), nil
	case famBool:
		switch text {
		case "t":
			return &types.AttributeValueMemberBOOL{Value: true}, nil
		case "f":
			return &types.AttributeValueMemberBOOL{Value: false}, nil
		}
		return nil, fmt.Errorf("boolean text %q is neither t nor f", clip(text))
	case famBytea:
		if !strings.HasPrefix(text, `\x`) {
			return nil, fmt.Errorf("bytea text %q is not hex (bytea_output = hex)", clip(text))
		}
		b, err := hex.DecodeString(text[2:])
		if err != nil {
			return nil, fmt.Errorf("bytea text %q: %v", clip(text), err)
		}
		return &types.AttributeValueMemberB{Value: b}, nil
	case famJSON:
		return expectJSON(text)
	case famTimestamptz:
		return &types.AttributeValueMemberS{Value: rfc3339(text)}, nil
	case famArray:
		return expectArray(t, text)
	}
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("text %q is not valid UTF-8", clip(text))
	}
	return &types.AttributeValueMemberS{Value: text}, nil
}

// expectNumber: N when DynamoDB can hold the number exactly, else S of the text
// (NaN, ±Infinity, more than 38 significant digits, magnitude outside 1E-130..<1E+126).
func expectNumber(text string) types.AttributeValue {
	if fitsN(text) {
		return &types.AttributeValueMemberN{Value: text}
	}
	return &types.AttributeValueMemberS{Value: text}
}

// fitsN reports whether text is a decimal number DynamoDB's N stores without loss.
func fitsN(text string) bool {
	s := strings.TrimPrefix(text, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e := s[i+1:]
		neg := strings.HasPrefix(e, "-")
		e = strings.TrimLeft(e, "+-")
		if e == "" || len(e) > 6 || strings.Trim(e, "0123456789") != "" {
			return false
		}
		for _, c := range e {
			exp = exp*10 + int(c-'0')
		}
		if neg {
			exp = -exp
		}
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	if intPart == "" || strings.Trim(intPart, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" {
		return false
	}
	if strings.Contains(mant, ".") && frac == "" {
		return false
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return true // zero
	}
	// The leading significant digit is worth 10^lead.
	lead := len(strings.TrimLeft(intPart, "0")) - 1
	if strings.TrimLeft(intPart, "0") == "" {
		lead = -(len(frac) - len(strings.TrimLeft(frac, "0"))) - 1
	}
	lead += exp
	digits = strings.TrimRight(digits, "0")
	return len(digits) <= 38 && lead >= -130 && lead <= 125
}

// rfc3339 turns timestamptz text output (ISO DateStyle) into RFC 3339 UTC with exactly six
// fractional digits; what RFC 3339 cannot express (infinity, BC, years beyond 9999) keeps
// PostgreSQL's text, as does anything this function cannot read.
func rfc3339(text string) string {
	if text == "infinity" || text == "-infinity" || strings.HasSuffix(text, " BC") {
		return text
	}
	if i := strings.IndexByte(text, '-'); i != 4 {
		return text // a year of more than four digits
	}
	for _, layout := range []string{"2006-01-02 15:04:05-07", "2006-01-02 15:04:05-07:00", "2006-01-02 15:04:05-07:00:00"} {
		ts, err := time.Parse(layout, text)
		if err != nil {
			continue
		}
		u := ts.UTC()
		if u.Year() < 1 || u.Year() > 9999 {
			return text
		}
		return u.Format("2006-01-02T15:04:05.000000") + "Z"
	}
	return text
}

// expectJSON decodes json/jsonb text into native attributes; numbers follow the N rule
// with the JSON text as the S fallback.
func expectJSON(text string) (types.AttributeValue, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("json text %q: %v", clip(text), err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("json text %q: trailing data", clip(text))
	}
	return jsonAV(v), nil
}

func jsonAV(v any) types.AttributeValue {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]types.AttributeValue, len(v))
		for k, e := range v {
			m[k] = jsonAV(e)
		}
		return &types.AttributeValueMemberM{Value: m}
	case []any:
		l := make([]types.AttributeValue, len(v))
		for i, e := range v {
			l[i] = jsonAV(e)
		}
		return &types.AttributeValueMemberL{Value: l}
	case string:
		return &types.AttributeValueMemberS{Value: v}
	case json.Number:
		return expectNumber(string(v))
	case bool:
		return &types.AttributeValueMemberBOOL{Value: v}
	}
	return &types.AttributeValueMemberNULL{Value: true}
}

// expectArray parses array_out text: an optional "[lo:hi]...=" bounds prefix (dropped:
// lists are zero-based), braces per dimension, elements separated by the element type's
// delimiter, double-quoted with backslash escapes when needed, unquoted NULL for SQL NULL
// (a NULL attribute in the list).
func expectArray(t *colType, text string) (types.AttributeValue, error) {
	s := text
	if strings.HasPrefix(s, "[") {
		eq := strings.Index(s, "={")
		if eq < 0 {
			return nil, fmt.Errorf("array text %q: bounds without '='", clip(text))
		}
		s = s[eq+1:]
	}
	p := &arrayText{s: s, delim: t.delim, elem: t.elem}
	if p.delim == 0 {
		p.delim = ','
	}
	av, err := p.array()
	if err == nil && p.pos != len(p.s) {
		err = fmt.Errorf("junk after the closing brace")
	}
	if err != nil {
		return nil, fmt.Errorf("%s text %q: %v", t.name, clip(text), err)
	}
	return av, nil
}

type arrayText struct {
	s     string
	pos   int
	delim byte
	elem  *colType
}

func (p *arrayText) array() (types.AttributeValue, error) {
	if p.pos >= len(p.s) || p.s[p.pos] != '{' {
		return nil, fmt.Errorf("expected '{' at %d", p.pos)
	}
	p.pos++
	l := []types.AttributeValue{}
	if p.pos < len(p.s) && p.s[p.pos] == '}' {
		p.pos++
		return &types.AttributeValueMemberL{Value: l}, nil
	}
	for {
		var (
			av  types.AttributeValue
			err error
		)
		switch {
		case p.pos >= len(p.s):
			return nil, fmt.Errorf("unterminated")
		case p.s[p.pos] == '{':
			av, err = p.array()
		case p.s[p.pos] == '"':
			var raw string
			if raw, err = p.quoted(); err == nil {
				av, err = expect(p.elem, raw)
			}
		default:
			end := p.pos
			for end < len(p.s) && p.s[end] != p.delim && p.s[end] != '}' {
				end++
			}
			raw := p.s[p.pos:end]
			p.pos = end
			if raw == "NULL" {
				av = &types.AttributeValueMemberNULL{Value: true}
			} else {
				av, err = expect(p.elem, raw)
			}
		}
		if err != nil {
			return nil, err
		}
		l = append(l, av)
		if p.pos >= len(p.s) {
			return nil, fmt.Errorf("unterminated")
		}
		switch p.s[p.pos] {
		case p.delim:
			p.pos++
		case '}':
			p.pos++
			return &types.AttributeValueMemberL{Value: l}, nil
		default:
			return nil, fmt.Errorf("unexpected %q at %d", p.s[p.pos], p.pos)
		}
	}
}

func (p *arrayText) quoted() (string, error) {
	var b bytes.Buffer
	p.pos++ // opening quote
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		p.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.pos >= len(p.s) {
				return "", fmt.Errorf("unterminated escape")
			}
			c = p.s[p.pos]
			p.pos++
		}
		b.WriteByte(c)
	}
	return "", fmt.Errorf("unterminated quoted element")
}

func clip(s string) string {
	const max = 240
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
