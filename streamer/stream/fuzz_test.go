package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"tandem/localstack/dynamocheck"
	"tandem/shared/fault"
	"tandem/shared/limits"
	"tandem/shared/mapping"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

var (
	fzInt4 = &mapping.Type{OID: pgtype.Int4OID, Name: "int4", Category: 'N'}
	fzText = &mapping.Type{OID: pgtype.TextOID, Name: "text", Category: 'S'}
	// fuzzTypes is the catalog the fuzzed relations' columns are resolved in; any other
	// type oid is a string type of its own.
	fuzzTypes = map[uint32]*mapping.Type{
		pgtype.Int4OID:        fzInt4,
		pgtype.Int8OID:        {OID: pgtype.Int8OID, Name: "int8", Category: 'N'},
		pgtype.TextOID:        fzText,
		pgtype.NumericOID:     {OID: pgtype.NumericOID, Name: "numeric", Category: 'N'},
		pgtype.Float8OID:      {OID: pgtype.Float8OID, Name: "float8", Category: 'N'},
		pgtype.BoolOID:        {OID: pgtype.BoolOID, Name: "bool", Category: 'B'},
		pgtype.ByteaOID:       {OID: pgtype.ByteaOID, Name: "bytea", Category: 'U'},
		pgtype.JSONBOID:       {OID: pgtype.JSONBOID, Name: "jsonb", Category: 'U'},
		pgtype.TimestamptzOID: {OID: pgtype.TimestamptzOID, Name: "timestamptz", Category: 'D'},
		pgtype.UUIDOID:        {OID: pgtype.UUIDOID, Name: "uuid", Category: 'U'},
		pgtype.Int4ArrayOID:   {OID: pgtype.Int4ArrayOID, Name: "_int4", Category: 'A', Elem: fzInt4, Delim: ','},
		pgtype.TextArrayOID:   {OID: pgtype.TextArrayOID, Name: "_text", Category: 'A', Elem: fzText, Delim: ','},
	}
)

func fuzzColumn(c *pglogrepl.RelationMessageColumn) (schema.Column, error) {
	typ, ok := fuzzTypes[c.DataType]
	if !ok {
		typ = &mapping.Type{OID: c.DataType, Name: fmt.Sprintf("type%d", c.DataType), Category: 'U'}
	}
	return schema.Column{Name: c.Name, Type: typ, SQLType: typ.Name}, nil
}

// pgoutput message encoders, for the seeds.
type wcol struct {
	flags byte
	name  string
	oid   uint32
}

func relationMsg(id uint32, ns, name string, ident byte, cols ...wcol) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(append(b, ns...), 0)
	b = append(append(b, name...), 0)
	b = append(b, ident)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, c.flags)
		b = append(append(b, c.name...), 0)
		b = binary.BigEndian.AppendUint32(b, c.oid)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// tupleData encodes values: nil is NULL, "\x00toast" an unchanged TOAST value.
func tupleData(vals ...*string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		switch {
		case v == nil:
			b = append(b, 'n')
		case *v == "\x00toast":
			b = append(b, 'u')
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(*v)))
			b = append(b, *v...)
		}
	}
	return b
}

func change(kind byte, id uint32, parts ...any) []byte {
	b := binary.BigEndian.AppendUint32([]byte{kind}, id)
	for _, p := range parts {
		switch p := p.(type) {
		case byte:
			b = append(b, p)
		case []byte:
			b = append(b, p...)
		}
	}
	return b
}

func sp(s string) *string { return &s }

// FuzzPgoutputChange decodes a Relation message and a change (each raw pgoutput bytes, as
// they arrive in XLogData) the way the streamer does (parseWAL, relationTable, tuple,
// ItemKey, Item) into the item it would write. Nothing may panic; an error must say what
// is wrong and name the table (and the column, for a row DynamoDB cannot store); an item
// or key that comes out must be one DynamoDB accepts.
func FuzzPgoutputChange(f *testing.F) {
	orders := relationMsg(16384, "public", "orders", 'd',
		wcol{1, "id", pgtype.Int4OID}, wcol{0, "name", pgtype.TextOID}, wcol{0, "doc", pgtype.JSONBOID},
		wcol{0, "price", pgtype.NumericOID}, wcol{0, "data", pgtype.ByteaOID}, wcol{0, "at", pgtype.TimestamptzOID},
		wcol{0, "tags", pgtype.Int4ArrayOID}, wcol{0, "ok", pgtype.BoolOID})
	row := tupleData(sp("7"), sp("żółw"), sp(`{"a": [1, {"b": null}], "n": 1e400}`), sp("123.4500"), sp(`\x00ff`),
		sp("2024-05-01 10:20:30.123456+00"), sp("{1,2,NULL}"), sp("t"))
	f.Add(uint8(0), orders, change('I', 16384, byte('N'), row))
	f.Add(uint8(0), orders, change('U', 16384, byte('K'), tupleData(sp("6"), nil, nil, nil, nil, nil, nil, nil), byte('N'),
		tupleData(sp("7"), nil, sp("\x00toast"), sp("NaN"), nil, sp("infinity"), sp("{}"), sp("f"))))
	f.Add(uint8(0), orders, change('D', 16384, byte('K'), tupleData(sp("7"), nil, nil, nil, nil, nil, nil, nil)))
	// Fewer columns than the relation: the missing ones were written as NULL (absent), and
	// a key column among them indexed past the tuple; more: Item indexed past the columns.
	f.Add(uint8(0), orders, change('I', 16384, byte('N'), tupleData(sp("7"))))
	f.Add(uint8(0), orders, change('I', 16384, byte('N'), tupleData(sp("7"), nil, nil, nil, nil, nil, nil, nil, sp("extra"))))
	// A column length past the end: pglogrepl.Parse indexed out of range.
	f.Add(uint8(0), orders, change('I', 16384, byte('N'), []byte{0, 1, 't', 0, 0, 0, 100, 'a', 'b'}))
	// A TRUNCATE of 2^32-1 relations: pglogrepl allocated them before reading any.
	f.Add(uint8(0), orders, change('T', 0xffffffff, byte(0), []byte{0, 0, 0, 1}))
	f.Add(uint8(0), orders, []byte{})
	multi := relationMsg(16390, "audit", "my.events", 'f',
		wcol{1, "tenant", pgtype.TextOID}, wcol{1, "n", pgtype.Int8OID}, wcol{1, "at", pgtype.TimestamptzOID}, wcol{1, "blob", pgtype.ByteaOID})
	f.Add(uint8(1), multi, change('I', 16390, byte('N'), tupleData(sp("acme"), sp("42"), sp("2024-05-01 10:20:30+00"), sp(`\x`))))
	f.Add(uint8(2), multi, change('U', 16390, byte('O'), tupleData(sp("acme"), sp("42"), sp("2024-05-01 10:20:30+00"), sp(`\x01`)), byte('N'),
		tupleData(sp("acme"), sp("43"), sp("2024-05-01 10:20:30+00"), sp(`\x01`))))
	f.Add(uint8(0), relationMsg(1, "public", "nokey", 'n', wcol{0, "v", pgtype.TextOID}), change('I', 1, byte('N'), tupleData(sp("x"))))
	f.Add(uint8(0), relationMsg(2, "public", "dup", 'd', wcol{1, "id", pgtype.Int4OID}, wcol{0, "id", pgtype.TextOID}), change('I', 2, byte('N'), tupleData(sp("1"), sp("x"))))
	f.Add(uint8(0), relationMsg(3, "public", "bad", 'd', wcol{1, "id", pgtype.Int4OID}, wcol{0, "\xff", pgtype.TextOID}), change('I', 3, byte('N'), tupleData(sp("1"), sp("x"))))

	f.Fuzz(func(t *testing.T, mode uint8, relation, msg []byte) {
		rm, err := parseWAL(relation)
		if err != nil {
			checkDecodeError(t, relation, err)
			return
		}
		r, ok := rm.(*pglogrepl.RelationMessage)
		if !ok {
			return
		}
		// The catalog's item key: none (the replica identity's columns are the key), the
		// first column, or the first three.
		cat := &schema.Table{Schema: r.Namespace, Name: r.RelationName}
		if n := min(int(mode%3)*2-1, len(r.Columns)); n > 0 {
			for i := range n {
				cat.Columns = append(cat.Columns, schema.Column{Name: r.Columns[i].Name})
				cat.Key = append(cat.Key, i)
			}
		}
		tb, skip, err := relationTable(r, cat, "target", fuzzColumn)
		if err != nil {
			t.Fatalf("relationTable: %v", err)
		}
		if tb == nil {
			if skip == "" {
				t.Fatal("a table that is not replicated must say why")
			}
			return
		}
		checkTable(t, tb)
		m, err := parseWAL(msg)
		if err != nil {
			checkDecodeError(t, msg, err)
			return
		}
		var old, next *pglogrepl.TupleData
		switch m := m.(type) {
		case *pglogrepl.InsertMessage:
			next = m.Tuple
		case *pglogrepl.UpdateMessage:
			old, next = m.OldTuple, m.NewTuple
		case *pglogrepl.DeleteMessage:
			old = m.OldTuple
		default:
			return
		}
		pos := precedence.Position{LSN: 0x16B3748, Seq: 1}
		for _, td := range []*pglogrepl.TupleData{old, next} {
			if td == nil {
				continue
			}
			vals, unchanged, err := tuple(tb, td)
			if err != nil {
				if !strings.Contains(err.Error(), tb.Source()) {
					t.Fatalf("tuple error does not name the table %s: %v", tb.Source(), err)
				}
				continue
			}
			key, err := tb.ItemKey(vals)
			if err != nil {
				checkRowError(t, tb, err)
				continue
			}
			keyAttrs := fuzzKeyAttrs(tb)
			if td == old {
				tomb := precedence.Tombstone(key, pos, time.Now().Unix())
				if err := dynamocheck.Item(tomb, keyAttrs, mapping.ItemSize(tomb)); err != nil {
					t.Fatalf("tombstone of %s: DynamoDB refuses it: %v", tb.KeyString(vals), err)
				}
				continue
			}
			item, err := tb.Item(vals)
			if err != nil {
				checkRowError(t, tb, err)
				continue
			}
			for i, u := range unchanged {
				if _, present := item[tb.Columns[i].Name]; u && present && !isKey(tb, i) {
					t.Fatalf("unchanged TOAST column %s is in the item", tb.Columns[i].Name)
				}
			}
			written := precedence.StreamItem(item, pos)
			size := mapping.ItemSize(written)
			if size > limits.ItemSize {
				continue // the writer refuses it with a poison error before DynamoDB sees it
			}
			if err := dynamocheck.Item(written, keyAttrs, size); err != nil {
				t.Fatalf("item of %s: DynamoDB refuses it: %v", tb.KeyString(vals), err)
			}
		}
	})
}

func isKey(t *schema.Table, col int) bool {
	for _, ci := range t.Key {
		if ci == col {
			return true
		}
	}
	return false
}

func fuzzKeyAttrs(t *schema.Table) []dynamocheck.KeyAttr {
	var out []dynamocheck.KeyAttr
	for _, k := range t.KeySchema() {
		out = append(out, dynamocheck.KeyAttr{Name: k.Name, Type: k.Type, Sort: k.Kind == types.KeyTypeRange})
	}
	return out
}

func checkDecodeError(t *testing.T, data []byte, err error) {
	t.Helper()
	if !strings.HasPrefix(err.Error(), "decoding pgoutput ") || len(err.Error()) < len("decoding pgoutput message: x") {
		t.Fatalf("parseWAL(%q): unclear error %v", data, err)
	}
}

// checkTable: a table the stream replicates has attribute names DynamoDB accepts, once each.
func checkTable(t *testing.T, tb *schema.Table) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range tb.Columns {
		if err := dynamocheck.Item(map[string]types.AttributeValue{c.Name: &types.AttributeValueMemberNULL{Value: true}}, nil, 0); err != nil {
			t.Fatalf("table %s replicated with column %q: %v", tb.Source(), c.Name, err)
		}
		if seen[c.Name] {
			t.Fatalf("table %s replicated with two columns %q", tb.Source(), c.Name)
		}
		seen[c.Name] = true
	}
}

func checkRowError(t *testing.T, tb *schema.Table, err error) {
	t.Helper()
	var pe *fault.PoisonError
	if !errors.As(err, &pe) {
		t.Fatalf("row of %s: error is not a poison error (a dead letter): %v", tb.Source(), err)
	}
	if pe.Table != tb.Source() || (tb.Column(pe.Column) < 0 && pe.Column != schema.AttrSortKey) || pe.Reason == "" {
		t.Fatalf("row of %s: error does not name the table and column: %+v", tb.Source(), pe)
	}
}
