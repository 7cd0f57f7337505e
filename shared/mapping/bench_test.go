package mapping

import (
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// BenchmarkRow maps one row of typical columns, the per-row cost on both paths.
func BenchmarkRow(b *testing.B) {
	int8T := &Type{OID: pgtype.Int8OID, Name: "int8", Category: 'N'}
	row := []struct {
		t *Type
		v []byte
	}{
		{int8T, []byte("1234567")},
		{&Type{OID: pgtype.TextOID, Name: "text", Category: 'S'}, []byte("a customer name of some length")},
		{&Type{OID: pgtype.NumericOID, Name: "numeric", Category: 'N'}, []byte("12345.6700")},
		{&Type{OID: pgtype.TimestamptzOID, Name: "timestamptz", Category: 'D'}, []byte("2024-05-01 10:20:30.123456+00")},
		{&Type{OID: pgtype.JSONBOID, Name: "jsonb", Category: 'U'}, []byte(`{"a": [1, 2, {"b": "c"}], "d": true, "e": null}`)},
		{&Type{OID: 1016, Name: "_int8", Category: 'A', Elem: int8T, Delim: ','}, []byte("{1,2,NULL,4}")},
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range row {
			if _, err := Value(c.t, c.v); err != nil {
				b.Fatal(err)
			}
		}
	}
}
