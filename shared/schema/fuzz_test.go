package schema

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgtype"

	"tandem/localstack/dynamocheck"
	"tandem/shared/fault"
	"tandem/shared/mapping"
)

// keyTypes are the column types a key is made of in FuzzKeyInjective, one per key
// attribute type and text form.
var keyTypes = []*mapping.Type{
	{OID: pgtype.TextOID, Name: "text", Category: 'S'},
	{OID: pgtype.Int8OID, Name: "int8", Category: 'N'},
	{OID: pgtype.NumericOID, Name: "numeric", Category: 'N'},
	{OID: pgtype.ByteaOID, Name: "bytea", Category: 'U'},
	{OID: pgtype.TimestamptzOID, Name: "timestamptz", Category: 'D'},
	{OID: pgtype.Float8OID, Name: "float8", Category: 'N'},
}

// fuzzKeyTable is a table keyed on 1 to 4 columns (shape%4+1), column i of keyTypes[kinds/6^i%6].
func fuzzKeyTable(shape, kinds uint8) *Table {
	n := int(shape%4) + 1
	t := &Table{Schema: "public", Name: "t", ReplicaIdentity: 'd'}
	sel := int(kinds)
	for i := range n {
		t.Columns = append(t.Columns, Column{Name: fmt.Sprintf("k%d", i), Type: keyTypes[sel%len(keyTypes)]})
		sel /= len(keyTypes)
		t.Key = append(t.Key, i)
	}
	t.Identity = t.Key
	t.Columns = append(t.Columns, Column{Name: "v", Type: keyTypes[0]})
	return t
}

// FuzzKeyInjective: the item key of a row (partition key, sort key, the combined __sk of
// keys of three or more columns) is injective: two keys that PostgreSQL holds different
// never map to one DynamoDB item, and the stream's KeyID names the same item exactly when
// DynamoDB does. Every key ItemKey returns is one DynamoDB accepts; a refused one is a
// poison error naming the table and the column.
func FuzzKeyInjective(f *testing.F) {
	add := func(shape, sel uint8, a, b [4]string) {
		f.Add(shape, sel, []byte(a[0]), []byte(a[1]), []byte(a[2]), []byte(a[3]), []byte(b[0]), []byte(b[1]), []byte(b[2]), []byte(b[3]))
	}
	add(0, 0, [4]string{"a"}, [4]string{"b"})
	add(1, 0, [4]string{"a", "b"}, [4]string{"a", "c"})
	add(2, 0, [4]string{"a", "b", "c"}, [4]string{"a", `b","c`, ""})
	add(2, 2+6*2, [4]string{"x", "1.0", "1"}, [4]string{"x", "1", "1.00"})
	add(3, 1+6*3+36*4, [4]string{"7", `\x00`, "2024-05-01 10:20:30+00", "q"}, [4]string{"7", `\x0000`, "2024-05-01 12:20:30+02", "q"})
	add(1, 3+6*3, [4]string{`\x61004262`, `\x63`}, [4]string{`\x61`, `\x62004263`})
	add(1, 2+6*5, [4]string{"1.50", "-0"}, [4]string{"1.5", "0"})
	add(2, 0, [4]string{"a", "b", "\xff"}, [4]string{"a", "b", "\xfe"})
	f.Fuzz(func(t *testing.T, shape, sel uint8, a0, a1, a2, a3, b0, b1, b2, b3 []byte) {
		tb := fuzzKeyTable(shape, sel)
		n := len(tb.Key)
		a := append([][]byte{a0, a1, a2, a3}[:n:n], []byte("va"))
		b := append([][]byte{b0, b1, b2, b3}[:n:n], []byte("vb"))
		ka, errA := tb.ItemKey(a)
		kb, errB := tb.ItemKey(b)
		for _, c := range []struct {
			row [][]byte
			key map[string]types.AttributeValue
			err error
		}{{a, ka, errA}, {b, kb, errB}} {
			if c.err != nil {
				checkPoison(t, tb, c.row, c.err)
				continue
			}
			checkKey(t, tb, c.row, c.key)
		}
		if errA != nil || errB != nil {
			return
		}
		names := keyNames(tb)
		same := dynamocheck.KeyIdentity(ka, names) == dynamocheck.KeyIdentity(kb, names)
		if same && !pgKeysEqual(tb, a, b) {
			t.Fatalf("keys %s and %s are different in PostgreSQL but map to one DynamoDB item %v", tb.KeyString(a), tb.KeyString(b), dynamocheck.KeyIdentity(ka, names))
		}
		if idSame := tb.KeyID(ka) == tb.KeyID(kb); idSame != same {
			t.Fatalf("KeyID of %s and %s: equal %v, but DynamoDB's keys are equal: %v", tb.KeyString(a), tb.KeyString(b), idSame, same)
		}
	})
}

func keyNames(t *Table) []string {
	var names []string
	for _, k := range t.KeySchema() {
		names = append(names, k.Name)
	}
	return names
}

func checkKey(t *testing.T, tb *Table, row [][]byte, key map[string]types.AttributeValue) {
	t.Helper()
	ks := tb.KeySchema()
	if len(key) != len(ks) {
		t.Fatalf("ItemKey(%s) = %d attributes, the key schema has %d", tb.KeyString(row), len(key), len(ks))
	}
	for _, k := range ks {
		if err := dynamocheck.Key(key[k.Name], dynamocheck.KeyAttr{Name: k.Name, Type: k.Type, Sort: k.Kind == types.KeyTypeRange}); err != nil {
			t.Fatalf("ItemKey(%s): DynamoDB refuses it: %v", tb.KeyString(row), err)
		}
	}
}

func checkPoison(t *testing.T, tb *Table, row [][]byte, err error) {
	t.Helper()
	var pe *fault.PoisonError
	if !errors.As(err, &pe) {
		t.Fatalf("ItemKey(%s) error is not a poison error: %v", tb.KeyString(row), err)
	}
	if pe.Table != tb.Source() || (tb.Column(pe.Column) < 0 && pe.Column != AttrSortKey) || pe.Reason == "" {
		t.Fatalf("ItemKey(%s) error does not name the table and column: %+v", tb.KeyString(row), pe)
	}
}

// pgKeysEqual reports whether PostgreSQL holds the two keys equal, column by column: the
// same text, or the same value of the column's type (numbers by value, bytea by its bytes,
// timestamptz by its instant).
func pgKeysEqual(tb *Table, a, b [][]byte) bool {
	for _, ci := range tb.Key {
		x, y := a[ci], b[ci]
		if bytes.Equal(x, y) {
			continue
		}
		switch tb.Columns[ci].Type.OID {
		case pgtype.Int8OID, pgtype.NumericOID, pgtype.Float8OID:
			cx, okx := dynamocheck.ParseNumber(string(x))
			cy, oky := dynamocheck.ParseNumber(string(y))
			if !okx || !oky || cx.String() != cy.String() {
				return false
			}
		case pgtype.ByteaOID:
			bx, okx := byteaBytes(string(x))
			by, oky := byteaBytes(string(y))
			if !okx || !oky || !bytes.Equal(bx, by) {
				return false
			}
		case pgtype.TimestamptzOID:
			tx, okx := pgTimestamptz(string(x))
			ty, oky := pgTimestamptz(string(y))
			if !okx || !oky || !tx.Equal(ty) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// byteaBytes decodes bytea's hex and escape output formats.
func byteaBytes(s string) ([]byte, bool) {
	if strings.HasPrefix(s, `\x`) {
		b, err := hex.DecodeString(s[2:])
		return b, err == nil
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] != '\\':
			out = append(out, s[i])
		case i+1 < len(s) && s[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(s):
			var c byte
			for _, d := range s[i+1 : i+4] {
				if d < '0' || d > '7' {
					return nil, false
				}
				c = c<<3 | byte(d-'0')
			}
			out = append(out, c)
			i += 3
		default:
			return nil, false
		}
	}
	return out, true
}

func pgTimestamptz(s string) (time.Time, bool) {
	s = strings.Replace(s, "T", " ", 1)
	for _, layout := range []string{"2006-01-02 15:04:05.999999-07", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05.999999-07:00:00"} {
		if ts, err := time.Parse(layout, s); err == nil {
			return ts, true
		}
	}
	return time.Time{}, false
}
