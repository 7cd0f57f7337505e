package pipeline

import (
	"context"
	"time"

	"tandem/shared/control"
	"tandem/shared/snapshot"
)

// TableInput is the input of the snapshot and finalize handlers: one Map item.
type TableInput struct {
	Table string `json:"table"`
}

// Snapshot copies chunks of one table until it is done or the Lambda deadline nears. Its
// output's Done field drives the state machine's loop; the cursor stays in the control
// table.
func (e *Env) Snapshot(ctx context.Context, in TableInput) (snapshot.Result, error) {
	t, err := e.Describe(ctx, in.Table)
	if err != nil {
		return snapshot.Result{Table: in.Table}, err
	}
	deadline, _ := ctx.Deadline()
	return e.Copier().Run(ctx, t, deadline)
}

// Copier returns the snapshot copier configured for this environment.
func (e *Env) Copier() *snapshot.Copier {
	return &snapshot.Copier{PG: e.PG, Control: e.Control, Writer: e.Writer, ChunkSize: e.Config.ChunkSize, Writers: e.Config.SnapshotWriters, Log: e.Log}
}

// FinalizeOutput reports a table's end state.
type FinalizeOutput struct {
	Table           string `json:"table"`
	State           string `json:"state"`
	ConsistentLSN   uint64 `json:"consistent_lsn"`
	Consistent      bool   `json:"consistent"`
	TombstonesSwept int    `json:"tombstones_swept"`
	StaleRowsSwept  int    `json:"stale_rows_swept"`
}

// Finalize runs after a table's snapshot is done: it sweeps snapshot rows fenced by a
// TRUNCATE and the tombstones no snapshot can race any more (DESIGN §2.5), and reports
// whether the table is consistent yet.
func (e *Env) Finalize(ctx context.Context, in TableInput) (FinalizeOutput, error) {
	out := FinalizeOutput{Table: in.Table}
	t, err := e.Describe(ctx, in.Table)
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
	if st.FenceLSN > 0 {
		if out.StaleRowsSwept, err = e.Writer.SweepStaleSnapshot(ctx, t, st.FenceLSN); err != nil {
			return out, err
		}
	}
	// Every tombstone committed before the streamer's applied LSN was committed before
	// now: no snapshot that is done can still write, and one started later reads rows
	// after those deletes.
	cp, err := e.Control.Checkpoint(ctx)
	if err != nil {
		return out, err
	}
	if out.TombstonesSwept, err = e.Writer.SweepTombstones(ctx, t, cp.AppliedLSN); err != nil {
		return out, err
	}
	out.Consistent = st.IsConsistent(cp.AppliedLSN)
	e.Log.Info("finalized", "table", in.Table, "consistent", out.Consistent, "tombstones_swept", out.TombstonesSwept,
		"stale_rows_swept", out.StaleRowsSwept, "at", time.Now().UTC())
	return out, nil
}
