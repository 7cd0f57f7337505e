package pipeline

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pglogrepl"

	"tandem/shared/control"
	"tandem/shared/ident"
	"tandem/shared/pg"
)

// StatusOutput is what an operator sees (DESIGN §4).
type StatusOutput struct {
	Streamer StreamerStatus `json:"streamer"`
	Tables   []TableStatus  `json:"tables"`
	// FailedTables lists the tables whose snapshot failed (the state machine ends failed
	// when there is any).
	FailedTables []string `json:"failed_tables"`
	// DegradedTables lists the tables whose target lacks rows or changes that were
	// dead-lettered (of this run's tables, when the run's results are given): not
	// consistent until snapshotted again.
	DegradedTables []string `json:"degraded_tables"`
	// DeadLetters counts the changes and rows Tandem could not apply (the control table's
	// "deadletter#" items), from the stream and the snapshots.
	DeadLetters int64 `json:"dead_letters"`
}

// StreamerStatus is the streamer's last checkpoint, plus the slot as PostgreSQL sees it.
type StreamerStatus struct {
	Owner         string  `json:"owner"`
	AppliedLSN    string  `json:"applied_lsn"`
	ConfirmedLSN  string  `json:"confirmed_lsn"`
	LagBytes      uint64  `json:"lag_bytes"`
	LagSeconds    float64 `json:"lag_seconds"`
	RetainedWAL   uint64  `json:"retained_wal_bytes"`
	ChangesPerSec float64 `json:"changes_per_second"`
	Changes       int64   `json:"changes_applied"`
	UpdatedAt     string  `json:"updated_at"`
	// SlotActive reports whether a process is consuming the slot right now.
	SlotActive bool `json:"slot_active"`
}

// TableStatus is one table's snapshot progress and consistency.
type TableStatus struct {
	Table        string `json:"table"`
	Target       string `json:"target"`
	State        string `json:"state"`
	RowsCopied   int64  `json:"rows_copied"`
	RowsEstimate int64  `json:"rows_estimate"`
	Chunks       int64  `json:"chunks"`
	// Ranges is how many key ranges the snapshot is split into, RangesDone how many of
	// them are copied.
	Ranges        int    `json:"ranges,omitempty"`
	RangesDone    int    `json:"ranges_done,omitempty"`
	ConsistentLSN string `json:"consistent_lsn,omitempty"`
	Consistent    bool   `json:"consistent"`
	Error         string `json:"error,omitempty"`
	// Degraded says why the target lacks a change (a dead letter): not consistent until
	// the table is snapshotted again.
	Degraded    string `json:"degraded,omitempty"`
	DeadLetters int    `json:"dead_letters,omitempty"`
	// PreviousTargets are targets the table was replicated into before its target changed
	// in the configuration: left as they were, no longer updated.
	PreviousTargets []string `json:"previous_targets,omitempty"`
}

// StatusInput optionally carries a state machine run's per-table results (the Map's
// output): failed_tables then lists that run's failures rather than every failed table.
type StatusInput struct {
	Results []struct {
		Table string `json:"table"`
		State string `json:"state"`
	} `json:"results,omitempty"`
}

// Status reads the control table and the slot.
func (e *Env) Status(ctx context.Context, in StatusInput) (StatusOutput, error) {
	out := StatusOutput{FailedTables: []string{}, DegradedTables: []string{}}
	inRun := map[string]bool{}
	for _, r := range in.Results {
		inRun[r.Table] = true
	}
	cp, err := e.Control.Checkpoint(ctx)
	if err != nil {
		return out, err
	}
	out.Streamer = StreamerStatus{
		Owner: cp.Owner, AppliedLSN: pglogrepl.LSN(cp.AppliedLSN).String(), ConfirmedLSN: pglogrepl.LSN(cp.ConfirmedLSN).String(),
		LagBytes: cp.LagBytes, LagSeconds: cp.LagSeconds, RetainedWAL: cp.RetainedBytes, ChangesPerSec: cp.ChangesPerSec,
		Changes: cp.Changes, UpdatedAt: cp.UpdatedAt,
	}
	letters, err := e.Control.DeadLetters(ctx, "")
	if err != nil {
		return out, err
	}
	perTable := map[string]int{}
	for _, d := range letters {
		perTable[d.Table]++
	}
	out.DeadLetters = int64(len(letters))
	if slot, err := pg.ReadSlot(ctx, e.PG, e.Config.Slot); err == nil {
		out.Streamer.SlotActive = slot.Active
		out.Streamer.RetainedWAL = slot.RetainedBytes()
		if slot.CurrentLSN > pglogrepl.LSN(cp.AppliedLSN) {
			out.Streamer.LagBytes = uint64(slot.CurrentLSN) - cp.AppliedLSN
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, cp.UpdatedAt); err == nil && time.Since(t) > time.Minute {
		// A checkpoint this old means no streamer is running: its lag is growing.
		out.Streamer.LagSeconds = max(out.Streamer.LagSeconds, time.Since(t).Seconds())
	}
	tables, err := e.Control.Tables(ctx)
	if err != nil {
		return out, err
	}
	for _, t := range tables {
		ts := TableStatus{Table: t.Source, Target: t.Target, State: t.State, RowsCopied: t.RowsCopied, RowsEstimate: t.RowsEstimate,
			Chunks: t.Chunks, Consistent: t.IsConsistent(cp.AppliedLSN), Error: t.Error,
			Degraded: t.Degraded, DeadLetters: perTable[t.Source], PreviousTargets: t.RetiredTargets}
		if t.State == control.Done {
			ts.ConsistentLSN = pglogrepl.LSN(t.ConsistentLSN).String()
		}
		if t.SplitEpoch == t.Epoch {
			ts.Ranges = len(t.Ranges)
			if t.State == control.Done {
				ts.RangesDone = ts.Ranges
			} else if ranges, err := e.Control.Ranges(ctx, t); err == nil {
				ts.RowsCopied, ts.Chunks, ts.RangesDone = control.RangeProgress(ranges)
			}
		}
		e.reconciled(ctx, t, &ts)
		out.Tables = append(out.Tables, ts)
		if t.State == control.Failed && in.Results == nil {
			out.FailedTables = append(out.FailedTables, t.Source)
		}
		if t.Degraded != "" && (in.Results == nil || inRun[t.Source]) {
			out.DegradedTables = append(out.DegradedTables, t.Source)
		}
	}
	for _, r := range in.Results {
		if r.State == control.Failed && !slices.Contains(out.FailedTables, r.Table) {
			out.FailedTables = append(out.FailedTables, r.Table)
		}
	}
	return out, nil
}

// reconciled makes a table's status reflect a configuration that plan has not reconciled
// yet: a table no longer configured is removed, and a changed target or key is not
// consistent, since what the configuration names was not filled (DESIGN §2.12).
func (e *Env) reconciled(ctx context.Context, st control.TableState, ts *TableStatus) {
	if st.State == control.Removed {
		return
	}
	id, err := ident.Parse(st.Source)
	if err != nil {
		return
	}
	tc, ok := e.Config.TableFor(id)
	if !ok {
		ts.State, ts.Consistent = control.Removed, false
		ts.Error = "removed from the configured tables: its changes are no longer applied"
		return
	}
	if tc.Target != st.Target {
		ts.Consistent = false
		ts.Error = fmt.Sprintf("the configuration replicates it into %s, which is not filled yet: run plan", tc.Target)
		return
	}
	if t, err := e.DescribeTable(ctx, id); err == nil {
		if _, err := Drift(st, t); err != nil {
			ts.Consistent = false
			ts.Error = err.Error()
		}
	}
}
