package pipeline

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"tandem/shared/snapshot"
)

// TestProgressPrinter: one line per Every at most, one for every range done; the table's
// totals once every range reported, the range's own before.
func TestProgressPrinter(t *testing.T) {
	var out bytes.Buffer
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	p := &ProgressPrinter{W: &out, Every: 2 * time.Second, Now: func() time.Time { return now }, began: now}
	chunk := func(after time.Duration, rng int, rows int64, done bool) {
		now = now.Add(after)
		p.Chunk(snapshot.ChunkProgress{Table: "public.t", Range: rng, Of: 2, RowsCopied: rows, Rows: 100, RowsEstimate: 1000, Done: done})
	}
	chunk(time.Second, 0, 100, false)          // printed: the first
	chunk(500*time.Millisecond, 1, 100, false) // within Every: not printed
	chunk(2*time.Second, 0, 200, false)        // printed: both ranges seen
	chunk(time.Second, 1, 500, true)           // printed: a range done
	want := []string{
		"snapshot public.t range 1/2: 100 rows, 100 rows/s (the table: ~1,000 rows in 2 ranges)",
		"snapshot public.t: 300 of ~1,000 rows (30%), 86 rows/s, about 8s left; range 1/2: 200 rows (0/2 ranges done)",
		"snapshot public.t: 700 of ~1,000 rows (70%), 156 rows/s, about 2s left; range 2/2: 500 rows, done (1/2 ranges done)",
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("progress lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestEstimate: unknown stays unknown (no estimate, no rate, estimate passed), done is 100%.
func TestEstimate(t *testing.T) {
	for _, c := range []struct {
		e         Estimate
		pct       float64
		pctKnown  bool
		left      time.Duration
		leftKnown bool
	}{
		{Estimate{Copied: 25, Total: 100, Rate: 5}, 25, true, 15 * time.Second, true},
		{Estimate{Copied: 25, Total: -1, Rate: 5}, 0, false, 0, false},
		{Estimate{Copied: 25, Total: 100}, 25, true, 0, false},
		{Estimate{Copied: 120, Total: 100, Rate: 5}, 99, true, 0, false},
		{Estimate{Copied: 120, Total: -1, Done: true}, 100, true, 0, true},
	} {
		pct, pctKnown := c.e.Percent()
		left, leftKnown := c.e.Left()
		if pct != c.pct || pctKnown != c.pctKnown || left != c.left || leftKnown != c.leftKnown {
			t.Errorf("%+v: percent %v %v, left %v %v; want %v %v, %v %v", c.e, pct, pctKnown, left, leftKnown, c.pct, c.pctKnown, c.left, c.leftKnown)
		}
	}
}
