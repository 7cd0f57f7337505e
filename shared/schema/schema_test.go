package schema

import (
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgtype"

	"tandem/shared/fault"
	"tandem/shared/mapping"
)

var (
	int4  = &mapping.Type{OID: pgtype.Int4OID, Name: "int4", Category: 'N'}
	text  = &mapping.Type{OID: pgtype.TextOID, Name: "text", Category: 'S'}
	jsonb = &mapping.Type{OID: pgtype.JSONBOID, Name: "jsonb", Category: 'U'}
)

func table(key []int, cols ...Column) *Table {
	return &Table{Schema: "public", Name: "t", Columns: cols, Key: key, ReplicaIdentity: 'd', Identity: key}
}

func TestKeySchema(t *testing.T) {
	one := table([]int{0}, Column{Name: "id", Type: int4}, Column{Name: "v", Type: text})
	if ks := one.KeySchema(); len(ks) != 1 || ks[0].Name != "id" || ks[0].Type != types.ScalarAttributeTypeN {
		t.Fatalf("one-column key: %+v", ks)
	}
	two := table([]int{1, 0}, Column{Name: "line", Type: int4}, Column{Name: "order", Type: text})
	if ks := two.KeySchema(); len(ks) != 2 || ks[0].Name != "order" || ks[1].Name != "line" || ks[1].Kind != types.KeyTypeRange {
		t.Fatalf("two-column key: %+v", ks)
	}
	three := table([]int{0, 1, 2}, Column{Name: "a", Type: text}, Column{Name: "b", Type: int4}, Column{Name: "c", Type: text})
	ks := three.KeySchema()
	if len(ks) != 2 || ks[1].Name != AttrSortKey {
		t.Fatalf("three-column key: %+v", ks)
	}
	item, err := three.Item([][]byte{[]byte("x"), []byte("7"), []byte(`q"uote`)})
	if err != nil {
		t.Fatal(err)
	}
	if sk := item[AttrSortKey].(*types.AttributeValueMemberS).Value; sk != `["7","q\"uote"]` {
		t.Fatalf("__sk = %s", sk)
	}
	if item["b"].(*types.AttributeValueMemberN).Value != "7" {
		t.Fatal("key columns stay attributes of their own")
	}
}

func TestItemOmitsNulls(t *testing.T) {
	tb := table([]int{0}, Column{Name: "id", Type: int4}, Column{Name: "v", Type: text})
	item, err := tb.Item([][]byte{[]byte("1"), nil})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := item["v"]; ok || len(item) != 1 {
		t.Fatalf("NULL must be an absent attribute: %v", item)
	}
	if _, err := tb.ItemKey([][]byte{nil, nil}); err == nil || !strings.Contains(err.Error(), "column id: the key column is NULL") {
		t.Fatalf("NULL key: %v", err)
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		t    *Table
		want string
	}{
		{table(nil, Column{Name: "v", Type: text}), "has no primary key"},
		{table([]int{0}, Column{Name: "id", Type: int4}, Column{Name: "__src", Type: text}), `column "__src" uses the reserved prefix`},
		{table([]int{0}, Column{Name: "doc", Type: jsonb}), `key column "doc"`},
	}
	for _, c := range cases {
		if err := c.t.Validate(); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "public.t") {
			t.Errorf("Validate() = %v, want %q naming the table", err, c.want)
		}
	}
	if err := table([]int{0}, Column{Name: "id", Type: int4}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateIdentityCoversKey(t *testing.T) {
	byIndex := table([]int{0}, Column{Name: "id", Type: int4}, Column{Name: "code", Type: text})
	byIndex.ReplicaIdentity, byIndex.Identity = 'i', []int{1}
	if err := byIndex.Validate(); err == nil || !strings.Contains(err.Error(), `"key_columns": ["code"]`) {
		t.Errorf("USING INDEX not covering the key: %v", err)
	}
	byIndex.Key = []int{1}
	if err := byIndex.Validate(); err != nil {
		t.Errorf("key_columns equal to the identity index: %v", err)
	}
	deferrable := table([]int{0}, Column{Name: "id", Type: int4})
	deferrable.Identity = nil
	if err := deferrable.Validate(); err == nil || !strings.Contains(err.Error(), "DEFERRABLE") {
		t.Errorf("no usable primary key: %v", err)
	}
	full := table([]int{1}, Column{Name: "id", Type: int4}, Column{Name: "code", Type: text})
	full.ReplicaIdentity, full.Identity = 'f', nil
	if err := full.Validate(); err != nil {
		t.Errorf("FULL covers any key: %v", err)
	}
}

func TestKeyIDComparesNumbersByValue(t *testing.T) {
	numeric := &mapping.Type{OID: pgtype.NumericOID, Name: "numeric", Category: 'N'}
	tb := table([]int{0}, Column{Name: "id", Type: numeric})
	id := func(v string) string {
		key, err := tb.ItemKey([][]byte{[]byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		return tb.KeyID(key)
	}
	a, b, c := id("1"), id("1.00"), id("2")
	if a != b || a == c {
		t.Fatalf("KeyID: 1 -> %q, 1.00 -> %q, 2 -> %q", a, b, c)
	}
}

// TestKeyLimits: keys DynamoDB cannot store are poison errors naming table, key and column.
func TestKeyLimits(t *testing.T) {
	two := table([]int{0, 1}, Column{Name: "p", Type: text}, Column{Name: "s", Type: text}, Column{Name: "doc", Type: jsonb})
	three := table([]int{0, 1, 2}, Column{Name: "p", Type: text}, Column{Name: "s", Type: text}, Column{Name: "r", Type: text})
	long := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	cases := []struct {
		name   string
		tbl    *Table
		row    [][]byte
		column string
		phrase string // "" means the row is fine
	}{
		{"partition key at the limit", two, [][]byte{long(2048), []byte("s"), nil}, "", ""},
		{"partition key over the limit", two, [][]byte{long(2049), []byte("s"), nil}, "p", "2048-byte partition key"},
		{"sort key at the limit", two, [][]byte{[]byte("p"), long(1024), nil}, "", ""},
		{"sort key over the limit", two, [][]byte{[]byte("p"), long(1025), nil}, "s", "1024-byte sort key"},
		{"empty partition key", two, [][]byte{{}, []byte("s"), nil}, "p", "empty"},
		{"NULL key", two, [][]byte{[]byte("p"), nil, nil}, "s", "NULL"},
		{"combined sort key over the limit", three, [][]byte{[]byte("p"), long(600), long(600)}, AttrSortKey, "1024-byte sort key"},
		{"document 33 levels deep", two, [][]byte{[]byte("p"), []byte("s"), []byte(strings.Repeat("[", 33) + strings.Repeat("]", 33))}, "doc", "32 levels"},
		{"document 32 levels deep", two, [][]byte{[]byte("p"), []byte("s"), []byte(strings.Repeat("[", 32) + strings.Repeat("]", 32))}, "", ""},
		{"empty object key", two, [][]byte{[]byte("p"), []byte("s"), []byte(`{"a": {"": 1}}`)}, "doc", "empty object key"},
	}
	for _, c := range cases {
		_, err := c.tbl.Item(c.row)
		if c.phrase == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		var p *fault.PoisonError
		if !errors.As(err, &p) {
			t.Errorf("%s: want a poison error, got %v", c.name, err)
			continue
		}
		if p.Table != "public.t" || p.Column != c.column || p.Key == "" || !strings.Contains(err.Error(), c.phrase) {
			t.Errorf("%s: got table %q column %q key %.20q: %v; want column %q and %q", c.name, p.Table, p.Column, p.Key, err, c.column, c.phrase)
		}
	}
}
