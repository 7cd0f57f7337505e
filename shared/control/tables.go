package control

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/ddb"
	"tandem/shared/fault"
	"tandem/shared/pg"
)

const tablePrefix = "table#"

// TableState is one replicated table's snapshot state (README "Reading its status").
type TableState struct {
	ID     string `dynamodbav:"id"`
	Source string `dynamodbav:"source"`
	Target string `dynamodbav:"target"`
	State  string `dynamodbav:"state"`
	// Epoch changes whenever a running snapshot must stop (truncate, reset).
	Epoch int64 `dynamodbav:"epoch"`
	// Ranges are the key ranges the snapshot of SplitEpoch reads in parallel, each with its
	// own progress (RangeState); one range without bounds for a small table.
	Ranges     []pg.Range `dynamodbav:"ranges,omitempty"`
	SplitEpoch int64      `dynamodbav:"split_epoch,omitempty"`
	// RowsCopied and Chunks total the ranges' once the snapshot is done; while it runs,
	// the ranges hold them (RangeProgress).
	RowsCopied   int64 `dynamodbav:"rows_copied"`
	RowsEstimate int64 `dynamodbav:"rows_estimate"`
	Chunks       int64 `dynamodbav:"chunks"`
	// FinalizeBy is the worker ("<run>/<range>") elected to finalize FinalizeEpoch.
	FinalizeBy    string `dynamodbav:"finalize_by,omitempty"`
	FinalizeEpoch int64  `dynamodbav:"finalize_epoch,omitempty"`
	// ConsistentLSN is B(T), read after the last chunk (README "The contract").
	ConsistentLSN uint64 `dynamodbav:"consistent_lsn,omitempty"`
	// Consistent is set by the streamer once it applied past ConsistentLSN.
	Consistent bool `dynamodbav:"consistent"`
	// FenceLSN is the LSN of the last TRUNCATE: snapshot rows read before it are stale.
	FenceLSN uint64 `dynamodbav:"fence_lsn,omitempty"`
	// TruncatingLSN is the fence of a TRUNCATE whose removal of older items still runs in
	// the background, in TruncateSegments parallel-scan segments (progress:
	// SegmentProgress of JobTruncate): the table is not consistent until it is done.
	TruncatingLSN    uint64 `dynamodbav:"truncating_lsn,omitempty"`
	TruncatingSeq    uint32 `dynamodbav:"truncating_seq,omitempty"`
	TruncateSegments int    `dynamodbav:"truncate_segments,omitempty"`
	// FloorLSN is set when a schema change required a new snapshot: stream items
	// committed before it describe the old shape and may be replaced by it (README "Bad input and faults").
	FloorLSN uint64 `dynamodbav:"floor_lsn,omitempty"`
	// Runner is "streamer" when the streamer runs this snapshot itself (a table added to
	// the publication, a schema change) and must resume it after a restart.
	Runner string `dynamodbav:"runner,omitempty"`
	// FinalizedEpoch is the epoch whose snapshot was finalized (swept).
	FinalizedEpoch int64 `dynamodbav:"finalized_epoch,omitempty"`
	// KeyColumns are the item key's columns the snapshot was taken with; with Target,
	// what plan and the streamer compare the configuration with (README "Bad input and faults").
	KeyColumns []string `dynamodbav:"key_columns,omitempty"`
	// RetiredTargets are targets this table was replicated into before its target changed:
	// left as they were, no longer updated.
	RetiredTargets []string `dynamodbav:"retired_targets,omitempty"`
	// Shape is the table's columns ("name:type-oid") as last seen, to detect schema changes.
	Shape []string `dynamodbav:"shape,omitempty"`
	// Degraded says why the target lacks a change (a dead letter): the table is not
	// consistent until snapshotted again.
	Degraded string `dynamodbav:"degraded,omitempty"`
	// Filter, set for a filtered re-snapshot (a repair), is the SQL boolean expression
	// the epoch's chunks add to their WHERE: only matching rows are copied again, and
	// its finalize sweeps no orphans (rows outside the filter were not rewritten).
	Filter     string `dynamodbav:"filter,omitempty"`
	Error      string `dynamodbav:"error,omitempty"`
	StartedAt  string `dynamodbav:"started_at,omitempty"`
	FinishedAt string `dynamodbav:"finished_at,omitempty"`
	UpdatedAt  string `dynamodbav:"updated_at"`
}

// IsConsistent is README "The contract"'s rule, for a streamer that has applied up to applied.
func (t TableState) IsConsistent(applied uint64) bool {
	return t.State == Done && t.Degraded == "" && t.TruncatingLSN == 0 && t.ConsistentLSN <= applied
}

func tableID(source string) string { return tablePrefix + source }

var (
	nameState = ddb.Name("state")
	nameEpoch = ddb.Name("epoch")
)

// Table reads one table's state; found is false when the table was never planned.
func (s *Store) Table(ctx context.Context, source string) (t TableState, found bool, err error) {
	found, err = s.get(ctx, tableID(source), &t)
	return t, found, err
}

// Tables lists every planned table.
func (s *Store) Tables(ctx context.Context) ([]TableState, error) {
	var out []TableState
	err := s.scanPrefix(ctx, tablePrefix, func(item map[string]types.AttributeValue) error {
		var t TableState
		if err := attributevalue.UnmarshalMap(item, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("control: listing tables: %w", err)
	}
	return out, nil
}

// PlanOptions says how to (re)plan a table.
type PlanOptions struct {
	Target string
	// KeyColumns are the item key's columns.
	KeyColumns   []string
	RowsEstimate int64
	// Reset restarts the snapshot from the first key and fences a running one.
	Reset bool
	// FloorLSN, with Reset, lets the new snapshot replace stream items committed before it.
	FloorLSN uint64
	// Runner records who runs the snapshot ("" for the state machine, RunnerStreamer).
	Runner string
	// Filter, with Reset, makes the new epoch a filtered re-snapshot (TableState.Filter):
	// the table stays degraded, since rows outside the filter are not copied again.
	Filter string
}

// RunnerStreamer marks snapshots the streamer runs in-process.
const RunnerStreamer = "streamer"

// Plan registers a table for snapshot. A new table, a failed or removed one, and (with
// Reset) any table become pending. A table whose target changes keeps its old target in
// RetiredTargets. It returns the resulting state.
func (s *Store) Plan(ctx context.Context, source string, o PlanOptions) (TableState, error) {
	for {
		cur, found, err := s.Table(ctx, source)
		if err != nil {
			return cur, err
		}
		now := s.now()
		if !found {
			t := TableState{ID: tableID(source), Source: source, Target: o.Target, KeyColumns: o.KeyColumns, State: Pending, Epoch: 1,
				RowsEstimate: o.RowsEstimate, FloorLSN: o.FloorLSN, Runner: o.Runner, UpdatedAt: now}
			ok, err := s.put(ctx, t, condPtr(expression.AttributeNotExists(ddb.Name("id"))))
			if err != nil || ok {
				return t, err
			}
			continue
		}
		if !o.Reset && cur.State != Failed && cur.State != Removed {
			if cur.KeyColumns == nil && len(o.KeyColumns) > 0 {
				// Recorded before keys were: the key it was snapshotted with is the current one.
				upd := expression.Set(ddb.Name("key_columns"), expression.Value(o.KeyColumns))
				if _, err := s.update(ctx, tableID(source), upd, condPtr(expression.AttributeNotExists(ddb.Name("key_columns")))); err != nil {
					return cur, err
				}
				cur.KeyColumns = o.KeyColumns
			}
			return cur, nil
		}
		upd := expression.Set(nameState, expression.Value(Pending)).
			Set(ddb.Name("target"), expression.Value(o.Target)).
			Set(ddb.Name("rows_estimate"), expression.Value(o.RowsEstimate)).
			Set(ddb.Name("updated_at"), expression.Value(now)).
			Remove(ddb.Name("error"))
		if len(o.KeyColumns) > 0 {
			upd = upd.Set(ddb.Name("key_columns"), expression.Value(o.KeyColumns))
		}
		if retired := retire(cur, o.Target); !slices.Equal(retired, cur.RetiredTargets) {
			if len(retired) > 0 {
				upd = upd.Set(ddb.Name("retired_targets"), expression.Value(retired))
			} else {
				upd = upd.Remove(ddb.Name("retired_targets"))
			}
		}
		if o.Runner != "" {
			upd = upd.Set(ddb.Name("runner"), expression.Value(o.Runner))
		} else {
			upd = upd.Remove(ddb.Name("runner"))
		}
		if o.Reset {
			upd = upd.Set(nameEpoch, expression.Value(cur.Epoch+1)).
				Set(ddb.Name("rows_copied"), expression.Value(0)).
				Set(ddb.Name("chunks"), expression.Value(0)).
				Set(ddb.Name("consistent"), expression.Value(false)).
				Remove(ddb.Name("cursor")).Remove(ddb.Name("consistent_lsn")).
				Remove(ddb.Name("started_at")).Remove(ddb.Name("finished_at"))
			if o.Filter != "" {
				upd = upd.Set(ddb.Name("filter"), expression.Value(o.Filter))
			} else {
				upd = upd.Remove(ddb.Name("filter")).Remove(ddb.Name("degraded"))
			}
			if o.FloorLSN > 0 {
				upd = upd.Set(ddb.Name("floor_lsn"), expression.Value(o.FloorLSN))
			}
		}
		ok, err := s.update(ctx, tableID(source), upd, condPtr(nameEpoch.Equal(expression.Value(cur.Epoch))))
		if err != nil {
			return cur, err
		}
		if ok {
			t, _, err := s.Table(ctx, source)
			return t, err
		}
	}
}

// retire is cur's retired targets once the table moves to target: the old target joins
// them, and target (moved back to) leaves them.
func retire(cur TableState, target string) []string {
	out := slices.DeleteFunc(slices.Clone(cur.RetiredTargets), func(t string) bool { return t == target })
	if cur.Target != "" && cur.Target != target && !slices.Contains(out, cur.Target) {
		out = append(out, cur.Target)
	}
	return out
}

// MarkRemoved records that a table is no longer replicated (it left the configuration or
// the publication): never consistent again until planned anew, and a running snapshot of
// it is fenced (README "Bad input and faults").
func (s *Store) MarkRemoved(ctx context.Context, source, reason string) error {
	for {
		cur, found, err := s.Table(ctx, source)
		if err != nil || !found || (cur.State == Removed && cur.Error == reason) {
			return err
		}
		upd := expression.Set(nameState, expression.Value(Removed)).
			Set(nameEpoch, expression.Value(cur.Epoch+1)).
			Set(ddb.Name("consistent"), expression.Value(false)).
			Set(ddb.Name("error"), expression.Value(reason)).
			Set(ddb.Name("updated_at"), expression.Value(s.now())).
			Remove(ddb.Name("runner"))
		ok, err := s.update(ctx, tableID(source), upd, condPtr(nameEpoch.Equal(expression.Value(cur.Epoch))))
		if err != nil || ok {
			return err
		}
	}
}

// StartSnapshot moves a pending or failed table to running and returns its state (with
// its split, once there is one). A done or running table is returned as is.
func (s *Store) StartSnapshot(ctx context.Context, source string) (TableState, error) {
	t, found, err := s.Table(ctx, source)
	if err != nil {
		return t, err
	}
	if !found {
		return t, fault.Fatalf("control: table %s was never planned: run the plan handler first", source)
	}
	if t.State == Done || t.State == Running {
		return t, nil
	}
	upd := expression.Set(nameState, expression.Value(Running)).
		Set(ddb.Name("updated_at"), expression.Value(s.now())).
		Set(ddb.Name("started_at"), expression.IfNotExists(ddb.Name("started_at"), expression.Value(s.now()))).
		Remove(ddb.Name("error"))
	ok, err := s.update(ctx, tableID(source), upd, condPtr(nameEpoch.Equal(expression.Value(t.Epoch))))
	if err != nil {
		return t, err
	}
	if !ok {
		return t, ErrFenced
	}
	t.State = Running
	return t, nil
}

// FinishSnapshot marks the snapshot of epoch done with its consistency point B(T), read
// after the last chunk of its last range, and the ranges' totals. It returns ErrFenced
// when the epoch moved on; a snapshot some other range already finished, or a repeat of
// this write (a retry after a lost response), returns nil: B(T) is recorded once.
func (s *Store) FinishSnapshot(ctx context.Context, source string, epoch int64, consistentLSN uint64, rows, chunks int64) error {
	upd := expression.Set(nameState, expression.Value(Done)).
		Set(ddb.Name("consistent_lsn"), expression.Value(consistentLSN)).
		Set(ddb.Name("rows_copied"), expression.Value(rows)).
		Set(ddb.Name("chunks"), expression.Value(chunks)).
		Set(ddb.Name("finished_at"), expression.Value(s.now())).
		Set(ddb.Name("updated_at"), expression.Value(s.now())).
		Remove(ddb.Name("cursor"))
	cond := nameEpoch.Equal(expression.Value(epoch)).And(nameState.Equal(expression.Value(Running)))
	ok, err := s.update(ctx, tableID(source), upd, &cond)
	if err != nil || ok {
		return err
	}
	cur, _, err := s.Table(ctx, source)
	if err != nil {
		return err
	}
	if cur.Epoch == epoch && cur.State == Done {
		return nil
	}
	return ErrFenced
}

// FailSnapshot records why the snapshot of the given epoch failed (a copier of an older
// epoch cannot fail its successor); the other tables go on. Failing a done table marks it
// not consistent: the stream can no longer keep it right (e.g. its key changed).
func (s *Store) FailSnapshot(ctx context.Context, source string, epoch int64, reason string) error {
	upd := expression.Set(nameState, expression.Value(Failed)).
		Set(ddb.Name("error"), expression.Value(reason)).
		Set(ddb.Name("consistent"), expression.Value(false)).
		Set(ddb.Name("updated_at"), expression.Value(s.now()))
	_, err := s.update(ctx, tableID(source), upd, condPtr(nameEpoch.Equal(expression.Value(epoch))))
	return err
}

// MarkFinalized records that the snapshot of epoch was finalized.
func (s *Store) MarkFinalized(ctx context.Context, source string, epoch int64) error {
	upd := expression.Set(ddb.Name("finalized_epoch"), expression.Value(epoch))
	_, err := s.update(ctx, tableID(source), upd, condPtr(nameEpoch.Equal(expression.Value(epoch))))
	return err
}

// Truncated records a TRUNCATE of the table at lsn (README "Bad input and faults"): the epoch changes so a
// running snapshot stops, and since the table was empty at lsn and every later change is
// streamed, its snapshot is complete with B(T) = lsn. It also records the background
// removal of the older items, in segments parallel-scan segments (TruncatingLSN; a
// running one for an earlier TRUNCATE is superseded): the table is not consistent until
// FinishTruncate.
func (s *Store) Truncated(ctx context.Context, source string, lsn uint64, seq uint32, segments int) error {
	for {
		cur, found, err := s.Table(ctx, source)
		if err != nil || !found {
			return err
		}
		if cur.FenceLSN == lsn && cur.TruncatingLSN == lsn && seq > cur.TruncatingSeq {
			// A second TRUNCATE in the same transaction: rows inserted between the two go too.
			upd := expression.Set(ddb.Name("truncating_seq"), expression.Value(seq)).
				Set(ddb.Name("updated_at"), expression.Value(s.now()))
			ok, err := s.update(ctx, tableID(source), upd, condPtr(nameEpoch.Equal(expression.Value(cur.Epoch))))
			if err != nil || ok {
				return err
			}
			continue
		}
		if cur.FenceLSN >= lsn {
			// Already recorded: a retry after a lost response, or the stream replaying the
			// TRUNCATE after a reconnect. Bumping the epoch again would fence (and mark
			// done) a snapshot planned since.
			return nil
		}
		upd := expression.Set(nameEpoch, expression.Value(cur.Epoch+1)).
			Set(ddb.Name("fence_lsn"), expression.Value(lsn)).
			Set(ddb.Name("truncating_lsn"), expression.Value(lsn)).
			Set(ddb.Name("truncating_seq"), expression.Value(seq)).
			Set(ddb.Name("truncate_segments"), expression.Value(segments)).
			Set(ddb.Name("consistent"), expression.Value(false)).
			Set(ddb.Name("updated_at"), expression.Value(s.now()))
		if cur.State != Done {
			upd = upd.Set(nameState, expression.Value(Done)).
				Set(ddb.Name("consistent_lsn"), expression.Value(lsn)).
				Set(ddb.Name("finished_at"), expression.Value(s.now())).
				Remove(ddb.Name("cursor"))
		}
		ok, err := s.update(ctx, tableID(source), upd, condPtr(nameEpoch.Equal(expression.Value(cur.Epoch))))
		if err != nil || ok {
			return err
		}
	}
}

// SetShape records the table's columns as the stream last saw them.
func (s *Store) SetShape(ctx context.Context, source string, shape []string) error {
	upd := expression.Set(ddb.Name("shape"), expression.Value(shape))
	_, err := s.update(ctx, tableID(source), upd, condPtr(expression.AttributeExists(ddb.Name("id"))))
	return err
}

// MarkConsistent flags every done table whose B(T) the streamer has applied past.
func (s *Store) MarkConsistent(ctx context.Context, applied uint64) error {
	tables, err := s.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if t.Consistent || !t.IsConsistent(applied) {
			continue
		}
		cond := nameEpoch.Equal(expression.Value(t.Epoch)).And(nameState.Equal(expression.Value(Done)),
			expression.AttributeNotExists(ddb.Name("degraded")), expression.AttributeNotExists(ddb.Name("truncating_lsn")))
		if _, err := s.update(ctx, t.ID, expression.Set(ddb.Name("consistent"), expression.Value(true)), &cond); err != nil {
			return err
		}
	}
	return nil
}
