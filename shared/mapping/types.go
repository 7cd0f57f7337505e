// Package mapping converts PostgreSQL column values, in PostgreSQL's text
// output form, into DynamoDB attribute values.
//
// Text form is the common denominator: pgoutput sends it during logical
// replication and pgx returns it for text-format results, so the initial
// snapshot and the change stream produce identical attributes.
package mapping

import (
	"fmt"
	"strconv"
)

// SessionSettings are the GUCs every connection (query and replication) must use so the text forms below are stable.
var SessionSettings = map[string]string{"DateStyle": "ISO, MDY", "TimeZone": "UTC", "IntervalStyle": "postgres", "bytea_output": "hex", "extra_float_digits": "1"}

// Type is what mapping needs to know about a column's PostgreSQL type (domains already resolved to their base type by the caller).
type Type struct {
	OID      uint32 // base type OID, e.g. pgtype.Int4OID
	Name     string // pg_type.typname, for errors ("int4", "_text", "mood")
	Category byte   // pg_type.typcategory: 'A' array, 'E' enum, 'N' numeric, 'S' string, ...
	Elem     *Type  // element type when Category == 'A'
	Delim    byte   // array delimiter (typdelim of the element type; ',' for almost all, ';' for box)
}

// int2vector and oidvector are catalogued with category 'A', but their text
// form is space separated ("1 2 3") rather than braced, so they are treated as
// plain strings instead of going through the array parser.
const (
	int2vectorOID = 22
	oidvectorOID  = 30
)

func (t *Type) isArray() bool {
	return t.Category == 'A' && t.OID != int2vectorOID && t.OID != oidvectorOID
}

// label names the type in error messages; callers may leave Name empty for
// built-in types they construct by hand.
func (t *Type) label() string {
	if t.Name != "" {
		return t.Name
	}
	return "oid " + strconv.FormatUint(uint64(t.OID), 10)
}

func (t *Type) errorf(format string, args ...any) error {
	return fmt.Errorf("mapping %s: "+format, append([]any{t.label()}, args...)...)
}

// maxExcerpt bounds how much of a bad value lands in an error, because values
// can be megabytes long and errors end up in logs.
const maxExcerpt = 48

func clip(text []byte) string {
	if len(text) <= maxExcerpt {
		return string(text)
	}
	return string(text[:maxExcerpt]) + "..."
}

// excerpt quotes so that control characters and invalid UTF-8 stay readable.
func excerpt(text []byte) string {
	if len(text) <= maxExcerpt {
		return strconv.Quote(string(text))
	}
	return strconv.Quote(string(text[:maxExcerpt])) + "..."
}
