// Package snapshot copies tables into DynamoDB while the streamer runs (README "The contract").
// A table is split into key ranges copied in parallel, each in key-ordered chunks read in
// short transactions. Progress is stored per range after each chunk's writes are durable,
// so an interrupted copy resumes at the last stored key of each range.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/pg"
	"tandem/shared/schema"
	"tandem/shared/target"
)

// Copier snapshots tables.
type Copier struct {
	PG        *pgxpool.Pool
	Control   *control.Store
	Writer    *target.Writer
	ChunkSize int
	// Writers is how many DynamoDB writes are in flight per range.
	Writers int
	// RangeRows is the number of rows a range is sized for, MaxRanges the most ranges one
	// table is split into.
	RangeRows int64
	MaxRanges int
	// Parallel is how many ranges Run copies at once.
	Parallel int
	Log      *slog.Logger
	// Runner is who runs this copier: "" for the state machine's Lambda,
	// control.RunnerStreamer inside the streamer. A copier only runs the snapshots that
	// are its runner's, so one table never has two copiers.
	Runner string
	// Epoch, when set, is the epoch the work was planned for: a table re-planned or
	// truncated since is not this copier's to copy any more.
	Epoch int64
	// RunID names this copy run ("<run>/<range>" claims the table's finalize); Run
	// chooses one when empty.
	RunID string
	// AfterRead, when set, runs after a chunk is read and before it is written; tests use
	// it to force interleavings with the stream.
	AfterRead func(ctx context.Context, t *schema.Table, c *pg.Chunk)
	// OnChunk, when set, is told a range's progress after each chunk whose writes and
	// progress are durable, and once the range is done; it must return quickly. The
	// handlers run outside Lambda print it (the pieces one by one show progress).
	OnChunk func(ChunkProgress)
}

// ChunkProgress is where one range of a table's snapshot stands after a chunk.
type ChunkProgress struct {
	Table string
	// Range of Of is the range; RowsCopied and Chunks are its totals (of every run, not
	// only this process's), Rows the rows of this chunk.
	Range, Of          int
	RowsCopied, Chunks int64
	Rows               int
	// RowsEstimate is the whole table's estimate (negative: unknown).
	RowsEstimate int64
	// Done reports that the range is copied.
	Done bool
}

// FailedError reports that the runner that owns a table's snapshot failed it.
type FailedError struct{ Table, Reason string }

func (e *FailedError) Error() string {
	return fmt.Sprintf("the snapshot of %s failed: %s", e.Table, e.Reason)
}

// Result is where a table's snapshot (or one range of it) stands after a run.
type Result struct {
	Table string `json:"table"`
	// Range and Of say which range of how many the result is of (RunRange).
	Range int `json:"range"`
	Of    int `json:"of,omitempty"`
	// Done reports that the work asked for is over: the range (RunRange) or the table
	// (Run) is copied, or fenced.
	Done bool `json:"done"`
	// Finalize is set on the one result elected to finalize the table (RunRange).
	Finalize bool `json:"finalize"`
	// State is the table's snapshot state.
	State        string `json:"state"`
	RowsCopied   int64  `json:"rows_copied"`
	RowsEstimate int64  `json:"rows_estimate"`
	Chunks       int64  `json:"chunks"`
	// Fenced reports that a TRUNCATE or reset stopped this snapshot.
	Fenced bool `json:"fenced,omitempty"`
}

// deadlineMargin is the time left before the invocation's deadline when the copier stops
// and reports its progress: enough to read it from the control table and answer.
const deadlineMargin = 10 * time.Second

// Run copies the whole table, Parallel ranges at once, until it is done or the deadline
// is near, and returns the table's progress.
func (c *Copier) Run(ctx context.Context, t *schema.Table, deadline time.Time) (Result, error) {
	var st control.TableState
	res, ok, err := c.withRetries(ctx, t, 0, deadline, func(ctx context.Context) (Result, error) {
		var err error
		if st, err = c.prepare(ctx, t); errors.Is(err, control.ErrFenced) {
			return c.result(ctx, t, true)
		}
		return Result{Table: t.Source()}, err
	})
	if err != nil || !ok || res.Fenced {
		return res, err
	}
	if st.Runner != c.Runner {
		return c.awaitOther(ctx, t, deadline)
	}
	c.runID() // chosen once, before the workers share the copier
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		fenced   bool
	)
	for range max(1, min(c.Parallel, len(st.Ranges))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				res, err := c.RunRange(ctx, t, i, deadline)
				mu.Lock()
				fenced = fenced || res.Fenced
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	for i := range st.Ranges {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return Result{Table: t.Source(), State: control.Running}, firstErr
	}
	return c.result(context.WithoutCancel(ctx), t, fenced)
}

// RunRange copies range index of the table until it is done or the deadline is near, and
// returns its progress. The range that finds every range done reads B(T) and finishes
// the table; then one worker of this run is elected to finalize it (Result.Finalize).
// It never holds a transaction across chunks.
//
// Transient errors (DynamoDB beyond the SDK's attempts, a terminated PostgreSQL backend, a
// restart) are retried here with backoff, resuming from the stored cursor, for as long as
// the deadline allows (forever without one). When it nears, RunRange returns the progress
// stored so far and no error, so the state machine simply invokes it again: an outage of
// minutes slows a table down but never fails it.
func (c *Copier) RunRange(ctx context.Context, t *schema.Table, index int, deadline time.Time) (Result, error) {
	res, _, err := c.withRetries(ctx, t, index, deadline, func(ctx context.Context) (Result, error) {
		return c.runRange(ctx, t, index, deadline)
	})
	return res, err
}

// withRetries runs attempt until it succeeds or fails for good, retrying transient errors
// with backoff. When the deadline nears first, it gives up (ok false) and returns the
// range's stored progress and no error.
func (c *Copier) withRetries(ctx context.Context, t *schema.Table, index int, deadline time.Time, attempt func(context.Context) (Result, error)) (res Result, ok bool, err error) {
	runCtx := ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, deadline.Add(-deadlineMargin))
		defer cancel()
	}
	backoff := time.Second
	for {
		res, err := attempt(runCtx)
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return res, err == nil, err
		}
		if runCtx.Err() != nil || (!deadline.IsZero() && time.Until(deadline) < deadlineMargin+backoff) {
			c.Log.Warn("snapshot interrupted by a transient error near the deadline; returning its progress", "table", t.Source(), "range", index, "error", err.Error())
			return c.progress(ctx, t, index, res), false, nil
		}
		c.Log.Warn("snapshot interrupted by a transient error, resuming from the stored cursor", "table", t.Source(), "range", index, "error", err.Error(), "in", backoff.String())
		select {
		case <-time.After(backoff):
		case <-runCtx.Done():
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// retryable reports an error worth resuming the copy after: a transient one, except the
// owning runner having failed the table, which no retry changes.
func retryable(err error) bool {
	var failed *FailedError
	var bad *schema.Error
	return fault.Classify(err) == fault.Transient && !errors.As(err, &failed) && !errors.As(err, &bad)
}

// progress is the stored progress of the range, or last when the control table cannot be
// read either (it may be what is down): the state machine loops on it either way.
func (c *Copier) progress(ctx context.Context, t *schema.Table, index int, last Result) Result {
	ctx, cancel := context.WithTimeout(ctx, deadlineMargin/2)
	defer cancel()
	if st, found, err := c.Control.Table(ctx, t.Source()); err == nil && found {
		if r, err := c.Control.Range(ctx, st, index); err == nil {
			return rangeResult(st, r)
		}
	}
	last.Table, last.Range, last.Done, last.Finalize = t.Source(), index, false, false
	if last.State == "" || last.State == control.Done {
		last.State = control.Running
	}
	return last
}

// awaitOther waits while another runner (the streamer) copies the table, until it is done
// or the deadline nears, so the state machine's loop does not spin on it.
func (c *Copier) awaitOther(ctx context.Context, t *schema.Table, deadline time.Time) (Result, error) {
	for {
		res, err := c.result(ctx, t, false)
		if err == nil && res.State == control.Failed {
			st, _, _ := c.Control.Table(ctx, t.Source())
			return res, &FailedError{Table: t.Source(), Reason: st.Error}
		}
		if err != nil || res.Done {
			return res, err
		}
		// The streamer runs this snapshot: if it stopped reporting, say so rather than wait.
		if cp, err := c.Control.Checkpoint(ctx); err == nil {
			if at, err := time.Parse(time.RFC3339Nano, cp.UpdatedAt); err == nil && time.Since(at) > 5*time.Minute {
				return res, fmt.Errorf("the streamer runs the snapshot of %s but has not reported since %s", t.Source(), cp.UpdatedAt)
			}
		}
		if !deadline.IsZero() && time.Until(deadline) < 15*time.Second {
			return res, nil
		}
		select {
		case <-time.After(5 * time.Second):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
}

// result is the table's progress: its totals once done, its ranges' sums while it runs.
func (c *Copier) result(ctx context.Context, t *schema.Table, fenced bool) (Result, error) {
	st, found, err := c.Control.Table(ctx, t.Source())
	if err != nil {
		return Result{Table: t.Source()}, err
	}
	if !found {
		return Result{Table: t.Source()}, errNotPlanned(t)
	}
	res := Result{
		Table: t.Source(), Of: len(st.Ranges), Done: st.State == control.Done, State: st.State, Fenced: fenced,
		RowsCopied: st.RowsCopied, RowsEstimate: st.RowsEstimate, Chunks: st.Chunks,
	}
	if st.State == control.Running && st.SplitEpoch == st.Epoch {
		ranges, err := c.Control.Ranges(ctx, st)
		if err != nil {
			return res, err
		}
		res.RowsCopied, res.Chunks, _ = control.RangeProgress(ranges)
	}
	return res, nil
}

// rangeResult is one range's progress within its table's state.
func rangeResult(st control.TableState, r control.RangeState) Result {
	return Result{
		Table: st.Source, Range: r.Index, Of: len(st.Ranges), Done: r.State == control.Done || st.State == control.Done,
		State: st.State, RowsCopied: r.RowsCopied, RowsEstimate: st.RowsEstimate, Chunks: r.Chunks,
	}
}
