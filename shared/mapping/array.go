package mapping

import (
	"bytes"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// maxArrayDims is PostgreSQL's MAXDIM; deeper nesting cannot come from the
// server, and the cap keeps recursion bounded on hostile input.
const maxArrayDims = 6

// arrayParser reads PostgreSQL's array_out format. It is deliberately a bit
// more lenient than array_out's output (whitespace, backslashes in unquoted
// elements, case-insensitive NULL) in the same way array_in is, so text that
// PostgreSQL itself would accept round-trips.
type arrayParser struct {
	t     *Type
	text  []byte
	pos   int
	delim byte
	depth int
	index int // 1-based element counter across all dimensions, for errors
}

func arrayValue(t *Type, text []byte) (types.AttributeValue, error) {
	if t.Elem == nil {
		return nil, t.errorf("array type has no element type")
	}
	// typdelim belongs to the element type (box uses ';'); fall back to the
	// array's own field in case the caller stored it there.
	delim := t.Elem.Delim
	if delim == 0 {
		delim = t.Delim
	}
	if delim == 0 {
		delim = ','
	}
	p := &arrayParser{t: t, text: text, delim: delim}
	if err := p.skipDimensions(); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos >= len(text) || text[p.pos] != '{' {
		return nil, p.malformed("array must start with '{'")
	}
	l, err := p.list()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(text) {
		return nil, p.malformed("junk after closing '}'")
	}
	return &types.AttributeValueMemberL{Value: l}, nil
}

func (p *arrayParser) malformed(why string) error {
	return p.t.errorf("%s at offset %d in %s", why, p.pos, excerpt(p.text))
}

// skipDimensions drops the "[lo:hi]...=" prefix array_out adds when a lower
// bound is not 1; DynamoDB lists are always zero-based, so it carries nothing
// we can keep.
func (p *arrayParser) skipDimensions() error {
	if p.pos >= len(p.text) || p.text[p.pos] != '[' {
		return nil
	}
	for p.pos < len(p.text) && p.text[p.pos] == '[' {
		end := bytes.IndexByte(p.text[p.pos:], ']')
		if end < 0 {
			return p.malformed("unterminated dimension decoration")
		}
		for _, c := range p.text[p.pos+1 : p.pos+end] {
			if !isDigit(c) && c != ':' && c != '-' && c != '+' {
				return p.malformed("invalid dimension decoration")
			}
		}
		p.pos += end + 1
	}
	if p.pos >= len(p.text) || p.text[p.pos] != '=' {
		return p.malformed("missing '=' after dimension decoration")
	}
	p.pos++
	return nil
}

func isArraySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func (p *arrayParser) skipSpace() {
	for p.pos < len(p.text) && isArraySpace(p.text[p.pos]) && p.text[p.pos] != p.delim {
		p.pos++
	}
}

// list parses "{...}" starting at the '{'.
func (p *arrayParser) list() ([]types.AttributeValue, error) {
	p.depth++
	if p.depth > maxArrayDims {
		return nil, p.malformed(fmt.Sprintf("more than %d dimensions", maxArrayDims))
	}
	defer func() { p.depth-- }()
	p.pos++ // '{'
	out := []types.AttributeValue{}
	p.skipSpace()
	if p.pos < len(p.text) && p.text[p.pos] == '}' {
		p.pos++
		return out, nil
	}
	nested := false
	for {
		p.skipSpace()
		if p.pos >= len(p.text) {
			return nil, p.malformed("unterminated array")
		}
		var (
			av  types.AttributeValue
			err error
		)
		isSub := p.text[p.pos] == '{'
		if len(out) > 0 && isSub != nested {
			return nil, p.malformed("mixed sub-arrays and elements")
		}
		nested = isSub
		if isSub {
			var sub []types.AttributeValue
			sub, err = p.list()
			av = &types.AttributeValueMemberL{Value: sub}
		} else {
			av, err = p.element()
		}
		if err != nil {
			return nil, err
		}
		out = append(out, av)
		p.skipSpace()
		if p.pos >= len(p.text) {
			return nil, p.malformed("unterminated array")
		}
		switch p.text[p.pos] {
		case p.delim:
			p.pos++
		case '}':
			p.pos++
			return out, nil
		default:
			return nil, p.malformed(fmt.Sprintf("expected %q or '}'", p.delim))
		}
	}
}

func (p *arrayParser) element() (types.AttributeValue, error) {
	p.index++
	var raw []byte
	if p.text[p.pos] == '"' {
		p.pos++
		for {
			if p.pos >= len(p.text) {
				return nil, p.t.errorf("unterminated quoted element in %s", excerpt(p.text))
			}
			c := p.text[p.pos]
			p.pos++
			if c == '"' {
				break
			}
			if c == '\\' {
				if p.pos >= len(p.text) {
					return nil, p.t.errorf("unterminated quoted element in %s", excerpt(p.text))
				}
				c = p.text[p.pos]
				p.pos++
			}
			raw = append(raw, c)
		}
		if raw == nil {
			raw = []byte{}
		}
	} else {
		escaped, keep := false, 0 // keep: length of raw up to the last significant byte
		for p.pos < len(p.text) {
			c := p.text[p.pos]
			if c == p.delim || c == '}' {
				break
			}
			if c == '"' || c == '{' {
				return nil, p.malformed(fmt.Sprintf("unexpected %q in unquoted element", c))
			}
			p.pos++
			if c == '\\' {
				if p.pos >= len(p.text) {
					return nil, p.malformed("trailing backslash")
				}
				c = p.text[p.pos]
				p.pos++
				escaped = true
				raw = append(raw, c)
				keep = len(raw)
				continue
			}
			raw = append(raw, c)
			if !isArraySpace(c) {
				keep = len(raw)
			}
		}
		// array_in ignores unescaped trailing whitespace; leading
		// whitespace was already skipped by the caller.
		raw = raw[:keep]
		if len(raw) == 0 {
			return nil, p.malformed("empty unquoted element")
		}
		if !escaped && bytes.EqualFold(raw, []byte("NULL")) {
			return &types.AttributeValueMemberNULL{Value: true}, nil
		}
	}
	av, err := Value(p.t.Elem, raw)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: element %d: %w", p.t.label(), p.index, err)
	}
	return av, nil
}
