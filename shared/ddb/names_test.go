package ddb

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
)

var odd = []string{"a.b", "x[0]", "]", "[", "k.[0]", "#0", ":v", "#n.x[1].y", "Odd \"Table\".v1 #[x]:ü", "plain", "__lsn", "n61", "a..b", "."}

// nameToken is an attribute-name placeholder in a built expression.
var nameToken = regexp.MustCompile(`#\d+`)

func TestNamesRoundTripThroughBuild(t *testing.T) {
	var upd expression.UpdateBuilder
	var cond expression.ConditionBuilder
	proj := expression.NamesList(Name(odd[0]))
	for i, n := range odd {
		upd = upd.Set(Name(n), expression.Value(i))
		c := Name(n).Equal(expression.Value(i)).Or(expression.AttributeNotExists(Name(n)))
		if i == 0 {
			cond = c
		} else {
			cond = cond.And(c)
		}
		proj = proj.AddNames(Name(n))
	}
	upd = upd.Remove(Name("x[0].gone"))
	expr, err := Build(expression.NewBuilder().WithUpdate(upd).WithCondition(cond).WithProjection(proj).WithFilter(expression.Name("ignored-by-check").AttributeExists().Not().Or(cond)))
	if err == nil {
		t.Fatalf("Build accepted a name not made by Name: %v", expr.Names())
	}
	if !strings.Contains(err.Error(), "ddb.Name") {
		t.Errorf("error should say the name was not made by ddb.Name: %v", err)
	}
	expr, err = Build(expression.NewBuilder().WithUpdate(upd).WithCondition(cond).WithProjection(proj).WithFilter(cond))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, real := range expr.Names() {
		got = append(got, real)
	}
	want := append(slices.Clone(odd), "x[0].gone")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("names = %q, want %q", got, want)
	}
	// Each attribute is one placeholder: no document path (no "." between placeholders,
	// no list index) appears in any expression.
	for what, s := range map[string]*string{"update": expr.Update(), "condition": expr.Condition(), "projection": expr.Projection(), "filter": expr.Filter()} {
		rest := nameToken.ReplaceAllString(*s, "N")
		if strings.Contains(rest, ".") || strings.Contains(rest, "[") || strings.Contains(rest, "N.") {
			t.Errorf("%s expression %q addresses a document path", what, *s)
		}
		for _, tok := range nameToken.FindAllString(*s, -1) {
			if _, ok := expr.Names()[tok]; !ok {
				t.Errorf("%s expression uses %s, which has no name", what, tok)
			}
		}
	}
	// The same name used twice is one placeholder.
	e2, err := Build(expression.NewBuilder().WithCondition(Name("a.b").Equal(expression.Value(1)).And(Name("a.b").LessThan(expression.Value(3)))))
	if err != nil {
		t.Fatal(err)
	}
	if len(e2.Names()) != 1 || e2.Names()["#0"] != "a.b" {
		t.Errorf("names = %v, want one placeholder for a.b", e2.Names())
	}
}

func TestBuildWithoutNames(t *testing.T) {
	expr, err := Build(expression.NewBuilder().WithUpdate(expression.Set(Name("v"), expression.Value(1))))
	if err != nil || expr.Names()["#0"] != "v" || expr.Values()[":0"] == nil {
		t.Fatalf("Build = %v %v %v", expr.Names(), expr.Values(), err)
	}
}
