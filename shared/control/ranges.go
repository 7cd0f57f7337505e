package control

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/ddb"
	"tandem/shared/pg"
)

const rangePrefix = "range#"

// RangeState is the progress of one key range of a table's snapshot (README "The contract"): its
// own cursor and counters, so ranges run in parallel without contending on one item. The
// item exists from the range's first chunk; before that the range is pending at its Lo.
type RangeState struct {
	ID     string `dynamodbav:"id"`
	Source string `dynamodbav:"source"`
	// Epoch is the table's epoch the range belongs to: a new epoch is split anew.
	Epoch int64 `dynamodbav:"epoch"`
	Index int   `dynamodbav:"index"`
	// State is Running until the range's last chunk is durable, then Done.
	State string `dynamodbav:"state"`
	// Cursor is the text of the last copied key; nil before the first chunk.
	Cursor     []string `dynamodbav:"cursor,omitempty"`
	RowsCopied int64    `dynamodbav:"rows_copied"`
	Chunks     int64    `dynamodbav:"chunks"`
	ChunkLSN   uint64   `dynamodbav:"chunk_lsn,omitempty"`
	UpdatedAt  string   `dynamodbav:"updated_at,omitempty"`
}

// rangeID names a range's item. The epoch is part of it, so a re-split never meets the
// progress of an older one.
func rangeID(source string, epoch int64, index int) string {
	return fmt.Sprintf("%s%s#%d#%05d", rangePrefix, source, epoch, index)
}

// SetSplit records the key ranges the snapshot of epoch reads, and the rows estimated while
// splitting, once: a table already split for its epoch keeps its ranges (their progress
// refers to them), whoever split it. It returns the table's state with its split, or
// ErrFenced when the epoch moved on. The range items of the split it replaces are
// removed: nothing reads an older epoch's progress (its copiers are fenced).
func (s *Store) SetSplit(ctx context.Context, source string, epoch int64, ranges []pg.Range, rowsEstimate int64) (TableState, error) {
	prev, _, err := s.Table(ctx, source)
	if err != nil {
		return prev, err
	}
	splitEpoch := ddb.Name("split_epoch")
	upd := expression.Set(ddb.Name("ranges"), expression.Value(ranges)).
		Set(ddb.Name("rows_estimate"), expression.Value(rowsEstimate)).
		Set(splitEpoch, expression.Value(epoch)).
		Set(ddb.Name("updated_at"), expression.Value(s.now()))
	cond := nameEpoch.Equal(expression.Value(epoch)).
		And(expression.AttributeNotExists(splitEpoch).Or(splitEpoch.NotEqual(expression.Value(epoch))))
	if _, err := s.update(ctx, tableID(source), upd, &cond); err != nil {
		return TableState{}, err
	}
	st, _, err := s.Table(ctx, source)
	if err != nil {
		return st, err
	}
	if st.Epoch != epoch || st.SplitEpoch != epoch {
		return st, ErrFenced
	}
	if prev.SplitEpoch > 0 && prev.SplitEpoch < epoch {
		for i := range prev.Ranges {
			// Left behind on an error, an old item costs only its storage.
			if err := s.delete(ctx, rangeID(source, prev.SplitEpoch, i)); err != nil {
				break
			}
		}
	}
	return st, nil
}

// Range reads the progress of range index of st's split; a range not started yet is
// returned pending, at its lower bound.
func (s *Store) Range(ctx context.Context, st TableState, index int) (RangeState, error) {
	r := RangeState{ID: rangeID(st.Source, st.Epoch, index), Source: st.Source, Epoch: st.Epoch, Index: index, State: Pending}
	found, err := s.get(ctx, r.ID, &r)
	if err != nil || found {
		return r, err
	}
	if index < len(st.Ranges) {
		r.Cursor = st.Ranges[index].Lo
	}
	return r, nil
}

// Ranges reads the progress of every range of st's split, in index order.
func (s *Store) Ranges(ctx context.Context, st TableState) ([]RangeState, error) {
	out := make([]RangeState, len(st.Ranges))
	byID := map[string]int{}
	var keys []map[string]types.AttributeValue
	for i := range st.Ranges {
		out[i] = RangeState{ID: rangeID(st.Source, st.Epoch, i), Source: st.Source, Epoch: st.Epoch, Index: i, State: Pending, Cursor: st.Ranges[i].Lo}
		byID[out[i].ID] = i
		keys = append(keys, key(out[i].ID))
	}
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 100)]
		keys = keys[len(batch):]
		for len(batch) > 0 {
			res, err := s.DB.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
				s.Name: {Keys: batch, ConsistentRead: aws.Bool(true)},
			}})
			if err != nil {
				return nil, fmt.Errorf("control: reading the ranges of %s: %w", st.Source, err)
			}
			for _, item := range res.Responses[s.Name] {
				var r RangeState
				if err := attributevalue.UnmarshalMap(item, &r); err != nil {
					return nil, fmt.Errorf("control: decoding a range of %s: %w", st.Source, err)
				}
				if i, ok := byID[r.ID]; ok {
					out[i] = r
				}
			}
			batch = res.UnprocessedKeys[s.Name].Keys
		}
	}
	return out, nil
}

// RecordRangeChunk stores the progress of a range's chunk whose writes are durable; prev
// is the range's state the chunk was read from. Like RecordChunk for a table, counters are
// set, not added, under a condition that also accepts this very write already stored.
func (s *Store) RecordRangeChunk(ctx context.Context, prev RangeState, cursor []string, rows int, chunkLSN uint64) error {
	chunks, copied := prev.Chunks+1, prev.RowsCopied+int64(rows)
	nameChunks, nameRows, nameCursor := ddb.Name("chunks"), ddb.Name("rows_copied"), ddb.Name("cursor")
	upd := expression.Set(nameCursor, expression.Value(cursor)).
		Set(nameRows, expression.Value(copied)).
		Set(nameChunks, expression.Value(chunks)).
		Set(nameState, expression.Value(Running)).
		Set(ddb.Name("source"), expression.Value(prev.Source)).
		Set(nameEpoch, expression.Value(prev.Epoch)).
		Set(ddb.Name("index"), expression.Value(prev.Index)).
		Set(ddb.Name("chunk_lsn"), expression.Value(chunkLSN)).
		Set(ddb.Name("updated_at"), expression.Value(s.now()))
	next := nameChunks.Equal(expression.Value(prev.Chunks))
	if prev.Chunks == 0 {
		next = expression.AttributeNotExists(nameChunks).Or(next)
	}
	repeat := nameChunks.Equal(expression.Value(chunks)).
		And(nameRows.Equal(expression.Value(copied))).
		And(nameCursor.Equal(expression.Value(cursor)))
	cond := expression.AttributeNotExists(nameState).Or(nameState.NotEqual(expression.Value(Done))).And(next.Or(repeat))
	ok, err := s.update(ctx, prev.ID, upd, &cond)
	if err == nil && !ok {
		return fmt.Errorf("control: range %d of %s moved on under its copier (two copiers of one range?): %w", prev.Index, prev.Source, ErrFenced)
	}
	return err
}

// FinishRange marks a range done once its last chunk is durable. A repeat succeeds.
func (s *Store) FinishRange(ctx context.Context, prev RangeState) error {
	upd := expression.Set(nameState, expression.Value(Done)).
		Set(ddb.Name("source"), expression.Value(prev.Source)).
		Set(nameEpoch, expression.Value(prev.Epoch)).
		Set(ddb.Name("index"), expression.Value(prev.Index)).
		Set(ddb.Name("rows_copied"), expression.Value(prev.RowsCopied)).
		Set(ddb.Name("chunks"), expression.Value(prev.Chunks)).
		Set(ddb.Name("updated_at"), expression.Value(s.now()))
	nameChunks := ddb.Name("chunks")
	same := nameChunks.Equal(expression.Value(prev.Chunks))
	if prev.Chunks == 0 {
		same = expression.AttributeNotExists(nameChunks).Or(same)
	}
	ok, err := s.update(ctx, prev.ID, upd, &same)
	if err == nil && !ok {
		return fmt.Errorf("control: range %d of %s moved on under its copier: %w", prev.Index, prev.Source, ErrFenced)
	}
	return err
}

// ClaimFinalize elects the one worker that finalizes the table's done snapshot of epoch:
// claimant is "<run>/<range>". It returns true for the first claimant of the epoch, for
// that claimant again (a retry), and for a claimant of a later run when the epoch was
// claimed but never finalized (the run that claimed it died).
func (s *Store) ClaimFinalize(ctx context.Context, source string, epoch int64, claimant string) (bool, error) {
	run, _, _ := strings.Cut(claimant, "/")
	nameBy, nameAt, finalized := ddb.Name("finalize_by"), ddb.Name("finalize_epoch"), ddb.Name("finalized_epoch")
	unclaimed := expression.AttributeNotExists(nameAt).Or(nameAt.NotEqual(expression.Value(epoch)))
	abandoned := expression.Not(nameBy.BeginsWith(run + "/")).
		And(expression.AttributeNotExists(finalized).Or(finalized.NotEqual(expression.Value(epoch))))
	cond := nameEpoch.Equal(expression.Value(epoch)).And(nameState.Equal(expression.Value(Done))).
		And(unclaimed.Or(nameBy.Equal(expression.Value(claimant)), abandoned))
	upd := expression.Set(nameBy, expression.Value(claimant)).Set(nameAt, expression.Value(epoch))
	return s.update(ctx, tableID(source), upd, &cond)
}

// RangeProgress sums the progress of st's ranges: what a running table has copied.
func RangeProgress(ranges []RangeState) (rows, chunks int64, done int) {
	for _, r := range ranges {
		rows += r.RowsCopied
		chunks += r.Chunks
		if r.State == Done {
			done++
		}
	}
	return rows, chunks, done
}
