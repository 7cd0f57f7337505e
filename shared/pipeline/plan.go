package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/pg"
	"tandem/shared/schema"
	"tandem/shared/target"
)

// PlanInput is the plan handler's input. Every field is optional.
type PlanInput struct {
	// Reset restarts every table's snapshot from its first key.
	Reset bool `json:"reset,omitempty"`
	// Tables, when set, re-snapshots only these tables (canonical names, package ident)
	// and leaves every other table as it is (see planTables); Where, with Tables, copies
	// again only the rows matching it (a filtered re-snapshot, a repair).
	Tables []string `json:"tables,omitempty"`
	Where  string   `json:"where,omitempty"`
}

// PlanOutput lists the tables to snapshot and their key ranges; the state machine maps
// over Ranges.
type PlanOutput struct {
	Slot     string `json:"slot"`
	StartLSN string `json:"start_lsn"`
	// MaxConcurrency is the Map state's MaxConcurrencyPath: ranges copied at once.
	MaxConcurrency int         `json:"max_concurrency"`
	Tables         []PlanTable `json:"tables"`
	Ranges         []RangeUnit `json:"ranges"`
}

// RangeUnit is one Map item: a key range of a table, the input of the snapshot handler
// (and, for the range elected to, of finalize).
type RangeUnit struct {
	Table string `json:"table"`
	Range int    `json:"range"`
	Of    int    `json:"of"`
	// Epoch is the table's epoch the range was planned in; Run names this plan's run.
	Epoch int64  `json:"epoch"`
	Run   string `json:"run"`
	// Label is what the console shows of the item: "public.orders 3/8".
	Label string `json:"label"`
}

// PlanTable is one Map item: the input of the snapshot and finalize handlers.
type PlanTable struct {
	Table        string `json:"table"`
	Target       string `json:"target"`
	RowsEstimate int64  `json:"rows_estimate"`
	State        string `json:"state"`
}

// Plan ensures the publication and the slot exist (slot first, README "The contract"), discovers and
// validates the tables, creates their target tables and marks their snapshots pending.
// It reconciles the configuration with the control table (README "Bad input and faults"): a table whose
// target changed is snapshotted again into the new target (the old one is left as it is),
// one no longer configured or published is marked removed. It records nothing for the
// tables when any table is refused.
func (e *Env) Plan(ctx context.Context, in PlanInput) (PlanOutput, error) {
	if len(in.Tables) > 0 || in.Where != "" {
		return e.planTables(ctx, in)
	}
	cfg := e.Config
	out := PlanOutput{Slot: cfg.Slot, MaxConcurrency: cfg.MaxConcurrency}
	if err := pg.CheckServer(ctx, e.PG); err != nil {
		return out, err
	}
	if err := e.CheckConfiguredTables(ctx, nil); err != nil {
		return out, err
	}
	// Before the publication is touched: a FOR ALL TABLES one would leave an UNLOGGED
	// table out without a word, and the table would simply never be planned.
	if err := pg.CheckPersistence(ctx, e.PG, cfg.SourceTables()); err != nil {
		return out, err
	}
	if err := e.Control.EnsureTable(ctx); err != nil {
		return out, err
	}
	if err := e.EnsurePublication(ctx); err != nil {
		return out, err
	}
	start, created, err := e.EnsureSlot(ctx, in.Reset)
	if err != nil {
		return out, err
	}
	// A reset that had to create a new slot cannot trust items the old stream wrote:
	// the new snapshots replace them, and finalize sweeps those of vanished rows.
	var floor uint64
	if in.Reset && created {
		floor = uint64(start)
	}
	out.StartLSN = start.String()
	run := newRunID()

	sources, err := pg.PublicationTables(ctx, e.PG, cfg.Publication)
	if err != nil {
		return out, err
	}
	// Every table is validated before any is recorded: a refused plan leaves no half state.
	type planned struct {
		t     *schema.Table
		drift string
	}
	var tables []planned
	var replicated []string
	var problems []error
	for _, id := range sources {
		if _, ok := cfg.TableFor(id); !ok {
			continue
		}
		source := id.String()
		replicated = append(replicated, source)
		t, err := e.DescribeTable(ctx, id)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		st, found, err := e.Control.Table(ctx, source)
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
		// After Drift, whose refusal of a changed key says more than a key schema mismatch.
		if _, err := target.CheckTarget(ctx, e.DB, t, *cfg.CreateTables); fault.IsFatal(err) {
			problems = append(problems, err)
			continue
		} else if err != nil {
			return out, err
		}
		tables = append(tables, planned{t, drift})
	}
	if len(problems) > 0 {
		return out, fmt.Errorf("plan: %d table(s) cannot be replicated: %w", len(problems), errors.Join(problems...))
	}
	if len(tables) == 0 {
		return out, fmt.Errorf("plan: publication %s contains none of the configured tables", cfg.Publication)
	}
	for _, p := range tables {
		t := p.t
		if *cfg.CreateTables {
			if err := target.EnsureTable(ctx, e.DB, t, e.Config.WarmThroughput()); err != nil {
				return out, err
			}
		}
		o := control.PlanOptions{Target: t.Target, KeyColumns: KeyNames(t), RowsEstimate: t.EstimatedRows, Reset: in.Reset, FloorLSN: floor}
		if p.drift != "" {
			// The new snapshot replaces what the stream wrote before the slot's confirmed
			// position (stale items of a target used before); every change after it is
			// streamed into the configured target, by this streamer or after a restart.
			o.Reset, o.FloorLSN = true, max(floor, uint64(start))
			e.Log.Warn("configuration changed: snapshotting the table again", "table", t.Source(), "change", p.drift)
		}
		st, err := e.Control.Plan(ctx, t.Source(), o)
		if err != nil {
			return out, err
		}
		if st.Shape == nil || p.drift != "" {
			if err := e.Control.SetShape(ctx, t.Source(), t.Shape()); err != nil {
				return out, err
			}
		}
		if st.Runner == "" && (st.State == control.Pending || st.State == control.Running) {
			if st, err = e.Copier().EnsureSplit(ctx, t, st); err != nil {
				return out, err
			}
		}
		out.Tables = append(out.Tables, PlanTable{Table: t.Source(), Target: t.Target, RowsEstimate: st.RowsEstimate, State: st.State})
		out.Ranges = append(out.Ranges, units(st, run)...)
	}
	recorded, err := e.Control.Tables(ctx)
	if err != nil {
		return out, err
	}
	if err := e.MarkRemoved(ctx, recorded, replicated); err != nil {
		return out, err
	}
	e.Log.Info("plan ready", "slot", cfg.Slot, "start_lsn", out.StartLSN, "tables", len(out.Tables))
	return out, nil
}

// EnsureSlot makes sure the slot exists, creating it and recording its start LSN A
// before any snapshot reads (README "The contract"). A slot Tandem recorded that is gone,
// invalidated or renamed in the configuration means changes may be missing: that is an
// error unless reset, which starts over with a new slot (and plan re-snapshots every
// table).
func (e *Env) EnsureSlot(ctx context.Context, reset bool) (lsn pglogrepl.LSN, created bool, err error) {
	name := e.Config.Slot
	rec, recorded, err := e.Control.Slot(ctx)
	if err != nil {
		return 0, false, err
	}
	if recorded && rec.Slot != name && !reset {
		return 0, false, pg.Misconfiguredf("the control table %s belongs to replication slot %s, but slot %s is configured: changes are not continuous across slots; run plan with {\"reset\": true} to snapshot every table again", e.Config.ControlTable, rec.Slot, name)
	}
	slot, err := pg.ReadSlot(ctx, e.PG, name)
	switch {
	case err == nil && (!reset || rec.Slot == name):
		if !recorded {
			return slot.ConfirmedFlushLSN, false, e.Control.RecordSlot(ctx, name, uint64(slot.ConfirmedFlushLSN))
		}
		return slot.ConfirmedFlushLSN, false, nil
	case !reset && errors.Is(err, pg.ErrSlotMissing) && recorded:
		return 0, false, pg.Misconfiguredf("replication slot %s, created by Tandem at LSN %s, no longer exists (dropped or lost): changes since then are lost; run plan with {\"reset\": true} to snapshot every table again", name, pglogrepl.LSN(rec.StartLSN))
	case !reset && !errors.Is(err, pg.ErrSlotMissing):
		return 0, false, err
	case reset:
		if err := pg.DropSlot(ctx, e.PG, name); err != nil {
			return 0, false, err
		}
	}
	start, err := pg.CreateSlot(ctx, e.PG, name)
	if err != nil {
		return 0, false, err
	}
	e.Log.Info("replication slot created", "slot", name, "start_lsn", start.String())
	return start, true, e.Control.RecordSlot(ctx, name, uint64(start))
}

// units are the Map items of one table: one per range of its split, or a single one for a
// table that is done or another runner's (it finalizes, or waits for that runner).
func units(st control.TableState, run string) []RangeUnit {
	n := len(st.Ranges)
	if st.SplitEpoch != st.Epoch || st.State == control.Done || st.Runner != "" || n == 0 {
		n = 1
	}
	out := make([]RangeUnit, n)
	for i := range out {
		out[i] = RangeUnit{Table: st.Source, Range: i, Of: n, Epoch: st.Epoch, Run: run, Label: fmt.Sprintf("%s %d/%d", st.Source, i+1, n)}
	}
	return out
}

// newRunID names a plan's run: the claim of a table's finalize is per run.
func newRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
