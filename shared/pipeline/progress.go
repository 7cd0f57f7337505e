package pipeline

import (
	"fmt"
	"io"
	"sync"
	"time"

	"tandem/shared/human"
	"tandem/shared/snapshot"
)

// ProgressPrinter prints a snapshot's progress as human lines (to stderr when a handler
// runs outside Lambda, where its JSON result goes to stdout): a long copy run by hand
// says what it does instead of nothing for minutes. At most one line per Every, plus
// one whenever a range is done.
type ProgressPrinter struct {
	W     io.Writer
	Every time.Duration
	// Now is the clock (tests may replace it).
	Now func() time.Time

	mu      sync.Mutex
	began   time.Time
	last    time.Time
	ranges  map[rangeKey]*rangeProgress
	printed bool
}

type rangeKey struct {
	table string
	index int
}

type rangeProgress struct {
	first, rows int64 // the range's rows copied when this process first saw it, and now
	done        bool
}

// NewProgressPrinter prints to w, at most one line every two seconds; rates count from
// now.
func NewProgressPrinter(w io.Writer) *ProgressPrinter {
	return &ProgressPrinter{W: w, Every: 2 * time.Second, Now: time.Now, began: time.Now()}
}

// Chunk takes one range's progress (snapshot.Copier.OnChunk).
func (p *ProgressPrinter) Chunk(c snapshot.ChunkProgress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.Now()
	if p.ranges == nil {
		p.ranges = map[rangeKey]*rangeProgress{}
	}
	if p.began.IsZero() {
		p.began = now
	}
	k := rangeKey{c.Table, c.Range}
	r, ok := p.ranges[k]
	if !ok {
		r = &rangeProgress{first: c.RowsCopied - int64(c.Rows)}
		p.ranges[k] = r
	}
	r.rows, r.done = c.RowsCopied, c.Done
	if !c.Done && p.printed && now.Sub(p.last) < p.Every {
		return
	}
	p.last, p.printed = now, true
	fmt.Fprintln(p.W, p.line(c, now))
}

// line is e.g. "snapshot public.orders: 12,000 of ~30,000 rows (40%), 1,500 rows/s,
// about 12s left; range 3/8: 1,500 rows, done". The table's totals are shown once every
// range of it reported here (the whole table runs in this process); before, or when
// this process copies only some ranges, the range's own progress is.
func (p *ProgressPrinter) line(c snapshot.ChunkProgress, now time.Time) string {
	var table, mine, rangeMine int64
	seen, done := 0, 0
	for k, r := range p.ranges {
		if k.table != c.Table {
			continue
		}
		seen++
		table += r.rows
		mine += r.rows - r.first
		if k.index == c.Range {
			rangeMine = r.rows - r.first
		}
		if r.done {
			done++
		}
	}
	of := max(c.Of, 1)
	secs := now.Sub(p.began).Seconds()
	rate := func(rows int64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(rows) / secs
	}
	if seen < of {
		s := fmt.Sprintf("snapshot %s range %d/%d: %s rows, %s rows/s", c.Table, c.Range+1, of, human.Count(c.RowsCopied), human.Rate(rate(rangeMine)))
		if c.Done {
			s += ", done"
		}
		if c.RowsEstimate >= 0 {
			s += fmt.Sprintf(" (the table: ~%s rows in %d ranges)", human.Count(c.RowsEstimate), of)
		}
		return s
	}
	est := Estimate{Copied: table, Total: c.RowsEstimate, Rate: rate(mine), Done: done == of}
	s := fmt.Sprintf("snapshot %s: %s", c.Table, human.Count(table))
	if c.RowsEstimate >= 0 {
		s += " of ~" + human.Count(c.RowsEstimate)
	} else {
		s += " of an unknown number of"
	}
	s += " rows"
	if pct, ok := est.Percent(); ok {
		s += fmt.Sprintf(" (%.0f%%)", pct)
	}
	s += ", " + human.Rate(est.Rate) + " rows/s"
	switch left, ok := est.Left(); {
	case est.Done:
	case ok:
		s += ", about " + human.Duration(left) + " left"
	default:
		s += ", time left unknown"
	}
	s += fmt.Sprintf("; range %d/%d: %s rows", c.Range+1, of, human.Count(c.RowsCopied))
	if c.Done {
		s += ", done"
	}
	if of > 1 {
		s += fmt.Sprintf(" (%d/%d ranges done)", done, of)
	}
	return s
}
