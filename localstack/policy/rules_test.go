package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestTemplateRules evaluates the template's Rules, as CloudFormation does before it
// creates or updates anything, for parameter sets that must be refused and accepted:
// IAM authentication without the database's resource id, or with a TLS mode that lets a
// token go in clear or is not known before the stack runs (url), is refused.
func TestTemplateRules(t *testing.T) {
	cfn := transformed(t)
	rules, _ := cfn["Rules"].(map[string]any)
	if len(rules) == 0 {
		t.Fatal("the template has no Rules")
	}
	defaults := map[string]string{}
	for name, p := range cfn["Parameters"].(map[string]any) {
		if d, ok := p.(map[string]any)["Default"]; ok {
			defaults[name] = fmt.Sprint(d)
		}
	}
	cases := []struct {
		params map[string]string
		refuse string // "": accepted; else what the refusing assertion's description says
	}{
		{map[string]string{}, ""},
		{map[string]string{"DatabaseSSLMode": "disable"}, ""}, // no IAM: a password, the operator's choice
		{map[string]string{"DatabaseIAMAuth": "true", "DatabaseResourceId": "db-ABC"}, ""},
		{map[string]string{"DatabaseIAMAuth": "true", "DatabaseResourceId": "cluster-ABC", "DatabaseSSLMode": "require"}, ""},
		{map[string]string{"DatabaseIAMAuth": "true", "DatabaseResourceId": "db-ABC", "DatabaseSSLMode": "verify-ca"}, ""},
		{map[string]string{"DatabaseIAMAuth": "true"}, "DatabaseResourceId"},
		{map[string]string{"DatabaseIAMAuth": "true", "DatabaseResourceId": "db-ABC", "DatabaseSSLMode": "disable"}, "DatabaseSSLMode"},
		{map[string]string{"DatabaseIAMAuth": "true", "DatabaseResourceId": "db-ABC", "DatabaseSSLMode": "url"}, "DatabaseSSLMode"},
	}
	for _, c := range cases {
		params := map[string]string{}
		for k, v := range defaults {
			params[k] = v
		}
		for k, v := range c.params {
			params[k] = v
		}
		var refused []string
		for name, r := range rules {
			rule := r.(map[string]any)
			if cond, ok := rule["RuleCondition"]; ok {
				applies, err := ruleValue(cond, params)
				if err != nil {
					t.Fatalf("rule %s: %v", name, err)
				}
				if applies != true {
					continue
				}
			}
			for _, a := range rule["Assertions"].([]any) {
				a := a.(map[string]any)
				ok, err := ruleValue(a["Assert"], params)
				if err != nil {
					t.Fatalf("rule %s: %v", name, err)
				}
				if ok != true {
					refused = append(refused, fmt.Sprint(a["AssertDescription"]))
				}
			}
		}
		switch {
		case c.refuse == "" && len(refused) > 0:
			t.Errorf("%v: refused: %s", c.params, strings.Join(refused, "; "))
		case c.refuse != "" && !slices.ContainsFunc(refused, func(d string) bool { return strings.Contains(d, c.refuse) }):
			t.Errorf("%v: not refused for %s (refusals: %q)", c.params, c.refuse, refused)
		}
	}
}

// ruleValue evaluates the rule functions the template uses (Ref of a parameter, and
// Fn::Equals, Fn::Not, Fn::And, Fn::Or, Fn::Contains); anything else is an error, so the
// test cannot pass by not understanding a rule.
func ruleValue(v any, params map[string]string) (any, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			var err error
			if out[i], err = ruleValue(e, params); err != nil {
				return nil, err
			}
		}
		return out, nil
	case map[string]any:
		if len(v) != 1 {
			return nil, fmt.Errorf("not a function: %v", v)
		}
		for fn, arg := range v {
			if fn == "Ref" {
				p, ok := params[arg.(string)]
				if !ok {
					return nil, fmt.Errorf("Ref %v: no such parameter", arg)
				}
				return p, nil
			}
			args, err := ruleValue(arg, params)
			if err != nil {
				return nil, err
			}
			list, _ := args.([]any)
			switch fn {
			case "Fn::Equals":
				return fmt.Sprint(list[0]) == fmt.Sprint(list[1]), nil
			case "Fn::Not":
				return list[0] != true, nil
			case "Fn::And", "Fn::Or":
				all, some := true, false
				for _, e := range list {
					all, some = all && e == true, some || e == true
				}
				return map[bool]bool{true: all, false: some}[fn == "Fn::And"], nil
			case "Fn::Contains":
				return slices.ContainsFunc(list[0].([]any), func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(list[1]) }), nil
			}
			return nil, fmt.Errorf("rule function %s is not understood here", fn)
		}
	}
	return nil, fmt.Errorf("cannot evaluate %v", v)
}
