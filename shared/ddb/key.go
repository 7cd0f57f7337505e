package ddb

import (
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// KeyAttr is one attribute of a stored item key (a Scan's LastEvaluatedKey): key
// attributes are only ever S, N or B, so this plain form, which the attributevalue
// package marshals like any struct, holds any of them.
type KeyAttr struct {
	Name string  `dynamodbav:"name"`
	S    *string `dynamodbav:"s,omitempty"`
	N    *string `dynamodbav:"n,omitempty"`
	B    []byte  `dynamodbav:"b,omitempty"`
}

// EncodeKey turns an item key into its stored form (nil for nil), attributes by name.
func EncodeKey(key map[string]types.AttributeValue) ([]KeyAttr, error) {
	if key == nil {
		return nil, nil
	}
	out := make([]KeyAttr, 0, len(key))
	for name, v := range key {
		a := KeyAttr{Name: name}
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			a.S = &v.Value
		case *types.AttributeValueMemberN:
			a.N = &v.Value
		case *types.AttributeValueMemberB:
			a.B = v.Value
		default:
			return nil, fmt.Errorf("dynamodb: key attribute %s is a %T, not S, N or B", name, v)
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DecodeKey is EncodeKey's inverse (nil for an empty key).
func DecodeKey(attrs []KeyAttr) map[string]types.AttributeValue {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string]types.AttributeValue, len(attrs))
	for _, a := range attrs {
		switch {
		case a.S != nil:
			out[a.Name] = &types.AttributeValueMemberS{Value: *a.S}
		case a.N != nil:
			out[a.Name] = &types.AttributeValueMemberN{Value: *a.N}
		default:
			out[a.Name] = &types.AttributeValueMemberB{Value: a.B}
		}
	}
	return out
}
