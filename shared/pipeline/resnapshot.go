package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/schema"
	"tandem/shared/target"
)

// planTables is Plan for PlanInput.Tables: a re-snapshot of the named tables while the
// stream goes on, every other table left as it is (its state, its items, its place in
// the publication: no unit of the run is about it, so no sweep touches its items).
//
// A named table gets a new epoch, as a reset does for one table: every row is copied
// again, and finalize sweeps the items no row rewrote (rows deleted meanwhile). The
// epoch is floored at the slot's confirmed position, as after a schema change: the
// stream has durably applied every change before it, none of them can arrive again, so
// the new snapshot may replace the items those changes wrote (repairing items damaged
// behind Tandem's back), while every change after it still wins over the snapshot
// (README "The contract") and a tombstone written after it is never replaced. The table's dead
// letters are removed: the copy writes every row again, and a row DynamoDB still cannot
// hold becomes a new dead letter.
//
// With Where, the epoch is a filtered re-snapshot: only rows matching the filter are
// copied (same precedence), the table must have been copied whole before (done), and
// nothing is swept as an orphan, since the items of rows outside the filter were not
// rewritten: an extra item cannot be found from a filter on rows. The table's degraded
// mark and dead letters stay, for the same reason.
func (e *Env) planTables(ctx context.Context, in PlanInput) (PlanOutput, error) {
	cfg := e.Config
	out := PlanOutput{Slot: cfg.Slot, MaxConcurrency: cfg.MaxConcurrency}
	if in.Reset {
		return out, pg.Misconfiguredf("plan: reset starts every table over with a new slot; it cannot be limited to tables")
	}
	if len(in.Tables) == 0 {
		return out, pg.Misconfiguredf("plan: where filters the rows of a re-snapshot: name the tables to re-snapshot")
	}
	if err := pg.CheckServer(ctx, e.PG); err != nil {
		return out, err
	}
	if err := e.Control.EnsureTable(ctx); err != nil {
		return out, err
	}
	start, _, err := e.EnsureSlot(ctx, false)
	if err != nil {
		return out, err
	}
	out.StartLSN = start.String()
	run := newRunID()
	members, err := pg.PublicationTables(ctx, e.PG, cfg.Publication)
	if err != nil {
		return out, err
	}

	type planned struct {
		t     *schema.Table
		st    control.TableState
		drift string
	}
	var tables []planned
	var problems []error
	seen := map[string]bool{}
	for _, name := range in.Tables {
		id, err := ident.Parse(name)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if seen[id.String()] {
			continue
		}
		seen[id.String()] = true
		if _, ok := cfg.TableFor(id); !ok {
			problems = append(problems, fmt.Errorf("table %s is not in the configured tables", id))
			continue
		}
		if !slices.Contains(members, id) {
			problems = append(problems, fmt.Errorf("table %s is not in publication %s: run plan to add it", id, cfg.Publication))
			continue
		}
		t, err := e.DescribeTable(ctx, id)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		st, found, err := e.Control.Table(ctx, t.Source())
		if err != nil {
			return out, err
		}
		var drift string
		if found {
			if drift, err = Drift(st, t); err != nil {
				problems = append(problems, err)
				continue
			}
		}
		if in.Where != "" {
			if !found || st.State != control.Done || drift != "" {
				state := st.State
				if !found {
					state = "never planned"
				} else if drift != "" {
					state = "out of date (" + drift + ")"
				}
				problems = append(problems, fmt.Errorf("table %s: a filtered re-snapshot repairs rows of a table copied whole, but its snapshot is %s: re-snapshot it without --where", t.Source(), state))
				continue
			}
			if err := pg.CheckFilter(ctx, e.PG, t, in.Where); err != nil {
				problems = append(problems, err)
				continue
			}
		}
		if _, err := target.CheckTarget(ctx, e.DB, t, *cfg.CreateTables); fault.IsFatal(err) {
			problems = append(problems, err)
			continue
		} else if err != nil {
			return out, err
		}
		tables = append(tables, planned{t, st, drift})
	}
	if len(problems) > 0 {
		return out, pg.Misconfiguredf("plan: %d table(s) cannot be re-snapshotted: %v", len(problems), errors.Join(problems...))
	}

	for _, p := range tables {
		t := p.t
		if *cfg.CreateTables {
			if err := target.EnsureTable(ctx, e.DB, t, cfg.WarmThroughput()); err != nil {
				return out, err
			}
		}
		var letters []control.DeadLetter
		if in.Where == "" {
			if letters, err = e.Control.DeadLetters(ctx, t.Source()); err != nil {
				return out, err
			}
		}
		st, err := e.Control.Plan(ctx, t.Source(), control.PlanOptions{Target: t.Target, KeyColumns: KeyNames(t),
			RowsEstimate: t.EstimatedRows, Reset: true, FloorLSN: uint64(start), Filter: in.Where})
		if err != nil {
			return out, err
		}
		if st.Shape == nil || p.drift != "" {
			if err := e.Control.SetShape(ctx, t.Source(), t.Shape()); err != nil {
				return out, err
			}
		}
		if st, err = e.Copier().EnsureSplit(ctx, t, st); err != nil {
			return out, err
		}
		for _, d := range letters {
			if d.Key != "*" {
				if err := e.Control.RemoveDeadLetter(ctx, d.ID); err != nil {
					return out, err
				}
			}
		}
		e.Log.Info("re-snapshot planned", "table", t.Source(), "epoch", st.Epoch, "floor_lsn", out.StartLSN, "where", in.Where)
		out.Tables = append(out.Tables, PlanTable{Table: t.Source(), Target: t.Target, RowsEstimate: st.RowsEstimate, State: st.State})
		out.Ranges = append(out.Ranges, units(st, run)...)
	}
	return out, nil
}

// TableProgress is where one table's snapshot stands, for progress reports.
type TableProgress struct {
	Table        string `json:"table"`
	State        string `json:"state"`
	RowsCopied   int64  `json:"rows_copied"`
	RowsEstimate int64  `json:"rows_estimate"`
	Ranges       int    `json:"ranges"`
	RangesDone   int    `json:"ranges_done"`
	Error        string `json:"error,omitempty"`
}

// Progress reads the snapshot progress of the given tables from the control table.
func (e *Env) Progress(ctx context.Context, tables []string) ([]TableProgress, error) {
	out := make([]TableProgress, 0, len(tables))
	for _, source := range tables {
		st, _, err := e.Control.Table(ctx, source)
		if err != nil {
			return out, err
		}
		p := TableProgress{Table: source, State: st.State, RowsCopied: st.RowsCopied, RowsEstimate: st.RowsEstimate, Error: st.Error}
		if st.SplitEpoch == st.Epoch {
			p.Ranges = len(st.Ranges)
			if st.State == control.Done {
				p.RangesDone = p.Ranges
			} else if ranges, err := e.Control.Ranges(ctx, st); err == nil {
				p.RowsCopied, _, p.RangesDone = control.RangeProgress(ranges)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Resnapshot runs a re-snapshot of in.Tables in this process, the pieces the state
// machine runs: plan (planTables), every range of every table copied (tables at once,
// each with the copier's parallel ranges), then each table's finalize. A table whose
// copy fails is recorded failed, as the state machine's Catch does, and the others go
// on. report, when set, gets the tables' progress every interval while the copy runs.
func (e *Env) Resnapshot(ctx context.Context, in PlanInput, interval time.Duration, report func([]TableProgress)) ([]FinalizeOutput, error) {
	if len(in.Tables) == 0 {
		return nil, pg.Misconfiguredf("resnapshot: name the tables to re-snapshot")
	}
	plan, err := e.Plan(ctx, in)
	if err != nil {
		return nil, err
	}
	unit := map[string]RangeUnit{}
	var names []string
	for _, u := range plan.Ranges {
		if _, ok := unit[u.Table]; !ok {
			names = append(names, u.Table)
		}
		unit[u.Table] = u
	}
	stop := make(chan struct{})
	var reporter sync.WaitGroup
	if report != nil {
		reporter.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				if p, err := e.Progress(ctx, names); err == nil {
					report(p)
				}
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	results := make([]FinalizeOutput, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, source := range names {
		wg.Go(func() { results[i], errs[i] = e.resnapshotOne(ctx, unit[source]) })
	}
	wg.Wait()
	close(stop)
	reporter.Wait()
	if report != nil {
		if p, err := e.Progress(context.WithoutCancel(ctx), names); err == nil {
			report(p)
		}
	}
	return results, errors.Join(errs...)
}

// resnapshotOne copies one table of a run and finalizes it, or records its failure.
func (e *Env) resnapshotOne(ctx context.Context, u RangeUnit) (FinalizeOutput, error) {
	t, err := e.Describe(ctx, u.Table)
	if err != nil {
		return FinalizeOutput{Table: u.Table}, err
	}
	c := e.Copier()
	c.Epoch, c.RunID = u.Epoch, u.Run
	res, err := c.Run(ctx, t, time.Time{})
	if err != nil {
		if ctx.Err() != nil {
			return FinalizeOutput{Table: u.Table}, err
		}
		return e.Finalize(context.WithoutCancel(ctx), TableInput{Table: u.Table, Error: &StateError{Error: "SnapshotFailed", Cause: err.Error()}})
	}
	if res.Fenced {
		return FinalizeOutput{Table: u.Table, State: res.State,
			Error: "the re-snapshot was stopped by a TRUNCATE or a newer plan of the table"}, nil
	}
	return e.Finalize(ctx, TableInput{Table: u.Table})
}
