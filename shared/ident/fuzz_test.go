package ident

import (
	"strings"
	"testing"
)

// FuzzParse reads table names as the configuration's "source" and TANDEM_TABLES do: Parse
// and ParseList never panic, an error says which name and where, and every name read
// back from its canonical String is the same table (so the control table, logs and the
// configuration agree on it).
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"orders", "public.orders", `public."a.b"`, `"My Schema"."x ""y"""`, " audit.events ", `a.b.c`, `"unterminated`,
		`""`, `a,"b,c",d`, `a b`, "caf\u00e9.\u00fc", "\xff", `public.`, `.x`, `"a""`, ",,a,,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "table name ") {
				t.Fatalf("Parse(%q) error does not say which name: %v", s, err)
			}
		} else {
			if id.Schema == "" || id.Name == "" {
				t.Fatalf("Parse(%q) = %#v: an empty part", s, id)
			}
			if again, err := Parse(id.String()); err != nil || again != id {
				t.Fatalf("Parse(%q) = %#v, but its String %q reads back as %#v, %v", s, id, id.String(), again, err)
			}
		}
		ids, err := ParseList(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "table name ") {
				t.Fatalf("ParseList(%q) error does not say which name: %v", s, err)
			}
			return
		}
		parts := make([]string, len(ids))
		for i, id := range ids {
			parts[i] = id.String()
		}
		again, err := ParseList(strings.Join(parts, ","))
		if err != nil || len(again) != len(ids) {
			t.Fatalf("ParseList(%q) = %v, but its canonical list reads back as %v, %v", s, ids, again, err)
		}
		for i := range ids {
			if again[i] != ids[i] {
				t.Fatalf("ParseList(%q)[%d] = %#v reads back as %#v", s, i, ids[i], again[i])
			}
		}
	})
}
