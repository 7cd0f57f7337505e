package mapping

import (
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgtype"
)

// KeyType returns the DynamoDB key attribute type ("S", "N" or "B") a column of type t can serve as, or an error naming the type when it cannot be a key (bool, json, arrays, ...).
func KeyType(t *Type) (types.ScalarAttributeType, error) {
	if t == nil {
		return "", errors.New("mapping: nil type")
	}
	// Composites ('C') are rejected with arrays: their text is a tuple, and a
	// key built from it would break as soon as a field type changes.
	if t.isArray() || t.Category == 'C' {
		return "", notKey(t)
	}
	switch t.OID {
	case pgtype.BoolOID, pgtype.JSONOID, pgtype.JSONBOID:
		return "", notKey(t)
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID,
		pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID:
		return types.ScalarAttributeTypeN, nil
	case pgtype.ByteaOID:
		return types.ScalarAttributeTypeB, nil
	}
	return types.ScalarAttributeTypeS, nil
}

func notKey(t *Type) error {
	name := t.label()
	if t.OID == pgtype.BoolOID {
		name = "boolean" // the SQL spelling users write in DDL
	}
	return fmt.Errorf("column type %s cannot be a DynamoDB key attribute (allowed: numbers, strings, bytea and other scalar types)", name)
}

// KeyValue maps a key column's text to the attribute of the KeyType; error (clear: "numeric value NaN cannot be a DynamoDB N key") if it cannot be represented.
//
// It is Value plus a check, so the key attribute always equals the column's
// own attribute.
func KeyValue(t *Type, text []byte) (types.AttributeValue, error) {
	kt, err := KeyType(t)
	if err != nil {
		return nil, err
	}
	av, err := Value(t, text)
	if err != nil {
		return nil, err
	}
	switch v := av.(type) {
	case *types.AttributeValueMemberN:
		return av, nil
	case *types.AttributeValueMemberS:
		if kt == types.ScalarAttributeTypeS {
			if v.Value == "" {
				return nil, fmt.Errorf("empty %s value cannot be a DynamoDB S key (DynamoDB rejects empty key strings)", t.label())
			}
			return av, nil
		}
	case *types.AttributeValueMemberB:
		if len(v.Value) == 0 {
			return nil, fmt.Errorf("empty %s value cannot be a DynamoDB B key (DynamoDB rejects empty key binaries)", t.label())
		}
		return av, nil
	}
	if kt == types.ScalarAttributeTypeN && !isSpecialFloat(string(text)) {
		return nil, fmt.Errorf("%s value %s cannot be a DynamoDB N key (more than 38 significant digits or magnitude outside 1E-130..1E+126)", t.label(), clip(text))
	}
	return nil, fmt.Errorf("%s value %s cannot be a DynamoDB %s key", t.label(), clip(text), kt)
}
