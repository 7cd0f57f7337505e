package stream

import (
	"context"
	"fmt"
	"time"

	"tandem/shared/control"
	"tandem/shared/pipeline"
	"tandem/shared/schema"
	"tandem/shared/snapshot"
	"tandem/shared/target"
)

// plan registers a snapshot the streamer runs itself, and starts it.
func (s *session) plan(ctx context.Context, t *schema.Table, o control.PlanOptions) error {
	full, err := s.Env.Describe(ctx, t.Source())
	if err != nil {
		return err
	}
	if *s.Env.Config.CreateTables {
		if err := target.EnsureTable(ctx, s.Env.DB, full, s.Env.Config.WarmThroughput()); err != nil {
			return err
		}
	}
	o.Target, o.KeyColumns, o.RowsEstimate, o.Runner = full.Target, pipeline.KeyNames(full), full.EstimatedRows, control.RunnerStreamer
	st, err := s.Env.Control.Plan(ctx, t.Source(), o)
	if err != nil {
		return err
	}
	s.runSnapshot(ctx, t.Source(), st.Epoch)
	return nil
}

// runSnapshot copies a table in the background, once per epoch, then finalizes it (the
// state machine does that for the snapshots it runs). A copier of an older epoch is
// fenced and stops by itself.
func (s *Streamer) runSnapshot(ctx context.Context, source string, epoch int64) {
	id := fmt.Sprintf("%s@%d", source, epoch)
	if _, running := s.started.LoadOrStore(id, true); running {
		return
	}
	s.snapshots.Add(1)
	go func() {
		defer s.snapshots.Done()
		defer s.started.Delete(id)
		t, err := s.Env.Describe(ctx, source)
		var res snapshot.Result
		if err == nil {
			c := s.Env.Copier()
			c.Runner = control.RunnerStreamer
			res, err = c.Run(ctx, t, time.Time{})
		}
		if err == nil && res.Done {
			_, err = s.Env.Finalize(ctx, pipeline.TableInput{Table: source})
		}
		if err != nil && ctx.Err() == nil {
			s.Env.Log.Error("in-stream snapshot failed", "table", source, "error", err.Error())
			_ = s.Env.Control.FailSnapshot(context.WithoutCancel(ctx), source, epoch, err.Error())
		}
	}()
}

// resumeSnapshots restarts, after a restart of the streamer, the snapshots it runs
// itself that were not finished or not finalized.
func (s *Streamer) resumeSnapshots(ctx context.Context) error {
	tables, err := s.Env.Control.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if t.Runner == control.RunnerStreamer && t.State != control.Failed && t.State != control.Removed && (t.State != control.Done || t.FinalizedEpoch != t.Epoch) {
			s.runSnapshot(ctx, t.Source, t.Epoch)
		}
	}
	return nil
}
