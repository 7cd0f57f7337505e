package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/limits"
	"tandem/shared/pg"
	"tandem/shared/schema"
	"tandem/shared/target"
)

// prepare returns the table's state, its snapshot started and split into ranges when it
// is this runner's to copy. A done table, or another runner's, is returned as it is.
func (c *Copier) prepare(ctx context.Context, t *schema.Table) (control.TableState, error) {
	st, found, err := c.Control.Table(ctx, t.Source())
	if err != nil {
		return st, err
	}
	if !found {
		return st, errNotPlanned(t)
	}
	if c.Epoch != 0 && st.Epoch != c.Epoch {
		return st, control.ErrFenced
	}
	if c.Epoch != 0 && st.State == control.Failed {
		// Another range of this run failed the table (plan re-plans failed tables before
		// a run): the other ranges stop too, rather than revive it as running.
		return st, &FailedError{Table: t.Source(), Reason: st.Error}
	}
	if st.Runner != c.Runner || st.State == control.Done {
		return st, nil
	}
	if st, err = c.Control.StartSnapshot(ctx, t.Source()); err != nil || st.State == control.Done {
		return st, err
	}
	return c.EnsureSplit(ctx, t, st)
}

// EnsureSplit splits the table's snapshot of st's epoch into key ranges, unless it was
// split already: one range per RangeRows rows of the estimate, at most MaxRanges, with
// boundaries sampled from the table (pg.Split).
func (c *Copier) EnsureSplit(ctx context.Context, t *schema.Table, st control.TableState) (control.TableState, error) {
	if st.SplitEpoch == st.Epoch && len(st.Ranges) > 0 {
		return st, nil
	}
	ranges, rows, err := pg.Split(ctx, c.PG, t, c.RangeRows, max(1, c.MaxRanges))
	if err != nil {
		return st, err
	}
	ranges = fitSplit(ranges)
	if st, err = c.Control.SetSplit(ctx, t.Source(), st.Epoch, ranges, rows); err != nil {
		return st, err
	}
	c.Log.Info("snapshot split into key ranges", "table", t.Source(), "rows_estimate", rows, "ranges", len(st.Ranges))
	return st, nil
}

// splitBudget bounds the boundaries' bytes, which live in the table's control item next
// to its shape and counters (DynamoDB's item limit covers them all).
const splitBudget = limits.ItemSize / 2

// fitSplit merges neighbouring ranges until the boundaries fit the budget: very long keys
// make fewer, larger ranges, never an item DynamoDB refuses.
func fitSplit(ranges []pg.Range) []pg.Range {
	for len(ranges) > 1 {
		size := 0
		for _, r := range ranges {
			for _, k := range r.Hi {
				size += 2 * len(k) // as one range's Hi and the next one's Lo
			}
		}
		if size <= splitBudget {
			return ranges
		}
		merged := make([]pg.Range, 0, (len(ranges)+1)/2)
		for i := 0; i < len(ranges); i += 2 {
			r := ranges[i]
			if i+1 < len(ranges) {
				r.Hi = ranges[i+1].Hi
			}
			merged = append(merged, r)
		}
		ranges = merged
	}
	return ranges
}

// runRange is one attempt of RunRange: from the range's stored progress until it is
// done, the deadline or an error.
func (c *Copier) runRange(ctx context.Context, t *schema.Table, index int, deadline time.Time) (Result, error) {
	st, err := c.prepare(ctx, t)
	if errors.Is(err, control.ErrFenced) {
		sweep, err := c.interrupted(ctx, t, index)
		if err != nil {
			return Result{Table: t.Source(), Range: index}, err
		}
		return c.fenced(ctx, t, index, sweep)
	}
	if err != nil {
		return Result{Table: t.Source(), Range: index}, err
	}
	if st.Runner != c.Runner {
		res, err := c.awaitOther(ctx, t, deadline)
		res.Range = index
		return res, err
	}
	if st.State == control.Done {
		return c.end(ctx, t, index, false)
	}
	if index < len(st.Ranges) {
		r, err := c.Control.Range(ctx, st, index)
		if err != nil {
			return rangeResult(st, r), err
		}
		if r.State != control.Done {
			done, err := c.copyRange(ctx, t, st, &r, deadline)
			if errors.Is(err, control.ErrFenced) {
				return c.fenced(ctx, t, index, false)
			}
			if err != nil || !done {
				return rangeResult(st, r), err
			}
		}
	}
	if err := c.finishTable(ctx, st); errors.Is(err, control.ErrFenced) {
		return c.fenced(ctx, t, index, false)
	} else if err != nil {
		return Result{Table: t.Source(), Range: index, State: st.State}, err
	}
	return c.end(ctx, t, index, false)
}

// copyRange copies the range's chunks from its cursor, reading the next chunk while the
// current one is written (the writes take most of a chunk's time). done reports that the
// range has no rows after its cursor; false with no error means the deadline is near.
func (c *Copier) copyRange(ctx context.Context, t *schema.Table, st control.TableState, r *control.RangeState, deadline time.Time) (done bool, err error) {
	upTo := st.Ranges[r.Index].Hi
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type read struct {
		ch  pg.Chunk
		err error
	}
	// Buffered: a read still in flight when the copy stops ends without a receiver.
	reads := make(chan read, 1)
	fetch := func(after []string) {
		go func() {
			ch, err := pg.ReadChunkWhere(ctx, c.PG, t, after, upTo, c.ChunkSize, st.Filter)
			reads <- read{ch, err}
		}()
	}
	fetch(r.Cursor)
	var slowest time.Duration
	for {
		began := time.Now()
		rd := <-reads
		if rd.err != nil {
			return false, rd.err
		}
		ch := rd.ch
		last := len(ch.Rows) < c.ChunkSize
		// Stop while a chunk still fits before the deadline, with a margin for retries.
		stop := !deadline.IsZero() && time.Until(deadline) < 2*slowest+deadlineMargin
		if len(ch.Rows) > 0 && c.AfterRead != nil {
			c.AfterRead(ctx, t, &ch)
		}
		if !last && !stop {
			fetch(ch.LastKey)
		}
		if len(ch.Rows) > 0 {
			if err := c.write(ctx, t, ch, st); err != nil {
				return false, err
			}
			if err := c.Control.RecordRangeChunk(ctx, *r, ch.LastKey, len(ch.Rows), uint64(ch.LSN)); err != nil {
				return false, err
			}
			r.Cursor, r.Chunks, r.RowsCopied = ch.LastKey, r.Chunks+1, r.RowsCopied+int64(len(ch.Rows))
			c.progressed(st, r, len(ch.Rows))
			if err := c.checkFence(ctx, t, st, ch); err != nil {
				return false, err
			}
		}
		if last {
			if err := c.Control.FinishRange(ctx, *r); err != nil {
				return false, err
			}
			r.State = control.Done
			c.progressed(st, r, 0)
			return true, nil
		}
		slowest = max(slowest, time.Since(began))
		if stop {
			return false, nil
		}
	}
}

// progressed tells OnChunk, if set, where range r stands.
func (c *Copier) progressed(st control.TableState, r *control.RangeState, rows int) {
	if c.OnChunk != nil {
		c.OnChunk(ChunkProgress{Table: st.Source, Range: r.Index, Of: len(st.Ranges), RowsCopied: r.RowsCopied, Chunks: r.Chunks,
			Rows: rows, RowsEstimate: st.RowsEstimate, Done: r.State == control.Done})
	}
}

// checkFence returns ErrFenced when a TRUNCATE or a reset moved the table's epoch on: the
// range stops before its next chunk (its writes are guarded by the epoch anyway). The
// fence was not there when the previous chunk was checked, so of this range only ch may
// have landed after a TRUNCATE's tombstones: its stale rows are removed here, by key, not
// by a scan of the whole table.
func (c *Copier) checkFence(ctx context.Context, t *schema.Table, st control.TableState, ch pg.Chunk) error {
	cur, _, err := c.Control.Table(ctx, st.Source)
	if err != nil {
		return err
	}
	if cur.Epoch == st.Epoch && cur.State == control.Running {
		return nil
	}
	if cur.FenceLSN > 0 {
		keys := make([]target.Item, 0, len(ch.Rows))
		for _, row := range ch.Rows {
			if key, err := t.ItemKey(row); err == nil { // a poison key was never written
				keys = append(keys, key)
			}
		}
		n, err := c.Writer.RemoveStale(ctx, t, keys, cur.FenceLSN)
		if err != nil {
			return err
		}
		c.Log.Info("snapshot range fenced by truncate", "table", t.Source(), "stale_rows_removed", n)
	}
	return control.ErrFenced
}

// finishTable reads B(T) and marks the table done once every range is (README "The contract"): B(T)
// is read after the last chunk of the last range. Of ranges finishing together more than
// one may read it; the control table records the first.
func (c *Copier) finishTable(ctx context.Context, st control.TableState) error {
	ranges, err := c.Control.Ranges(ctx, st)
	if err != nil {
		return err
	}
	rows, chunks, done := control.RangeProgress(ranges)
	if done < len(ranges) {
		return nil
	}
	b, err := pg.CurrentLSN(ctx, c.PG)
	if err != nil {
		return err
	}
	if err := c.Control.FinishSnapshot(ctx, st.Source, st.Epoch, uint64(b), rows, chunks); err != nil {
		return err
	}
	c.Log.Info("snapshot done", "table", st.Source, "consistent_lsn", b.String(), "rows", rows, "chunks", chunks, "ranges", len(ranges))
	return nil
}

// end is the result of a range that is over (done or fenced). When its table is done,
// the range takes part in electing the run's one finalizer.
func (c *Copier) end(ctx context.Context, t *schema.Table, index int, fenced bool) (Result, error) {
	st, found, err := c.Control.Table(ctx, t.Source())
	if err != nil {
		return Result{Table: t.Source(), Range: index}, err
	}
	if !found {
		return Result{Table: t.Source(), Range: index}, errNotPlanned(t)
	}
	res := Result{Table: t.Source(), Range: index, Of: len(st.Ranges), Done: true, State: st.State, Fenced: fenced, RowsEstimate: st.RowsEstimate}
	if st.SplitEpoch == st.Epoch && index < len(st.Ranges) {
		r, err := c.Control.Range(ctx, st, index)
		if err != nil {
			return res, err
		}
		res.RowsCopied, res.Chunks = r.RowsCopied, r.Chunks
	}
	if st.State == control.Done {
		if res.Finalize, err = c.Control.ClaimFinalize(ctx, t.Source(), st.Epoch, c.runID()+"/"+strconv.Itoa(index)); err != nil {
			return res, err
		}
	}
	return res, nil
}

// runID names this copier's run, choosing a random name when none was given.
func (c *Copier) runID() string {
	if c.RunID == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		c.RunID = hex.EncodeToString(b)
	}
	return c.RunID
}

// fenced ends a range stopped by a TRUNCATE or a reset. sweep says whether rows this range
// wrote may have landed after a TRUNCATE's tombstones without being removed (a worker
// killed between its writes and its fence check): then stale snapshot rows are swept from
// the whole table, the rare case that needs a scan.
func (c *Copier) fenced(ctx context.Context, t *schema.Table, index int, sweep bool) (Result, error) {
	st, _, err := c.Control.Table(ctx, t.Source())
	if err != nil {
		return Result{Table: t.Source(), Range: index}, err
	}
	if sweep && st.FenceLSN > 0 {
		n, err := c.Writer.Sweep(ctx, t, target.Sweep{FenceLSN: st.FenceLSN})
		if err != nil {
			return Result{Table: t.Source(), Range: index}, err
		}
		c.Log.Info("snapshot fenced by truncate", "table", t.Source(), "range", index, "stale_rows_swept", n)
	}
	return c.end(ctx, t, index, true)
}

// interrupted reports whether range index of the epoch this copier was planned for was left
// mid-copy (started, not done): its last chunk's writes may not have been fence-checked.
func (c *Copier) interrupted(ctx context.Context, t *schema.Table, index int) (bool, error) {
	if c.Epoch == 0 {
		return true, nil // not known which epoch ran: assume the worst
	}
	r, err := c.Control.Range(ctx, control.TableState{Source: t.Source(), Epoch: c.Epoch}, index)
	return r.State == control.Running, err
}

func errNotPlanned(t *schema.Table) error {
	return fault.Fatalf("control: table %s is not planned: run the plan handler first", t.Source())
}
