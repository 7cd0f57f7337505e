package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"

	"tandem/shared/control"
	"tandem/shared/ddb"
	"tandem/shared/target"
)

// Steps of a finalize split in parallel-scan segments (FinalizeInput.Step); the state
// machine runs them as Finalize, a Map over the segments, then Finalized.
const (
	// StepSegments starts (or resumes) the table's sweep and lists its segments.
	StepSegments = "segments"
	// StepSweep sweeps one segment until it is done or the invocation's deadline nears.
	StepSweep = "sweep"
	// StepFinish records the table finalized once every segment is done.
	StepFinish = "finish"
)

// FinalizeInput is the finalize function's input: TableInput's fields (a Step left empty
// finalizes the whole table in this one call, or records the failure in Error), and for
// StepSweep the segment.
type FinalizeInput struct {
	Table string      `json:"table"`
	Error *StateError `json:"error,omitempty"`
	Step  string      `json:"step,omitempty"`
	// Segment, Of and Generation name a segment of the sweep generation StepSegments started.
	Segment    int    `json:"segment,omitempty"`
	Of         int    `json:"of,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
}

// SegmentsOutput is StepSegments' output: the Map's items (empty when the table's
// snapshot is not done: nothing to sweep, StepFinish reports its state).
type SegmentsOutput struct {
	Table    string          `json:"table"`
	State    string          `json:"state"`
	Segments []FinalizeInput `json:"segments"`
}

// SweepOutput is StepSweep's output; Done ends the segment's loop.
type SweepOutput struct {
	Table   string `json:"table"`
	Segment int    `json:"segment"`
	Done    bool   `json:"done"`
	Swept   int    `json:"swept"`
}

// FinalizeStep is the finalize function: one step of a segmented finalize, or (no step)
// Finalize.
func (e *Env) FinalizeStep(ctx context.Context, in FinalizeInput) (any, error) {
	switch in.Step {
	case "":
		return e.Finalize(ctx, TableInput{Table: in.Table, Error: in.Error})
	case StepSegments:
		return e.FinalizeSegments(ctx, in.Table)
	case StepSweep:
		deadline, _ := ctx.Deadline()
		return e.SweepSegment(ctx, in, deadline)
	case StepFinish:
		return e.FinishFinalize(ctx, in.Table)
	}
	return nil, &PermanentError{Err: fmt.Errorf("finalize: unknown step %q", in.Step)}
}

// FinalizeSegments starts the table's sweep, or resumes the unfinished one of its epoch,
// and lists its segments. It sweeps what no snapshot can rewrite any more: snapshot rows
// fenced by a TRUNCATE, items of rows that vanished while a re-snapshot ran (a reset or
// a schema change), and tombstones no snapshot can race (README "The contract").
func (e *Env) FinalizeSegments(ctx context.Context, table string) (SegmentsOutput, error) {
	out := SegmentsOutput{Table: table, Segments: []FinalizeInput{}}
	t, err := e.Describe(ctx, table)
	if err != nil {
		return out, err
	}
	cp, st, err := e.checkpointThenState(ctx, table)
	if err != nil {
		return out, err
	}
	out.State = st.State
	if st.State != control.Done {
		return out, nil
	}
	sweep, err := json.Marshal(target.Sweep{FenceLSN: st.FenceLSN, Epoch: st.Epoch, Floor: st.FloorLSN,
		Orphans: (st.Epoch > 1 || st.FloorLSN > 0) && st.Filter == "", TombstonesUpTo: cp.AppliedLSN})
	if err != nil {
		return out, err
	}
	segments, err := e.Writer.Segments(ctx, t.Target, e.Config.SweepSegmentItems, e.Config.MaxSweepSegments)
	if err != nil {
		return out, err
	}
	job, err := e.Control.StartSweep(ctx, control.SweepJob{Source: table, Epoch: st.Epoch, Segments: segments, Sweep: string(sweep)})
	if err != nil {
		return out, err
	}
	for n := range job.Segments {
		out.Segments = append(out.Segments, FinalizeInput{Table: table, Step: StepSweep, Segment: n, Of: job.Segments, Generation: job.Generation})
	}
	return out, nil
}

// SweepSegment sweeps one segment of a sweep from where it stopped, until it is done or
// the deadline nears (zero: none), its progress stored after each page.
func (e *Env) SweepSegment(ctx context.Context, in FinalizeInput, deadline time.Time) (SweepOutput, error) {
	out := SweepOutput{Table: in.Table, Segment: in.Segment}
	job, found, err := e.Control.Sweep(ctx, in.Table)
	if err != nil {
		return out, err
	}
	if !found || job.Generation != in.Generation {
		// Superseded by a newer sweep (the table was finalized again meanwhile): that one
		// covers this segment.
		out.Done = true
		return out, nil
	}
	var s target.Sweep
	if err := json.Unmarshal([]byte(job.Sweep), &s); err != nil {
		return out, fmt.Errorf("finalize: decoding the sweep of %s: %w", in.Table, err)
	}
	t, err := e.Describe(ctx, in.Table)
	if err != nil {
		return out, err
	}
	prog, err := e.Control.Segment(ctx, control.JobSweep, in.Table, job.Generation, in.Segment, job.Segments)
	if err != nil || prog.Done {
		out.Done = prog.Done
		return out, err
	}
	next, n, err := e.Writer.SweepSegment(ctx, t, s, target.Segment{N: in.Segment, Of: job.Segments}, ddb.DecodeKey(prog.Next), deadline,
		func(ctx context.Context, pg target.Page) error {
			var err error
			if prog.Next, err = ddb.EncodeKey(pg.Next); err != nil {
				return err
			}
			prog.Done, prog.Removed = pg.Next == nil, prog.Removed+int64(pg.Removed)
			return e.Control.SaveSegment(ctx, prog)
		})
	out.Swept, out.Done = n, err == nil && next == nil
	return out, err
}

// FinishFinalize records the table finalized once every segment of its sweep is done,
// and reports whether it is consistent yet.
func (e *Env) FinishFinalize(ctx context.Context, table string) (FinalizeOutput, error) {
	out := FinalizeOutput{Table: table}
	cp, st, err := e.checkpointThenState(ctx, table)
	if err != nil {
		return out, err
	}
	out.State = st.State
	if st.ConsistentLSN > 0 {
		out.ConsistentLSN = pglogrepl.LSN(st.ConsistentLSN).String()
	}
	if st.State != control.Done {
		return out, nil
	}
	job, found, err := e.Control.Sweep(ctx, table)
	if err != nil {
		return out, err
	}
	if !found || job.Epoch != st.Epoch {
		// Truncated or re-planned since the sweep started: the next run finalizes it.
		return out, nil
	}
	if !job.Finished {
		segs, err := e.Control.Segments(ctx, control.JobSweep, table, job.Generation, job.Segments)
		if err != nil {
			return out, err
		}
		var removed int64
		for _, p := range segs {
			if !p.Done {
				return out, fmt.Errorf("finalize: segment %d of %d of %s's sweep is not done", p.Segment, p.Of, table)
			}
			removed += p.Removed
		}
		if err := e.Control.FinishSweep(ctx, table, job.Generation, removed); err != nil {
			return out, err
		}
		_ = e.Control.DeleteSegments(ctx, control.JobSweep, table, job.Generation, job.Segments)
		job.Removed = removed
	}
	if err := e.Control.MarkFinalized(ctx, table, st.Epoch); err != nil {
		return out, err
	}
	out.Swept = int(job.Removed)
	out.Consistent = st.IsConsistent(cp.AppliedLSN)
	e.Log.Info("finalized", "table", table, "consistent", out.Consistent, "swept", out.Swept, "segments", job.Segments)
	return out, nil
}

// finalizeHere runs a segmented finalize in this process, every segment at once.
func (e *Env) finalizeHere(ctx context.Context, table string) (FinalizeOutput, error) {
	plan, err := e.FinalizeSegments(ctx, table)
	if err != nil {
		return FinalizeOutput{Table: table}, err
	}
	errs := make([]error, len(plan.Segments))
	var wg sync.WaitGroup
	for i, seg := range plan.Segments {
		wg.Go(func() { _, errs[i] = e.SweepSegment(ctx, seg, time.Time{}) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return FinalizeOutput{Table: table}, err
		}
	}
	return e.FinishFinalize(ctx, table)
}

// checkpointThenState reads the streamer's checkpoint, then the table's state, in that
// order: every tombstone at or before the checkpoint's applied LSN was committed before a
// snapshot that starts after the state read could read, so those tombstones may go.
func (e *Env) checkpointThenState(ctx context.Context, table string) (control.Checkpoint, control.TableState, error) {
	cp, err := e.Control.Checkpoint(ctx)
	if err != nil {
		return cp, control.TableState{}, err
	}
	st, _, err := e.Control.Table(ctx, table)
	return cp, st, err
}
