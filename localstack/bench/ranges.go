package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"tandem/shared/config"
	"tandem/shared/pipeline"
)

// rangeSpeedup: one table of rangeRows rows snapshotted with 1, 2, 4 and 8 ranges (each a
// fresh slot, control table and target over the same source table), the ranges copied at
// once in goroutines as the state machine's Distributed Map runs them; and the endpoint's
// raw conditional-PutItem ceiling at the same total concurrency (8 ranges × the writes in
// flight of one). Target: 8 ranges reach ≥ 80% of min(8 × the one-range rate, ceiling).
func (b *bench) rangeSpeedup() error {
	b.seq++
	name := fmt.Sprintf("b%d", b.seq)
	url, err := b.pg.CreateDatabase(name)
	if err != nil {
		return err
	}
	src, err := b.worldOn(name, url, tableDDL("wide", b.sz.rangeRows), nil)
	if err != nil {
		return err
	}
	src.close()
	b.note("loaded %d rows", b.sz.rangeRows)
	rates := map[int]float64{}
	for _, n := range []int{1, 2, 4, 8} {
		rate, got, err := b.rangedSnapshot(name, url, n)
		if err != nil {
			return fmt.Errorf("%d ranges: %w", n, err)
		}
		rates[n] = rate
		b.info(fmt.Sprintf("snapshot rows/s with %d ranges (%d planned)", n, got), rate, "rows/s")
	}
	ceiling, _, err := b.rawCeiling(8*concurrency, b.sz.rawOps*4)
	if err != nil {
		return fmt.Errorf("raw ceiling: %w", err)
	}
	b.info(fmt.Sprintf("raw conditional PutItem ceiling, %d in flight", 8*concurrency), ceiling, "puts/s")
	b.ratio(fmt.Sprintf("8-range rate vs min(8 × 1-range, ceiling), %d rows", b.sz.rangeRows), rates[8], min(8*rates[1], ceiling), "rows/s", true, 0.80)
	b.info("speedup of 8 ranges over 1", rates[8]/rates[1], "×")
	return nil
}

// rangedSnapshot plans the table with n ranges and copies them all at once; it returns
// rows per second from the first range's start to the last one's end, and how many
// ranges the plan made.
func (b *bench) rangedSnapshot(db, url string, n int) (float64, int, error) {
	b.seq++
	w, err := b.worldOn(fmt.Sprintf("%s_r%d_%d", db, n, b.seq), url, "", func(c *config.Config) {
		c.RangeRows = (b.sz.rangeRows + n - 1) / n
		c.MaxRanges = n
		c.MaxConcurrency = n
		c.Publication = "tandem_" + db
	})
	if err != nil {
		return 0, 0, err
	}
	defer w.close()
	plan, err := w.env.Plan(b.ctx, planInput())
	if err != nil {
		return 0, 0, err
	}
	var units []pipeline.RangeUnit
	for _, u := range plan.Ranges {
		if u.Table == "public.wide" {
			units = append(units, u)
		}
	}
	if len(units) == 0 {
		return 0, 0, errors.New("the plan has no range of public.wide")
	}
	t0 := time.Now()
	errs := make([]error, len(units))
	var wg sync.WaitGroup
	for i, u := range units {
		wg.Go(func() {
			in := pipeline.TableInput{Table: u.Table, Range: u.Range, Of: u.Of, Epoch: u.Epoch, Run: u.Run}
			for {
				res, err := w.env.Snapshot(b.ctx, in)
				if err != nil {
					errs[i] = err
					return
				}
				if res.Done {
					return
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, err
	}
	if _, err := w.env.Finalize(b.ctx, pipeline.TableInput{Table: "public.wide"}); err != nil {
		return 0, 0, fmt.Errorf("finalize: %w", err)
	}
	// Not timed: every row must be there, or the rate means nothing.
	target, err := w.target("public.wide")
	if err != nil {
		return 0, 0, err
	}
	if live, err := w.liveItems(target); err != nil {
		return 0, 0, err
	} else if live != b.sz.rangeRows {
		return 0, 0, fmt.Errorf("%d ranges copied %d rows of %d", len(units), live, b.sz.rangeRows)
	}
	b.note("%d ranges copied in %s", len(units), wall.Round(time.Millisecond))
	return float64(b.sz.rangeRows) / wall.Seconds(), len(units), nil
}
