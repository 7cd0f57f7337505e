package mapping

import (
	"bytes"
	"encoding/json"
	"io"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// jsonValue stores JSON natively (M/L/S/N/BOOL/NULL) rather than as a string
// so DynamoDB expressions can reach into documents.
func jsonValue(t *Type, text []byte) (types.AttributeValue, error) {
	// encoding/json would replace invalid UTF-8 with U+FFFD: refused instead, as for text.
	if !utf8.Valid(text) {
		return nil, t.errorf("invalid JSON: invalid UTF-8 in %s", excerpt(text))
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	// UseNumber keeps the exact digits; float64 would round numeric values.
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, t.errorf("invalid JSON: %v in %s", err, excerpt(text))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, t.errorf("invalid JSON: trailing data in %s", excerpt(text))
	}
	return jsonAttr(v), nil
}

func jsonAttr(v any) types.AttributeValue {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]types.AttributeValue, len(v))
		for k, e := range v {
			m[k] = jsonAttr(e)
		}
		return &types.AttributeValueMemberM{Value: m}
	case []any:
		l := make([]types.AttributeValue, len(v))
		for i, e := range v {
			l[i] = jsonAttr(e)
		}
		return &types.AttributeValueMemberL{Value: l}
	case string:
		return &types.AttributeValueMemberS{Value: v}
	case json.Number:
		return numberAttr(string(v))
	case bool:
		return &types.AttributeValueMemberBOOL{Value: v}
	default: // nil: JSON null
		return &types.AttributeValueMemberNULL{Value: true}
	}
}
