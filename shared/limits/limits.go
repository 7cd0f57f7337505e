// Package limits is DynamoDB's hard limits in one place: the ones a source row can break.
// Tandem checks them before it writes, so that a row breaking one is a clear error naming
// the table, key and column (a dead letter) rather than a ValidationException from
// DynamoDB that says neither, or a write retried forever.
//
// Source: the DynamoDB developer guide, "Service, account, and table quotas" and
// "Supported data types and naming rules".
package limits

import (
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const (
	// ItemSize is the largest item, attribute names and values together, in bytes.
	ItemSize = 400 * 1024
	// PartitionKey is the largest partition-key value, in bytes (UTF-8 for S).
	PartitionKey = 2048
	// SortKey is the largest sort-key value, in bytes.
	SortKey = 1024
	// Depth is how deeply lists and maps may nest: a top-level map or list is level 1.
	Depth = 32
	// Expression is the longest expression string (update, condition, projection), in bytes.
	Expression = 4096

	// NumberDigits is the precision of N: at most 38 significant digits.
	NumberDigits = 38
	// NumberMinExp and NumberMaxExp bound N's magnitude, [1E-130, 1E+126), written as
	// 0.ddd×10^exp: exp in [NumberMinExp, NumberMaxExp].
	NumberMinExp = -129
	NumberMaxExp = 126
)

// FitsNumber reports whether a non-zero number of sig significant digits, 0.ddd×10^exp,
// is exactly representable as N.
func FitsNumber(sig, exp int) bool {
	return sig <= NumberDigits && exp >= NumberMinExp && exp <= NumberMaxExp
}

// CheckKey checks a key attribute's value against DynamoDB's key rules: not empty, and
// within the partition- or sort-key size.
func CheckKey(av types.AttributeValue, sortKey bool) error {
	max, kind := PartitionKey, "partition"
	if sortKey {
		max, kind = SortKey, "sort"
	}
	var n int
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		n = len(v.Value)
		if n == 0 {
			return fmt.Errorf("an empty string cannot be a DynamoDB %s key", kind)
		}
	case *types.AttributeValueMemberB:
		n = len(v.Value)
		if n == 0 {
			return fmt.Errorf("an empty binary value cannot be a DynamoDB %s key", kind)
		}
	default:
		return nil // N keys are bounded by the 38-digit rule already
	}
	if n > max {
		return fmt.Errorf("the value is %d bytes, over DynamoDB's %d-byte %s key limit", n, max, kind)
	}
	return nil
}

// CheckNesting checks a value's lists and maps: at most Depth levels deep and no empty
// map key (an empty attribute name).
func CheckNesting(av types.AttributeValue) error { return checkNesting(av, 1) }

func checkNesting(av types.AttributeValue, level int) error {
	switch v := av.(type) {
	case *types.AttributeValueMemberM:
		if level > Depth {
			return fmt.Errorf("the document nests more than %d levels deep, DynamoDB's limit", Depth)
		}
		for k, e := range v.Value {
			if k == "" {
				return fmt.Errorf("the document has an empty object key, which DynamoDB cannot store as a map key")
			}
			if err := checkNesting(e, level+1); err != nil {
				return err
			}
		}
	case *types.AttributeValueMemberL:
		if level > Depth {
			return fmt.Errorf("the document nests more than %d levels deep, DynamoDB's limit", Depth)
		}
		for _, e := range v.Value {
			if err := checkNesting(e, level+1); err != nil {
				return err
			}
		}
	}
	return nil
}
