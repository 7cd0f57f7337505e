package pipeline

import (
	"context"
	"encoding/json"

	"tandem/shared/control"
	"tandem/shared/metrics"
	"tandem/shared/snapshot"
	"tandem/shared/target"
)

// TableInput is the input of the snapshot and finalize handlers: one Map item.
type TableInput struct {
	Table string `json:"table"`
	// Range, Of, Epoch and Run say which key range of the table to copy (a RangeUnit).
	// Without Of, the snapshot handler copies the whole table.
	Range int    `json:"range,omitempty"`
	Of    int    `json:"of,omitempty"`
	Epoch int64  `json:"epoch,omitempty"`
	Run   string `json:"run,omitempty"`
	// Error is set by the state machine's Catch when the table's snapshot failed after
	// its retries: finalize then records the failure instead of sweeping.
	Error *StateError `json:"error,omitempty"`
}

// StateError is what a Step Functions Catch puts in its ResultPath.
type StateError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}

// Snapshot copies chunks of one key range of a table (or, without in.Of, of the whole
// table) until it is done or the Lambda deadline nears. Its output's Done and Finalize
// fields drive the state machine's loop; the cursors stay in the control table.
func (e *Env) Snapshot(ctx context.Context, in TableInput) (snapshot.Result, error) {
	t, err := e.Describe(ctx, in.Table)
	if err != nil {
		return snapshot.Result{Table: in.Table, Range: in.Range}, err
	}
	deadline, _ := ctx.Deadline()
	c := e.Copier()
	var res snapshot.Result
	if in.Of == 0 {
		res, err = c.Run(ctx, t, deadline)
	} else {
		c.Epoch, c.RunID = in.Epoch, in.Run
		res, err = c.RunRange(ctx, t, in.Range, deadline)
	}
	if err == nil && e.Metrics != nil {
		done := 0.0
		if res.Done {
			done = 1
		}
		_ = metrics.Emit(e.Metrics, map[string]string{"Table": in.Table},
			metrics.Metric{Name: "SnapshotRowsCopied", Unit: "Count", Value: float64(res.RowsCopied)},
			metrics.Metric{Name: "SnapshotChunks", Unit: "Count", Value: float64(res.Chunks)},
			metrics.Metric{Name: "SnapshotDone", Unit: "Count", Value: done})
	}
	return res, err
}

// Copier returns the snapshot copier configured for this environment.
func (e *Env) Copier() *snapshot.Copier {
	cfg := e.Config
	return &snapshot.Copier{PG: e.PG, Control: e.Control, Writer: e.Writer, ChunkSize: cfg.ChunkSize, Writers: cfg.SnapshotWriters,
		RangeRows: int64(cfg.RangeRows), MaxRanges: cfg.MaxRanges, Parallel: cfg.MaxConcurrency, Log: e.Log}
}

// FinalizeOutput reports a table's end state.
type FinalizeOutput struct {
	Table         string `json:"table"`
	State         string `json:"state"`
	ConsistentLSN uint64 `json:"consistent_lsn"`
	Consistent    bool   `json:"consistent"`
	// Swept counts the items removed: rows fenced by a TRUNCATE, orphans of a
	// re-snapshot and tombstones.
	Swept int    `json:"swept"`
	Error string `json:"error,omitempty"`
}

// Finalize runs after a table's snapshot is done. It sweeps what no snapshot can rewrite
// any more: snapshot rows fenced by a TRUNCATE, items of rows that vanished while a
// re-snapshot ran (a reset or a schema change), and tombstones no snapshot can race
// (DESIGN §2.5). It reports whether the table is consistent yet.
func (e *Env) Finalize(ctx context.Context, in TableInput) (FinalizeOutput, error) {
	out := FinalizeOutput{Table: in.Table}
	if in.Error != nil {
		return e.fail(ctx, in)
	}
	t, err := e.Describe(ctx, in.Table)
	if err != nil {
		return out, err
	}
	// The checkpoint is read before the state: every tombstone at or before its applied
	// LSN was committed before a snapshot that starts after the state read could read.
	cp, err := e.Control.Checkpoint(ctx)
	if err != nil {
		return out, err
	}
	st, _, err := e.Control.Table(ctx, in.Table)
	if err != nil {
		return out, err
	}
	out.State, out.ConsistentLSN = st.State, st.ConsistentLSN
	if st.State != control.Done {
		return out, nil
	}
	sweep := target.Sweep{FenceLSN: st.FenceLSN, Epoch: st.Epoch, Floor: st.FloorLSN,
		Orphans: st.Epoch > 1 || st.FloorLSN > 0, TombstonesUpTo: cp.AppliedLSN}
	if out.Swept, err = e.Writer.Sweep(ctx, t, sweep); err != nil {
		return out, err
	}
	if err := e.Control.MarkFinalized(ctx, in.Table, st.Epoch); err != nil {
		return out, err
	}
	out.Consistent = st.IsConsistent(cp.AppliedLSN)
	e.Log.Info("finalized", "table", in.Table, "consistent", out.Consistent, "swept", out.Swept)
	return out, nil
}

// fail records a table's failure reported by the state machine, so the control table
// and the status show it while the other tables go on.
func (e *Env) fail(ctx context.Context, in TableInput) (FinalizeOutput, error) {
	st, _, err := e.Control.Table(ctx, in.Table)
	if err != nil {
		return FinalizeOutput{Table: in.Table}, err
	}
	reason := in.Error.Error + ": " + causeMessage(in.Error.Cause)
	if err := e.Control.FailSnapshot(ctx, in.Table, st.Epoch, reason); err != nil {
		return FinalizeOutput{Table: in.Table}, err
	}
	e.Log.Error("table failed", "table", in.Table, "reason", reason)
	return FinalizeOutput{Table: in.Table, State: control.Failed, Error: reason}, nil
}

// causeMessage extracts errorMessage from a Lambda error cause ({"errorMessage": ...}).
func causeMessage(cause string) string {
	var c struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal([]byte(cause), &c) == nil && c.ErrorMessage != "" {
		return c.ErrorMessage
	}
	return cause
}
