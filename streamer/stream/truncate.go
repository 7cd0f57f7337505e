package stream

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"

	"tandem/shared/control"
	"tandem/shared/ddb"
	"tandem/shared/fault"
	"tandem/shared/precedence"
	"tandem/shared/target"
)

// truncate removes every row the tables had before the TRUNCATE (README "Bad input and faults"). Earlier
// changes are written first (a barrier, brief: the queues are bounded), so the removal
// sees them; then the fence and a durable "truncating" record (the fence and the number
// of parallel-scan segments) are written to the control table, which stops a running
// snapshot of the table, and the TRUNCATE is acknowledged like any other change. The
// older items are tombstoned in the background, segment by segment, each page's progress
// stored, so a restarted streamer resumes from the control table (resumeTruncations):
// the stream goes on for every table meanwhile, and the table is consistent again only
// once the removal is done. Rows a fenced snapshot wrote after the truncate are swept by
// that snapshot or by finalize.
func (s *session) truncate(ctx context.Context, m *pglogrepl.TruncateMessage) error {
	p := s.position()
	if err := s.ap.drain(); err != nil {
		return err
	}
	cfg := s.Env.Config
	for _, id := range m.RelationIDs {
		rel, ok := s.rels[id]
		if !ok || rel.table == nil {
			continue
		}
		t := rel.table
		segments, err := s.Env.Writer.Segments(ctx, t.Target, cfg.SweepSegmentItems, cfg.MaxSweepSegments)
		if err != nil {
			return err
		}
		if err := s.Env.Control.Truncated(ctx, t.Source(), p.LSN, p.Seq, segments); err != nil {
			return err
		}
		st, _, err := s.Env.Control.Table(ctx, t.Source())
		if err != nil {
			return err
		}
		s.truncateInBackground(ctx, st)
	}
	return nil
}

// truncation is a TRUNCATE's background removal running in this process.
type truncation struct {
	at     precedence.Position
	cancel context.CancelFunc
}

// resumeTruncations restarts, after a restart of the streamer (or a reconnect), the
// background removals of TRUNCATEs the control table records as unfinished.
func (s *Streamer) resumeTruncations(ctx context.Context) error {
	tables, err := s.Env.Control.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if t.TruncatingLSN > 0 {
			s.truncateInBackground(ctx, t)
		}
	}
	return nil
}

// truncateInBackground removes, in st.TruncateSegments parallel segments, the items of
// the table written before its recorded TRUNCATE, then records it finished. One removal
// runs per table: a later TRUNCATE supersedes (stops) an earlier one, whose items the
// later one removes too. It runs until done or until ctx (the lease) ends; transient
// errors are retried with backoff, never failing the stream.
func (s *Streamer) truncateInBackground(ctx context.Context, st control.TableState) {
	at := precedence.Position{LSN: st.TruncatingLSN, Seq: st.TruncatingSeq}
	if at.LSN == 0 {
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	mine := &truncation{at: at, cancel: cancel}
	for {
		prev, loaded := s.truncations.LoadOrStore(st.Source, mine)
		if !loaded {
			break
		}
		old := prev.(*truncation)
		if !old.at.Less(at) {
			cancel() // this one (or a later one) already runs
			return
		}
		if s.truncations.CompareAndSwap(st.Source, old, mine) {
			old.cancel()
			break
		}
	}
	s.snapshots.Add(1)
	go func() {
		defer s.snapshots.Done()
		defer func() {
			s.truncations.CompareAndDelete(st.Source, mine)
			cancel()
		}()
		log := s.Env.Log.With("table", st.Source, "position", at.String())
		began := time.Now()
		n, err := s.runTruncation(rctx, st, at)
		switch {
		case err == nil:
			log.Info("truncate applied", "rows_tombstoned", n, "segments", st.TruncateSegments, "took", time.Since(began).Round(time.Millisecond).String())
		case rctx.Err() != nil:
			log.Info("truncate paused: it resumes from the control table", "rows_tombstoned", n)
		default:
			log.Error("truncate failed: the table stays truncating", "error", err.Error())
		}
	}()
}

// runTruncation works every unfinished segment at once, then records the TRUNCATE done.
func (s *Streamer) runTruncation(ctx context.Context, st control.TableState, at precedence.Position) (int64, error) {
	t, err := s.Env.Describe(ctx, st.Source)
	if err != nil {
		return 0, err
	}
	job := control.TruncateJob(at.Seq)
	of := max(st.TruncateSegments, 1)
	var removed atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, of)
	// Segments worked on at once: as many as the writers allow (Writer.PassWriters bounds
	// the writes of all of them together), so the scans, too, leave the stream room.
	slots := make(chan struct{}, max(1, s.Env.Config.SweepWriters/target.SegmentWriters))
	for n := range of {
		wg.Go(func() {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			case <-ctx.Done():
				errs[n] = ctx.Err()
				return
			}
			errs[n] = s.retrying(ctx, "truncating "+st.Source, func() error {
				prog, err := s.Env.Control.Segment(ctx, job, st.Source, at.LSN, n, of)
				if err != nil || prog.Done {
					return err
				}
				_, k, err := s.Env.Writer.TruncateSegment(ctx, t, at, target.Segment{N: n, Of: of}, ddb.DecodeKey(prog.Next), time.Time{},
					func(ctx context.Context, pg target.Page) error {
						prog.Next, err = ddb.EncodeKey(pg.Next)
						if err != nil {
							return err
						}
						prog.Done, prog.Removed = pg.Next == nil, prog.Removed+int64(pg.Removed)
						return s.Env.Control.SaveSegment(ctx, prog)
					})
				removed.Add(int64(k))
				return err
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return removed.Load(), err
		}
	}
	if err := s.Env.Control.FinishTruncate(ctx, st.Source, at.LSN, at.Seq); err != nil {
		return removed.Load(), err
	}
	_ = s.Env.Control.DeleteSegments(ctx, job, st.Source, at.LSN, of)
	return removed.Load(), nil
}

// retrying runs f until it succeeds, ctx ends or it fails with an error no retry fixes,
// waiting out transient ones with backoff.
func (s *Streamer) retrying(ctx context.Context, what string, f func() error) error {
	backoff := time.Second
	for {
		err := f()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if c := fault.Classify(err); c != fault.Transient {
			return err
		}
		s.Env.Log.Warn("retrying", "while", what, "error", err.Error(), "in", backoff.String())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}
