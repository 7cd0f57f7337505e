package pipeline

import (
	"context"
	"encoding/json"

	"tandem/shared/control"
	"tandem/shared/metrics"
	"tandem/shared/snapshot"
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
		RangeRows: int64(cfg.RangeRows), MaxRanges: cfg.MaxRanges, Parallel: cfg.MaxConcurrency, Log: e.Log, OnChunk: e.OnChunk}
}

// FinalizeOutput reports a table's end state.
type FinalizeOutput struct {
	Table string `json:"table"`
	State string `json:"state"`
	// ConsistentLSN is B(T) in PostgreSQL's form (0/1D84268), empty before it is read.
	ConsistentLSN string `json:"consistent_lsn,omitempty"`
	Consistent    bool   `json:"consistent"`
	// Swept counts the items removed: rows fenced by a TRUNCATE, orphans of a
	// re-snapshot and tombstones.
	Swept int    `json:"swept"`
	Error string `json:"error,omitempty"`
}

// Finalize runs after a table's snapshot is done: it sweeps, in parallel-scan segments
// all worked on here, what no snapshot can rewrite any more (FinalizeSegments) and
// reports whether the table is consistent yet. The state machine runs the same steps
// with one invocation per segment (FinalizeStep). With Error set it records the
// failure the state machine caught instead.
func (e *Env) Finalize(ctx context.Context, in TableInput) (FinalizeOutput, error) {
	if in.Error != nil {
		return e.fail(ctx, in)
	}
	return e.finalizeHere(ctx, in.Table)
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
