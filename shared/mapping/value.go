package mapping

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgtype"

	"tandem/shared/limits"
)

// Value maps the non-NULL text value of a column of type t. (SQL NULL is handled by callers: the attribute is omitted.)
//
// Value never retains text: every returned attribute owns its data, so
// callers may reuse the buffer (pgx and pglogrepl both do).
func Value(t *Type, text []byte) (types.AttributeValue, error) {
	if t == nil {
		return nil, errors.New("mapping: nil type")
	}
	if t.isArray() {
		return nested(t)(arrayValue(t, text))
	}
	switch t.OID {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		return numberValue(t, text, false)
	case pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		return numberValue(t, text, true)
	case pgtype.BoolOID:
		return boolValue(t, text)
	case pgtype.ByteaOID:
		return byteaValue(t, text)
	case pgtype.JSONOID, pgtype.JSONBOID:
		return nested(t)(jsonValue(t, text))
	case pgtype.TimestamptzOID:
		return timestamptzValue(t, text)
	}
	// Dispatch is by OID, not category: money and the reg* types are
	// category 'N' but their text is not a number.
	return stringValue(t, text)
}

// nested checks a list or map against DynamoDB's nesting rules (depth, empty map keys),
// which PostgreSQL's arrays of jsonb and jsonb documents can break; the error names t.
func nested(t *Type) func(types.AttributeValue, error) (types.AttributeValue, error) {
	return func(av types.AttributeValue, err error) (types.AttributeValue, error) {
		if err != nil {
			return nil, err
		}
		if err := limits.CheckNesting(av); err != nil {
			return nil, t.errorf("%v", err)
		}
		return av, nil
	}
}

// stringValue rejects invalid UTF-8 (possible with SQL_ASCII databases)
// because DynamoDB requires UTF-8 strings and the SDK would otherwise
// replace bad bytes silently.
func stringValue(t *Type, text []byte) (types.AttributeValue, error) {
	if !utf8.Valid(text) {
		return nil, t.errorf("invalid UTF-8 in %s", excerpt(text))
	}
	return &types.AttributeValueMemberS{Value: string(text)}, nil
}

func boolValue(t *Type, text []byte) (types.AttributeValue, error) {
	switch string(text) {
	case "t":
		return &types.AttributeValueMemberBOOL{Value: true}, nil
	case "f":
		return &types.AttributeValueMemberBOOL{Value: false}, nil
	}
	return nil, t.errorf("invalid boolean %s", excerpt(text))
}

// byteaValue also accepts the legacy escape format so a connection that
// missed bytea_output=hex still yields the right bytes; the two forms are
// unambiguous because escape format always doubles a leading backslash.
func byteaValue(t *Type, text []byte) (types.AttributeValue, error) {
	if len(text) >= 2 && text[0] == '\\' && text[1] == 'x' {
		out := make([]byte, hex.DecodedLen(len(text)-2))
		if _, err := hex.Decode(out, text[2:]); err != nil {
			return nil, t.errorf("invalid bytea hex %s", excerpt(text))
		}
		return &types.AttributeValueMemberB{Value: out}, nil
	}
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		switch {
		case i+1 < len(text) && text[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(text) && isOctal(text[i+1]) && isOctal(text[i+2]) && isOctal(text[i+3]) && text[i+1] <= '3':
			out = append(out, (text[i+1]-'0')<<6|(text[i+2]-'0')<<3|(text[i+3]-'0'))
			i += 3
		default:
			return nil, t.errorf("invalid bytea escape in %s", excerpt(text))
		}
	}
	return &types.AttributeValueMemberB{Value: out}, nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// timestamptzValue normalises to RFC 3339 UTC with fixed microseconds so the
// strings sort chronologically and compare equal across sessions. Values
// RFC 3339 cannot express (infinities, BC, years beyond 9999) keep
// PostgreSQL's text so nothing is lost.
func timestamptzValue(t *Type, text []byte) (types.AttributeValue, error) {
	s := string(text)
	if s == "infinity" || s == "-infinity" {
		return &types.AttributeValueMemberS{Value: s}, nil
	}
	bc := strings.HasSuffix(s, " BC")
	ts, bigYear, err := parseTimestamptz(strings.TrimSuffix(s, " BC"), bc)
	if err != nil {
		return nil, t.errorf("invalid timestamptz %s (want ISO DateStyle): %v", excerpt(text), err)
	}
	if bc || bigYear {
		return &types.AttributeValueMemberS{Value: s}, nil
	}
	u := ts.UTC()
	// Converting a non-UTC offset can cross year 1 or 9999.
	if u.Year() < 1 || u.Year() > 9999 {
		return &types.AttributeValueMemberS{Value: s}, nil
	}
	return &types.AttributeValueMemberS{Value: u.Format("2006-01-02T15:04:05.000000Z07:00")}, nil
}

// tsScanner reads the fixed-layout ISO text "YYYY-MM-DD HH:MM:SS[.ffffff]±HH[:MM[:SS]]".
// time.Parse is not used because PostgreSQL's offsets may carry seconds
// (LMT zones) and its year field may exceed four digits.
type tsScanner struct {
	s   string
	pos int
	err error
}

func (p *tsScanner) num(minDigits, maxDigits int, what string) int {
	if p.err != nil {
		return 0
	}
	start, v := p.pos, 0
	for p.pos < len(p.s) && isDigit(p.s[p.pos]) && p.pos-start < maxDigits {
		v = v*10 + int(p.s[p.pos]-'0')
		p.pos++
	}
	if p.pos-start < minDigits {
		p.err = fmt.Errorf("bad %s", what)
	}
	return v
}

func (p *tsScanner) lit(c byte, alt byte) {
	if p.err != nil {
		return
	}
	if p.pos >= len(p.s) || (p.s[p.pos] != c && p.s[p.pos] != alt) {
		p.err = fmt.Errorf("expected %q at offset %d", c, p.pos)
		return
	}
	p.pos++
}

func (p *tsScanner) peek() byte {
	if p.err != nil || p.pos >= len(p.s) {
		return 0
	}
	return p.s[p.pos]
}

// parseTimestamptz reads s; with bc, s is the part before " BC" and its year counts back
// (1 BC is the astronomical year 0, a leap year).
func parseTimestamptz(s string, bc bool) (ts time.Time, bigYear bool, err error) {
	p := &tsScanner{s: s}
	year := p.num(4, 10, "year")
	// A fifth year digit: valid PostgreSQL, but not RFC 3339 (the rest is checked all the same).
	bigYear = p.pos > 4
	p.lit('-', '-')
	month := p.num(2, 2, "month")
	p.lit('-', '-')
	day := p.num(2, 2, "day")
	p.lit(' ', 'T')
	hour := p.num(2, 2, "hour")
	p.lit(':', ':')
	minute := p.num(2, 2, "minute")
	p.lit(':', ':')
	sec := p.num(2, 2, "second")
	nsec := 0
	if p.peek() == '.' {
		p.pos++
		start := p.pos
		frac := p.num(1, 6, "fraction")
		for n := p.pos - start; n < 9; n++ {
			frac *= 10
		}
		nsec = frac
	}
	sign := 0
	switch p.peek() {
	case '+':
		sign = 1
	case '-':
		sign = -1
	default:
		if p.err == nil {
			p.err = errors.New("missing UTC offset")
		}
	}
	p.pos++
	off := p.num(2, 2, "offset hours") * 3600
	if p.peek() == ':' {
		p.pos++
		off += p.num(2, 2, "offset minutes") * 60
		if p.peek() == ':' {
			p.pos++
			off += p.num(2, 2, "offset seconds")
		}
	}
	if p.err != nil {
		return time.Time{}, false, p.err
	}
	if p.pos != len(s) {
		return time.Time{}, false, fmt.Errorf("unexpected text at offset %d", p.pos)
	}
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false, errors.New("field out of range")
	}
	if bigYear {
		return time.Time{}, true, nil
	}
	if bc {
		year = 1 - year
	}
	ts = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.FixedZone("", sign*off))
	if ts.Day() != day {
		return time.Time{}, false, errors.New("day out of range for month")
	}
	return ts, false, nil
}
