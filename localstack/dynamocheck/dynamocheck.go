// Package dynamocheck is the fuzz tests' independent oracle of what DynamoDB accepts: an
// attribute value, a number, an item with its key. It is written apart from the code it
// checks (shared/mapping, shared/schema) so that a mistake there is not repeated here;
// the limits themselves come from shared/limits, DynamoDB's documented quotas.
package dynamocheck

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/limits"
)

var numberSyntax = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

// Canon is a number in a canonical form: "0", or sign, significant digits and the
// exponent e of 0.digits×10^e. Two numbers are equal exactly when their Canon are.
type Canon struct {
	Neg    bool
	Digits string
	Exp    *big.Int
}

func (c Canon) String() string {
	if c.Digits == "" {
		return "0"
	}
	sign := ""
	if c.Neg {
		sign = "-"
	}
	return sign + "0." + c.Digits + "e" + c.Exp.String()
}

// ParseNumber reads a decimal number (optional sign, digits, fraction, exponent) into its
// canonical form; ok is false when s is not one.
func ParseNumber(s string) (c Canon, ok bool) {
	if !numberSyntax.MatchString(s) {
		return Canon{}, false
	}
	if strings.HasPrefix(s, "-") {
		c.Neg, s = true, s[1:]
	}
	exp := new(big.Int)
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		if _, ok := exp.SetString(strings.TrimPrefix(s[i+1:], "+"), 10); !ok {
			return Canon{}, false
		}
		s = s[:i]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	digits := intPart + frac
	lead := len(digits) - len(strings.TrimLeft(digits, "0"))
	digits = strings.TrimRight(strings.TrimLeft(digits, "0"), "0")
	if digits == "" {
		return Canon{}, true // zero, whatever its sign and exponent
	}
	c.Digits = digits
	c.Exp = exp.Add(exp, big.NewInt(int64(len(intPart)-lead)))
	return c, true
}

// Number reports why DynamoDB would refuse s as the value of an N: not a number, more
// than 38 significant digits, or a magnitude outside [1E-130, 1E+126).
func Number(s string) error {
	c, ok := ParseNumber(s)
	if !ok {
		return fmt.Errorf("number %q is not a number", s)
	}
	if c.Digits == "" {
		return nil
	}
	if len(c.Digits) > limits.NumberDigits {
		return fmt.Errorf("number %q has %d significant digits, over 38", s, len(c.Digits))
	}
	if c.Exp.Cmp(big.NewInt(limits.NumberMinExp)) < 0 || c.Exp.Cmp(big.NewInt(limits.NumberMaxExp)) > 0 {
		return fmt.Errorf("number %q is outside DynamoDB's magnitude range", s)
	}
	return nil
}

// Value reports why DynamoDB would refuse av as an attribute value (level 1: top level).
func Value(av types.AttributeValue) error { return value(av, 1) }

func value(av types.AttributeValue, level int) error {
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		if !utf8.ValidString(v.Value) {
			return fmt.Errorf("string %q is not valid UTF-8", v.Value)
		}
	case *types.AttributeValueMemberN:
		return Number(v.Value)
	case *types.AttributeValueMemberB:
		if v.Value == nil {
			return fmt.Errorf("binary is nil")
		}
	case *types.AttributeValueMemberBOOL:
	case *types.AttributeValueMemberNULL:
		if !v.Value {
			return fmt.Errorf("null must be true")
		}
	case *types.AttributeValueMemberL:
		if level > limits.Depth {
			return fmt.Errorf("list at nesting level %d, over %d", level, limits.Depth)
		}
		if v.Value == nil {
			return fmt.Errorf("list is nil")
		}
		for i, e := range v.Value {
			if err := value(e, level+1); err != nil {
				return fmt.Errorf("[%d]: %w", i, err)
			}
		}
	case *types.AttributeValueMemberM:
		if level > limits.Depth {
			return fmt.Errorf("map at nesting level %d, over %d", level, limits.Depth)
		}
		if v.Value == nil {
			return fmt.Errorf("map is nil")
		}
		for k, e := range v.Value {
			if k == "" || !utf8.ValidString(k) {
				return fmt.Errorf("map key %q is empty or not UTF-8", k)
			}
			if err := value(e, level+1); err != nil {
				return fmt.Errorf(".%s: %w", k, err)
			}
		}
	default:
		return fmt.Errorf("unexpected attribute type %T", av)
	}
	return nil
}

// KeyAttr is one attribute of a table's key schema.
type KeyAttr struct {
	Name string
	Type types.ScalarAttributeType
	Sort bool
}

// Item reports why DynamoDB would refuse item in a table of the given key schema: a key
// attribute missing, of the wrong type, empty or over its size; an attribute name empty or
// not UTF-8; a value refused; the item over 400 KB (size: its size as mapping.ItemSize
// counts it, passed in so that this package does not import the one it checks).
func Item(item map[string]types.AttributeValue, key []KeyAttr, size int) error {
	for _, k := range key {
		av, ok := item[k.Name]
		if !ok {
			return fmt.Errorf("key attribute %q missing", k.Name)
		}
		if err := Key(av, k); err != nil {
			return err
		}
	}
	for name, av := range item {
		if name == "" || !utf8.ValidString(name) || len(name) > 64*1024 {
			return fmt.Errorf("attribute name %q is empty, not UTF-8 or too long", name)
		}
		if err := Value(av); err != nil {
			return fmt.Errorf("attribute %q: %w", name, err)
		}
	}
	if size > limits.ItemSize {
		return fmt.Errorf("item is %d bytes, over %d", size, limits.ItemSize)
	}
	return nil
}

// Key reports why DynamoDB would refuse av as the key attribute k.
func Key(av types.AttributeValue, k KeyAttr) error {
	max := limits.PartitionKey
	if k.Sort {
		max = limits.SortKey
	}
	if err := Value(av); err != nil {
		return fmt.Errorf("key %q: %w", k.Name, err)
	}
	var n int
	switch v := av.(type) {
	case *types.AttributeValueMemberS:
		if k.Type != types.ScalarAttributeTypeS {
			return fmt.Errorf("key %q is S, the table says %s", k.Name, k.Type)
		}
		n = len(v.Value)
	case *types.AttributeValueMemberB:
		if k.Type != types.ScalarAttributeTypeB {
			return fmt.Errorf("key %q is B, the table says %s", k.Name, k.Type)
		}
		n = len(v.Value)
	case *types.AttributeValueMemberN:
		if k.Type != types.ScalarAttributeTypeN {
			return fmt.Errorf("key %q is N, the table says %s", k.Name, k.Type)
		}
		return nil
	default:
		return fmt.Errorf("key %q is %T, not a scalar", k.Name, av)
	}
	if n == 0 {
		return fmt.Errorf("key %q is empty", k.Name)
	}
	if n > max {
		return fmt.Errorf("key %q is %d bytes, over %d", k.Name, n, max)
	}
	return nil
}

// KeyIdentity is the identity DynamoDB gives a key: numbers by value, strings and binaries
// by their bytes, each attribute length-prefixed so that no two keys share one.
func KeyIdentity(key map[string]types.AttributeValue, names []string) string {
	var b strings.Builder
	for _, name := range names {
		var s string
		switch v := key[name].(type) {
		case *types.AttributeValueMemberN:
			c, _ := ParseNumber(v.Value)
			s = "N" + c.String()
		case *types.AttributeValueMemberS:
			s = "S" + v.Value
		case *types.AttributeValueMemberB:
			s = "B" + string(v.Value)
		default:
			s = fmt.Sprintf("?%T", v)
		}
		fmt.Fprintf(&b, "%d:%s", len(s), s)
	}
	return b.String()
}
