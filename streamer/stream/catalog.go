package stream

import (
	"context"
	"slices"
	"time"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/ident"
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
	// Tables that left the configuration or the publication are not replicated any more;
	// those the publication cannot hold (UNLOGGED) are failed instead.
	replicated, err := s.refuseUnlogged(ctx, sources, planned)
	if err != nil {
		return err
	}
	if err := s.Env.MarkRemoved(ctx, planned, replicated); err != nil {
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

// refuseUnlogged fails the replicated tables (configured, or recorded and still
// configured) that are missing from the publication because their changes are not in the
// WAL: UNLOGGED or TEMPORARY (pg.PersistenceProblems, the rule check and plan apply).
// PostgreSQL lets a table in a FOR ALL TABLES publication be switched to UNLOGGED, and
// that publication then leaves it out without a word: marked removed, or never planned,
// nothing would say that its target is no longer kept current. Each is marked failed with
// the reason and the fix (a table never recorded only once plan has recorded others:
// before that, plan refuses it). It returns what MarkRemoved takes as still replicated:
// the publication's configured tables and the failed ones, which it must leave alone.
func (s *Streamer) refuseUnlogged(ctx context.Context, sources []ident.Table, recorded []control.TableState) ([]string, error) {
	replicated := s.replicated(sources)
	candidates := slices.DeleteFunc(s.Env.Config.SourceTables(), func(id ident.Table) bool { return slices.Contains(sources, id) })
	for _, st := range recorded {
		id, err := ident.Parse(st.Source)
		if err != nil || slices.Contains(sources, id) || slices.Contains(candidates, id) {
			continue
		}
		if _, ok := s.Env.Config.TableFor(id); ok {
			candidates = append(candidates, id)
		}
	}
	problems, err := pg.PersistenceProblems(ctx, s.Env.PG, candidates)
	if err != nil {
		return nil, err
	}
	for _, p := range problems {
		source := p.Table.String()
		replicated = append(replicated, source)
		reason := "not replicated: " + p.Problem + "; then run plan to snapshot it again"
		i := slices.IndexFunc(recorded, func(st control.TableState) bool { return st.Source == source })
		if i >= 0 && recorded[i].State == control.Failed && recorded[i].Error == reason {
			continue
		}
		if i < 0 && len(recorded) == 0 {
			continue
		}
		s.Env.Log.Error("table cannot be replicated", "table", source, "reason", reason)
		var epoch int64
		if i >= 0 {
			epoch = recorded[i].Epoch
		} else {
			tc, _ := s.Env.Config.TableFor(p.Table)
			st, err := s.Env.Control.Plan(ctx, source, control.PlanOptions{Target: tc.Target})
			if err != nil {
				return nil, err
			}
			epoch = st.Epoch
		}
		if err := s.Env.Control.FailSnapshot(ctx, source, epoch, reason); err != nil {
			return nil, err
		}
	}
	return replicated, nil
}
