// Package snapshot copies one table into DynamoDB in key-ordered chunks while the
// streamer runs (DESIGN §2.2–§2.3). Progress is stored after each chunk's writes are
// durable, so an interrupted copy resumes at the last stored key.
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
	"tandem/shared/precedence"
	"tandem/shared/schema"
	"tandem/shared/target"
)

// Copier snapshots tables.
type Copier struct {
	PG        *pgxpool.Pool
	Control   *control.Store
	Writer    *target.Writer
	ChunkSize int
	// Writers is how many DynamoDB writes are in flight per chunk.
	Writers int
	Log     *slog.Logger
	// Runner is who runs this copier: "" for the state machine's Lambda,
	// control.RunnerStreamer inside the streamer. A copier only runs the snapshots that
	// are its runner's, so one table never has two copiers.
	Runner string
	// AfterRead, when set, runs after a chunk is read and before it is written; tests use
	// it to force interleavings with the stream.
	AfterRead func(ctx context.Context, t *schema.Table, c *pg.Chunk)
}

// FailedError reports that the runner that owns a table's snapshot failed it.
type FailedError struct{ Table, Reason string }

func (e *FailedError) Error() string {
	return fmt.Sprintf("the snapshot of %s failed: %s", e.Table, e.Reason)
}

// Result is where a table's snapshot stands after Run.
type Result struct {
	Table        string `json:"table"`
	Done         bool   `json:"done"`
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

// Run copies chunks of t until the table is done or the deadline is near, and returns
// the progress. It never holds a transaction across chunks.
//
// Transient errors (DynamoDB beyond the SDK's attempts, a terminated PostgreSQL backend, a
// restart) are retried here with backoff, resuming from the stored cursor, for as long as
// the deadline allows (forever without one). When it nears, Run returns the progress
// stored so far and no error, so the state machine simply invokes it again: an outage of
// minutes slows a table down but never fails it.
func (c *Copier) Run(ctx context.Context, t *schema.Table, deadline time.Time) (Result, error) {
	runCtx := ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, deadline.Add(-deadlineMargin))
		defer cancel()
	}
	backoff := time.Second
	for {
		res, err := c.run(runCtx, t, deadline)
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return res, err
		}
		if runCtx.Err() != nil || (!deadline.IsZero() && time.Until(deadline) < deadlineMargin+backoff) {
			c.Log.Warn("snapshot interrupted by a transient error near the deadline; returning its progress", "table", t.Source(), "error", err.Error())
			return c.progress(ctx, t, res), nil
		}
		c.Log.Warn("snapshot interrupted by a transient error, resuming from the stored cursor", "table", t.Source(), "error", err.Error(), "in", backoff.String())
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

// progress is the stored progress, or last when the control table cannot be read either
// (it may be what is down): the state machine loops on it either way.
func (c *Copier) progress(ctx context.Context, t *schema.Table, last Result) Result {
	ctx, cancel := context.WithTimeout(ctx, deadlineMargin/2)
	defer cancel()
	if res, err := c.result(ctx, t, false); err == nil {
		return res
	}
	last.Table, last.Done = t.Source(), false
	if last.State == "" || last.State == control.Done {
		last.State = control.Running
	}
	return last
}

// run is one attempt of Run: from the stored state until done, the deadline or an error.
func (c *Copier) run(ctx context.Context, t *schema.Table, deadline time.Time) (Result, error) {
	if cur, found, err := c.Control.Table(ctx, t.Source()); err != nil {
		return Result{Table: t.Source()}, err
	} else if found && cur.Runner != c.Runner {
		return c.awaitOther(ctx, t, deadline)
	}
	st, err := c.Control.StartSnapshot(ctx, t.Source())
	if errors.Is(err, control.ErrFenced) {
		return c.result(ctx, t, true)
	}
	if err != nil {
		return Result{Table: t.Source()}, err
	}
	var slowest time.Duration
	for st.State == control.Running {
		// Stop while a chunk still fits before the deadline, with a margin for retries.
		if !deadline.IsZero() && time.Until(deadline) < 2*slowest+deadlineMargin {
			break
		}
		began := time.Now()
		done, rows, err := c.chunk(ctx, t, &st)
		if errors.Is(err, control.ErrFenced) {
			return c.fenced(ctx, t)
		}
		if err != nil {
			return Result{Table: t.Source(), State: st.State}, err
		}
		st.RowsCopied += int64(rows)
		st.Chunks++
		if done {
			st.State = control.Done
		}
		slowest = max(slowest, time.Since(began))
	}
	return c.result(ctx, t, false)
}

// chunk copies one chunk; done reports that the table has no rows after the cursor.
func (c *Copier) chunk(ctx context.Context, t *schema.Table, st *control.TableState) (done bool, rows int, err error) {
	ch, err := pg.ReadChunk(ctx, c.PG, t, st.Cursor, c.ChunkSize)
	if err != nil {
		return false, 0, err
	}
	if len(ch.Rows) == 0 {
		// B(T): read after the last chunk, so every row the snapshot missed was changed
		// later and is in the stream at or before it.
		b, err := pg.CurrentLSN(ctx, c.PG)
		if err != nil {
			return false, 0, err
		}
		if err := c.Control.FinishSnapshot(ctx, t.Source(), st.Epoch, uint64(b)); err != nil {
			return false, 0, err
		}
		c.Log.Info("snapshot done", "table", t.Source(), "consistent_lsn", b.String(), "rows", st.RowsCopied, "chunks", st.Chunks)
		return true, 0, nil
	}
	if c.AfterRead != nil {
		c.AfterRead(ctx, t, &ch)
	}
	if err := c.write(ctx, t, ch, st); err != nil {
		return false, 0, err
	}
	if err := c.Control.RecordChunk(ctx, *st, ch.LastKey, len(ch.Rows), uint64(ch.LSN)); err != nil {
		return false, 0, err
	}
	st.Cursor = ch.LastKey
	return false, len(ch.Rows), nil
}

// write puts the chunk's rows with Writers requests in flight and returns once every
// write is durable (or lost to a stream write, which is the point).
func (c *Copier) write(ctx context.Context, t *schema.Table, ch pg.Chunk, st *control.TableState) error {
	read := precedence.Read{LSN: uint64(ch.LSN), Epoch: st.Epoch, Floor: st.FloorLSN}
	rows := make(chan [][]byte)
	errs := make(chan error, c.Writers)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range c.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for row := range rows {
				if err := c.writeRow(ctx, t, row, read); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		}()
	}
send:
	for _, row := range ch.Rows {
		select {
		case rows <- row:
		case <-ctx.Done():
			break send
		}
	}
	close(rows)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// writeRow writes one row. A row DynamoDB can never hold (a poison value or key) is a
// dead letter naming the table, key and column, and the copy goes on: one bad row never
// fails a whole table, whichever limit it breaks.
func (c *Copier) writeRow(ctx context.Context, t *schema.Table, row [][]byte, read precedence.Read) error {
	item, err := t.Item(row)
	if err == nil {
		_, err = c.Writer.Snapshot(ctx, t, item, read)
	}
	if !fault.IsPoison(err) {
		return err
	}
	d := control.DeadLetterOf(err, t.Source(), t.KeyString(row), read.LSN, "snapshot")
	c.Log.Error("row cannot be written to DynamoDB, dead-lettered", "table", d.Table, "key", d.Key, "column", d.Column, "reason", d.Reason)
	return c.Control.AddDeadLetter(ctx, d)
}

// fenced handles a snapshot stopped by a TRUNCATE: rows of the last chunk may have landed
// after the truncate's tombstones, so stale snapshot rows are swept before returning.
func (c *Copier) fenced(ctx context.Context, t *schema.Table) (Result, error) {
	st, _, err := c.Control.Table(ctx, t.Source())
	if err != nil {
		return Result{Table: t.Source()}, err
	}
	if st.FenceLSN > 0 {
		n, err := c.Writer.Sweep(ctx, t, target.Sweep{FenceLSN: st.FenceLSN})
		if err != nil {
			return Result{Table: t.Source()}, err
		}
		c.Log.Info("snapshot fenced by truncate", "table", t.Source(), "stale_rows_swept", n)
	}
	return c.result(ctx, t, true)
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

func (c *Copier) result(ctx context.Context, t *schema.Table, fenced bool) (Result, error) {
	st, found, err := c.Control.Table(ctx, t.Source())
	if err != nil {
		return Result{Table: t.Source()}, err
	}
	if !found {
		return Result{Table: t.Source()}, fault.Fatalf("control: table %s is not planned: run the plan handler first", t.Source())
	}
	return Result{
		Table: t.Source(), Done: st.State == control.Done, State: st.State, Fenced: fenced,
		RowsCopied: st.RowsCopied, RowsEstimate: st.RowsEstimate, Chunks: st.Chunks,
	}, nil
}
