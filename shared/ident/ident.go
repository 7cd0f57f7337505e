// Package ident is the one place that names a PostgreSQL table. A table travels as its
// (schema, name) pair, never as a dotted string cut apart again, because either part may
// itself hold a dot, a space, a quote or a comma. Its one text form (String, read back by
// Parse) is the table's id in the control table, in logs, status and dead letters, and
// what the configuration's "source" and TANDEM_TABLES hold. SQL text quotes identifiers
// here too.
package ident

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// DefaultSchema is the schema of a table named without one.
const DefaultSchema = "public"

// Table identifies a table by its exact schema and table names, as in the catalog.
type Table struct {
	Schema, Name string
}

// String is the canonical text form: "schema.table", each part as it is when it consists
// only of ASCII letters, digits, "_" and "$" (today's form of ordinary names, upper case
// included, e.g. public.orders), and otherwise double-quoted the PostgreSQL way, a quote
// doubled: public."a.b", "My Schema"."x ""y""". Parse reads it back exactly.
func (t Table) String() string { return part(t.Schema) + "." + part(t.Name) }

// SQL is the table as a quoted SQL identifier ("schema"."table"), usable as regclass text.
func (t Table) SQL() string { return pgx.Identifier{t.Schema, t.Name}.Sanitize() }

// Quote quotes one identifier (a column, a publication) for SQL text.
func Quote(name string) string { return pgx.Identifier{name}.Sanitize() }

func part(s string) string {
	if plain(s) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// plain reports whether a part needs no quotes in the canonical form.
func plain(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$') {
			return false
		}
	}
	return true
}

// Parse reads one table name: "table" (in the public schema) or "schema.table". A part is
// either double-quoted, with "" standing for a quote, holding any characters; or unquoted,
// taken literally (no case folding, unlike SQL), and then free of dots, quotes, commas and
// white space. Space around the name is ignored.
func Parse(s string) (Table, error) {
	p := parser{s: s}
	p.space()
	t, err := p.table()
	if err == nil {
		p.space()
		if p.i < len(s) {
			err = p.errorf("unexpected %q after the name (quote a part that holds it, e.g. public.\"a b\")", p.rest())
		}
	}
	if err != nil {
		return Table{}, err
	}
	return t, nil
}

// ParseList reads a comma-separated list of table names, as Parse reads each (a quoted
// part may hold commas). Empty entries are skipped.
func ParseList(s string) ([]Table, error) {
	p := parser{s: s}
	var out []Table
	for {
		p.space()
		if p.i == len(s) {
			return out, nil
		}
		if s[p.i] == ',' {
			p.i++
			continue
		}
		t, err := p.table()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		p.space()
		if p.i < len(s) && s[p.i] != ',' {
			return nil, p.errorf("expected a comma after %s, found %q", t, p.rest())
		}
	}
}

type parser struct {
	s string
	i int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("table name %q (at byte %d): %s; write \"table\" or \"schema.table\", double-quoting a part that holds a dot, a space, a comma or a quote (\"\" for a quote)", p.s, p.i, fmt.Sprintf(format, args...))
}

func (p *parser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20] + "…"
	}
	return r
}

func (p *parser) space() {
	for p.i < len(p.s) {
		r, n := utf8.DecodeRuneInString(p.s[p.i:])
		if !unicode.IsSpace(r) {
			return
		}
		p.i += n
	}
}

func (p *parser) table() (Table, error) {
	first, err := p.part()
	if err != nil {
		return Table{}, err
	}
	if p.i == len(p.s) || p.s[p.i] != '.' {
		return Table{Schema: DefaultSchema, Name: first}, nil
	}
	p.i++
	second, err := p.part()
	if err != nil {
		return Table{}, err
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		return Table{}, p.errorf("more than two dot-separated parts")
	}
	return Table{Schema: first, Name: second}, nil
}

func (p *parser) part() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '"' {
		start := p.i
		p.i++
		var b strings.Builder
		for {
			j := strings.IndexByte(p.s[p.i:], '"')
			if j < 0 {
				p.i = start
				return "", p.errorf("unterminated quote")
			}
			b.WriteString(p.s[p.i : p.i+j])
			p.i += j + 1
			if p.i < len(p.s) && p.s[p.i] == '"' {
				b.WriteByte('"')
				p.i++
				continue
			}
			break
		}
		if b.Len() == 0 {
			p.i = start
			return "", p.errorf("empty quoted name")
		}
		return b.String(), nil
	}
	start := p.i
	for p.i < len(p.s) {
		r, n := utf8.DecodeRuneInString(p.s[p.i:])
		if r == '.' || r == '"' || r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError && n == 1 {
			break
		}
		p.i += n
	}
	if p.i == start {
		if p.i == len(p.s) {
			return "", p.errorf("missing name")
		}
		return "", p.errorf("missing name before %q", p.rest())
	}
	return p.s[start:p.i], nil
}
