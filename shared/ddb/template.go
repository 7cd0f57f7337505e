package ddb

import (
	"fmt"
	"maps"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Template is an expression built once whose number parameters are filled in per
// request. Every write Tandem makes is guarded by one of a few conditions that differ only
// in their numbers (an LSN, a sequence, an epoch), and building the expression tree for
// each write cost a fifth of a streamed change's CPU.
type Template struct {
	expr   Expression
	params [][]string // params[i] are the value placeholders of parameter i (one per use)
}

// paramBase is where the stand-in values of parameters start: any numbers do, as long as
// none equals a constant of the expression (a constant that did would be taken for the
// parameter: the guards' tests compare each filled template with its built condition).
// They fit in a uint32, so a sequence number can take one.
const paramBase = 3_141_592_600

// Param is the stand-in value of parameter i, to be put in a template's builder where the
// real number goes.
func Param(i int) uint64 { return paramBase + uint64(i) }

// NewTemplate builds b, whose n number parameters were given as Param(0) … Param(n-1).
func NewTemplate(b expression.Builder, n int) (*Template, error) {
	expr, err := Build(b)
	if err != nil {
		return nil, err
	}
	t := &Template{expr: expr, params: make([][]string, n)}
	for placeholder, v := range expr.Values() {
		num, ok := v.(*types.AttributeValueMemberN)
		if !ok {
			continue
		}
		x, err := strconv.ParseUint(num.Value, 10, 64)
		if err != nil || x < paramBase || x >= paramBase+uint64(n) {
			continue
		}
		i := int(x - paramBase)
		t.params[i] = append(t.params[i], placeholder)
	}
	for i, p := range t.params {
		if len(p) == 0 {
			return nil, fmt.Errorf("dynamodb: template parameter %d is not in the expression", i)
		}
	}
	return t, nil
}

// MustTemplate is NewTemplate for expressions fixed at compile time.
func MustTemplate(b expression.Builder, n int) *Template {
	t, err := NewTemplate(b, n)
	if err != nil {
		panic(err)
	}
	return t
}

// Fill returns the expression with parameter i set to args[i].
func (t *Template) Fill(args ...uint64) Expression {
	if len(args) != len(t.params) {
		panic(fmt.Sprintf("dynamodb: template takes %d parameters, given %d", len(t.params), len(args)))
	}
	out := t.expr
	out.values = maps.Clone(t.expr.Expression.Values())
	for i, placeholders := range t.params {
		v := &types.AttributeValueMemberN{Value: strconv.FormatUint(args[i], 10)}
		for _, p := range placeholders {
			out.values[p] = v
		}
	}
	return out
}
