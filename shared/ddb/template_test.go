package ddb

import (
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestTemplateFillsEveryUseOfAParameter(t *testing.T) {
	cond := func(x, y uint64) expression.ConditionBuilder {
		return Name("a").LessThan(expression.Value(x)).Or(Name("a").Equal(expression.Value(x)).And(Name("b").Equal(expression.Value(y)))).
			And(Name("c").Equal(expression.Value("const")))
	}
	tpl, err := NewTemplate(expression.NewBuilder().WithCondition(cond(Param(0), Param(1))), 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, xy := range [][2]uint64{{7, 9}, {0, 1 << 63}, {Param(1), Param(0)}} {
		want, err := Build(expression.NewBuilder().WithCondition(cond(xy[0], xy[1])))
		if err != nil {
			t.Fatal(err)
		}
		got := tpl.Fill(xy[0], xy[1])
		if *got.Condition() != *want.Condition() || !reflect.DeepEqual(got.Names(), want.Names()) || !reflect.DeepEqual(got.Values(), want.Values()) {
			t.Errorf("fill %v: got %s %v, want %s %v", xy, *got.Condition(), got.Values(), *want.Condition(), want.Values())
		}
	}
	if _, err := NewTemplate(expression.NewBuilder().WithCondition(Name("a").Equal(expression.Value(Param(0)))), 2); err == nil {
		t.Error("a parameter missing from the expression was accepted")
	}
	// The template itself is not changed by a fill.
	first := tpl.Fill(1, 2)
	_ = tpl.Fill(3, 4)
	for _, v := range first.Values() {
		if n, ok := v.(*types.AttributeValueMemberN); ok && (n.Value == "3" || n.Value == "4") {
			t.Fatal("a later fill changed an earlier one")
		}
	}
}
