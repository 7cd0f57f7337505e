package pg

import (
	"strings"
	"testing"
)

// TestLexFilter: a filter that could end its parentheses or the chunk query is refused
// before PostgreSQL sees it; quotes are followed, so their contents do not count.
func TestLexFilter(t *testing.T) {
	for _, ok := range []string{
		"id < 10", "name = 'a;b'", `"we;ird" > 3`, "name = 'it''s (' AND (id > 1)", `name = E'a\'; (b'`,
		"created_at > now() - interval '1 day'", `"a""b" = 1`,
	} {
		if err := lexFilter(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for bad, says := range map[string]string{
		"":                       "empty",
		"id < 1; DROP TABLE t":   "semicolon",
		"id < 1 -- c":            "comments",
		"id < 1 /* c */":         "comments",
		"id = $1":                "'$'",
		"name = $$x$$":           "'$'",
		"id < 1) OR (true":       "unbalanced",
		"(id < 1":                "unbalanced",
		"name = 'open":           "unterminated string",
		`"open = 1`:              "unterminated quoted identifier",
		"name = 'x'; SELECT 'y'": "semicolon",
	} {
		err := lexFilter(bad)
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("%q: %v, want an error saying %s", bad, err, says)
		}
	}
}
