package ddb

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Attribute names reach DynamoDB expressions only through Name and Build. The SDK's
// expression.Name reads its argument as a document path (it splits on "." and parses
// "[n]" as a list index; NameNoDotSplit still parses brackets), so a column called "a.b"
// or "x[0]" would address a nested attribute, or fail to build. Name instead hands the
// builder a stand-in made only of letters and digits, which it can only take as one
// attribute, and Build puts the real names back into the placeholders' values
// (ExpressionAttributeNames), where DynamoDB takes any name literally.

// standInPrefix starts every stand-in; the rest is the hex of the real name.
const standInPrefix = "n"

// Name is the operand naming the top-level attribute called exactly name, whatever its
// characters. Expressions using it must be built with Build.
func Name(name string) expression.NameBuilder {
	return expression.NameNoDotSplit(standInPrefix + hex.EncodeToString([]byte(name)))
}

// Expression is a built expression whose attribute-name placeholders map to the real
// names; use it as expression.Expression.
type Expression struct {
	expression.Expression
	names map[string]string
	// values, when set (a filled Template), replaces the built expression's values.
	values map[string]types.AttributeValue
}

// Values returns the ExpressionAttributeValues.
func (e Expression) Values() map[string]types.AttributeValue {
	if e.values != nil {
		return e.values
	}
	return e.Expression.Values()
}

// Names returns the ExpressionAttributeNames: placeholder to real attribute name.
func (e Expression) Names() map[string]string { return e.names }

// Build builds b and maps each placeholder back to the real attribute name. Every name in
// b must come from Name: any other (an expression.Name) is an error, so that no
// attribute name is ever parsed as a path.
func Build(b expression.Builder) (Expression, error) {
	expr, err := b.Build()
	if err != nil {
		return Expression{}, err
	}
	out := Expression{Expression: expr}
	standIns := expr.Names()
	if len(standIns) == 0 {
		return out, nil
	}
	out.names = make(map[string]string, len(standIns))
	for placeholder, standIn := range standIns {
		hexName, ok := strings.CutPrefix(standIn, standInPrefix)
		real, err := hex.DecodeString(hexName)
		if !ok || err != nil {
			return Expression{}, fmt.Errorf("dynamodb: expression attribute %q was not named with ddb.Name", standIn)
		}
		out.names[placeholder] = string(real)
	}
	return out, nil
}
