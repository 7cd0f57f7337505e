package pipeline

import (
	"strings"
	"testing"

	"tandem/shared/schema"
)

// TestParseKeyString reads back what schema.Table.KeyString renders, and refuses what
// it cannot read back without doubt.
func TestParseKeyString(t *testing.T) {
	two := &schema.Table{Schema: "public", Name: "t", Columns: []schema.Column{{Name: "a"}, {Name: "v"}, {Name: "b"}}, Key: []int{0, 2}}
	one := &schema.Table{Schema: "public", Name: "t", Columns: []schema.Column{{Name: "id"}}, Key: []int{0}}
	for _, c := range []struct {
		t    *schema.Table
		key  string
		want []string
	}{
		{one, "id=7", []string{"7"}},
		{one, "id=a,b=c", []string{"a,b=c"}},
		{two, "a=1,b=x", []string{"1", "x"}},
		{two, "a=x,y,b=z,b=w", nil}, // ",b=" twice: ambiguous
		{two, "a=1", nil},
		{one, "id=NULL", nil},
		{one, "*", nil},
		{one, "?", nil},
		{one, "other=1", nil},
	} {
		got, err := ParseKeyString(c.t, c.key)
		if c.want == nil {
			if err == nil {
				t.Errorf("%q: %q, want an error", c.key, got)
			}
			continue
		}
		if err != nil || strings.Join(got, "\x00") != strings.Join(c.want, "\x00") {
			t.Errorf("%q: %q, %v; want %q", c.key, got, err, c.want)
		}
	}
}
