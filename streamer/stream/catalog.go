package stream

import (
	"context"
	"time"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
)

// watchCatalog compares, every CatalogInterval, the replicated tables in the catalog with
// what the control table recorded. DDL is not in the logical stream: without this, a
// column added with a default to a table that then receives no writes, or a table added
// to the publication that never changes, would not reach DynamoDB.
func (s *session) watchCatalog(ctx context.Context) {
	every(ctx, s.Env.Config.CatalogInterval.Duration, func() {
		if err := s.checkCatalog(ctx); err != nil && ctx.Err() == nil {
			s.Env.Log.Warn("catalog check failed", "error", err.Error())
		}
	})
}

func (s *session) checkCatalog(ctx context.Context) error {
	sources, err := pg.PublicationTables(ctx, s.Env.PG, s.Env.Config.Publication)
	if err != nil {
		return err
	}
	planned, err := s.Env.Control.Tables(ctx)
	if err != nil || len(planned) == 0 {
		// Before the first snapshot run, the state machine plans every table.
		return err
	}
	// Tables that left the configuration or the publication are not replicated any more.
	if err := s.Env.MarkRemoved(ctx, planned, s.replicated(sources)); err != nil {
		return err
	}
	for _, id := range sources {
		t, err := s.Env.DescribeTable(ctx, id)
		if err != nil {
			continue // not replicated, or not replicable: the Relation path reports it
		}
		st, found, err := s.Env.Control.Table(ctx, t.Source())
		if err != nil {
			return err
		}
		if !found {
			s.shapeMu.Lock()
			err = s.planNew(ctx, t)
			s.shapeMu.Unlock()
			if err != nil {
				return err
			}
			continue
		}
		if st.State == control.Failed {
			continue
		}
		if err := pipeline.StaleConfig(st, t); err != nil {
			s.stale.Store(&err) // the receive loop ends the session, and the streamer exits
			return err
		}
		reason, err := s.resnapshotReason(ctx, t, st)
		if fault.IsFatal(err) {
			continue // refused: plan and status report it, the Relation path skips the table
		}
		if err != nil || reason == "" {
			if err != nil {
				return err
			}
			continue
		}
		// The DDL committed before now; once the stream has applied past now, every item
		// written in the old shape is durable and a snapshot floored here rewrites them.
		floor, err := pg.CurrentLSN(ctx, s.Env.PG)
		if err != nil {
			return err
		}
		for s.tr.appliedLSN() < floor {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err := s.reshape(ctx, t, reason, uint64(floor)); err != nil {
			return err
		}
	}
	return nil
}
