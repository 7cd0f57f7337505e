package schema

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgtype"

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
	if _, err := tb.ItemKey([][]byte{nil, nil}); err == nil || !strings.Contains(err.Error(), "key column id is NULL") {
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
