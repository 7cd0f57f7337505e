package pipeline

import (
	"strings"
	"testing"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/schema"
)

func TestDrift(t *testing.T) {
	table := func(target string, key ...string) *schema.Table {
		tb := &schema.Table{Schema: "public", Name: "items", Target: target}
		for i, k := range key {
			tb.Columns = append(tb.Columns, schema.Column{Name: k})
			tb.Key = append(tb.Key, i)
		}
		return tb
	}
	done := control.TableState{Source: "public.items", Target: "a", KeyColumns: []string{"id"}, State: control.Done}
	for _, c := range []struct {
		name   string
		st     control.TableState
		t      *schema.Table
		reason string // "" none, "!" refused
	}{
		{"unchanged", done, table("a", "id"), ""},
		{"key not recorded yet", control.TableState{Target: "a", State: control.Done}, table("a", "code"), ""},
		{"new target", done, table("b", "id"), "target changed from a to b"},
		{"new target and key", done, table("b", "code"), "key from (id) to (code)"},
		{"new key, same target", done, table("a", "code"), "!"},
		{"removed, configured again", control.TableState{Target: "a", KeyColumns: []string{"id"}, State: control.Removed, Error: "gone"}, table("a", "id"), "replicated again"},
	} {
		reason, err := Drift(c.st, c.t)
		switch {
		case c.reason == "!":
			if !fault.IsFatal(err) || !strings.Contains(err.Error(), "configure a new target") {
				t.Errorf("%s: got %q, %v; want a fatal error with the fix", c.name, reason, err)
			}
		case err != nil || (c.reason == "") != (reason == "") || !strings.Contains(reason, c.reason):
			t.Errorf("%s: got %q, %v; want %q", c.name, reason, err, c.reason)
		}
	}
}

func TestStaleConfig(t *testing.T) {
	st := control.TableState{Target: "b", RetiredTargets: []string{"a"}}
	if err := StaleConfig(st, &schema.Table{Schema: "public", Name: "items", Target: "a"}); !fault.IsFatal(err) {
		t.Errorf("a retired target: %v, want a fatal error", err)
	}
	if err := StaleConfig(st, &schema.Table{Schema: "public", Name: "items", Target: "c"}); err != nil {
		t.Errorf("a new target: %v, want none", err)
	}
}
