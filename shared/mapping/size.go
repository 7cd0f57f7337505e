package mapping

import "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

// ItemSize returns the size DynamoDB counts for an item (attribute name lengths + value sizes, per the AWS docs "Item sizes and formats": N is roughly (significant digits+1)/2 +1 bytes, S/B their byte length, BOOL/NULL 1 byte, M/L 3 bytes overhead + 1 per element + contents), so callers can reject items over limits.ItemSize before DynamoDB does.
func ItemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, av := range item {
		n += len(name) + attrSize(av)
	}
	return n
}

func attrSize(av types.AttributeValue) int {
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return numberSize(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberL:
		n := 3 + len(v.Value)
		for _, e := range v.Value {
			n += attrSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		n := 3 + len(v.Value)
		for k, e := range v.Value {
			n += len(k) + attrSize(e)
		}
		return n
	// Sets are never produced by this package but are sized like lists so
	// the estimate stays conservative for items built elsewhere.
	case *types.AttributeValueMemberSS:
		n := 3 + len(v.Value)
		for _, e := range v.Value {
			n += len(e)
		}
		return n
	case *types.AttributeValueMemberNS:
		n := 3 + len(v.Value)
		for _, e := range v.Value {
			n += numberSize(e)
		}
		return n
	case *types.AttributeValueMemberBS:
		n := 3 + len(v.Value)
		for _, e := range v.Value {
			n += len(e)
		}
		return n
	}
	return 0
}
