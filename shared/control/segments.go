package control

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"tandem/shared/ddb"
)

// Kinds of background passes over a target table, split in parallel-scan segments.
const (
	// JobSweep is a finalize sweep (SweepJob).
	JobSweep = "sweep"
	// JobTruncate removes what a TRUNCATE left (TableState.TruncatingLSN); see TruncateJob.
	JobTruncate = "truncate"
)

// TruncateJob names the pass of a TRUNCATE at order seq of its transaction (the
// generation is its LSN).
func TruncateJob(seq uint32) string { return fmt.Sprintf("%s.%d", JobTruncate, seq) }

// SegmentProgress is where one parallel-scan segment of a background pass over a target
// table resumes: written after each page whose writes are durable, so a killed worker
// (a Lambda past its deadline, a restarted streamer) goes on from there. Two workers on
// one segment are harmless: every delete re-checks its condition.
type SegmentProgress struct {
	ID     string `dynamodbav:"id"`
	Job    string `dynamodbav:"job"`
	Source string `dynamodbav:"source"`
	// Generation tells passes apart: the fence LSN of a truncation, a sweep's generation.
	Generation uint64        `dynamodbav:"generation"`
	Segment    int           `dynamodbav:"segment"`
	Of         int           `dynamodbav:"of"`
	Next       []ddb.KeyAttr `dynamodbav:"next,omitempty"`
	Done       bool          `dynamodbav:"done"`
	Removed    int64         `dynamodbav:"removed"`
	UpdatedAt  string        `dynamodbav:"updated_at"`
}

func segmentID(job, source string, generation uint64, segment int) string {
	return fmt.Sprintf("segment#%s#%d#%d#%s", job, generation, segment, source)
}

// Segment reads a segment's progress; a segment never started is returned fresh.
func (s *Store) Segment(ctx context.Context, job, source string, generation uint64, segment, of int) (SegmentProgress, error) {
	p := SegmentProgress{ID: segmentID(job, source, generation, segment), Job: job, Source: source, Generation: generation, Segment: segment, Of: of}
	var got SegmentProgress
	found, err := s.get(ctx, p.ID, &got)
	if err != nil || !found {
		return p, err
	}
	return got, nil
}

// SaveSegment records a segment's progress (idempotent: a retry writes the same item).
func (s *Store) SaveSegment(ctx context.Context, p SegmentProgress) error {
	p.UpdatedAt = s.now()
	_, err := s.put(ctx, p, nil)
	return err
}

// Segments reads the progress of all of segments 0..of-1 of a pass.
func (s *Store) Segments(ctx context.Context, job, source string, generation uint64, of int) ([]SegmentProgress, error) {
	out := make([]SegmentProgress, 0, of)
	for n := range of {
		p, err := s.Segment(ctx, job, source, generation, n, of)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// DeleteSegments removes a finished pass's progress items.
func (s *Store) DeleteSegments(ctx context.Context, job, source string, generation uint64, of int) error {
	for n := range of {
		if err := s.delete(ctx, segmentID(job, source, generation, n)); err != nil {
			return err
		}
	}
	return nil
}

// SweepJob is a table's finalize sweep, split in segments: what it removes is fixed when
// it starts (the tombstone bound comes from the checkpoint read before the table's state),
// so every segment, and every resumed invocation, sweeps under the same rules.
type SweepJob struct {
	ID         string `dynamodbav:"id"`
	Source     string `dynamodbav:"source"`
	Epoch      int64  `dynamodbav:"epoch"`
	Generation uint64 `dynamodbav:"generation"`
	Segments   int    `dynamodbav:"segments"`
	// Sweep is target.Sweep's JSON (control does not depend on the writer).
	Sweep    string `dynamodbav:"sweep"`
	Finished bool   `dynamodbav:"finished"`
	// Removed is the total over the segments, set when finished.
	Removed   int64  `dynamodbav:"removed"`
	UpdatedAt string `dynamodbav:"updated_at"`
}

func sweepID(source string) string { return "sweep#" + source }

// Sweep reads the table's current or last sweep job (found false: none ever).
func (s *Store) Sweep(ctx context.Context, source string) (j SweepJob, found bool, err error) {
	found, err = s.get(ctx, sweepID(source), &j)
	return j, found, err
}

// StartSweep returns the unfinished sweep job of the table's epoch, to resume it, or
// records j as a new one (the next generation) and returns it.
func (s *Store) StartSweep(ctx context.Context, j SweepJob) (SweepJob, error) {
	for {
		cur, found, err := s.Sweep(ctx, j.Source)
		if err != nil {
			return cur, err
		}
		if found && !cur.Finished && cur.Epoch == j.Epoch {
			return cur, nil
		}
		j.ID, j.Generation, j.Finished, j.Removed, j.UpdatedAt = sweepID(j.Source), cur.Generation+1, false, 0, s.now()
		cond := expression.AttributeNotExists(ddb.Name("id"))
		if found {
			cond = ddb.Name("generation").Equal(expression.Value(cur.Generation))
		}
		ok, err := s.put(ctx, j, &cond)
		if err != nil || ok {
			return j, err
		}
	}
}

// FinishSweep marks a sweep generation finished with its total.
func (s *Store) FinishSweep(ctx context.Context, source string, generation uint64, removed int64) error {
	upd := expression.Set(ddb.Name("finished"), expression.Value(true)).
		Set(ddb.Name("removed"), expression.Value(removed)).
		Set(ddb.Name("updated_at"), expression.Value(s.now()))
	_, err := s.update(ctx, sweepID(source), upd, condPtr(ddb.Name("generation").Equal(expression.Value(generation))))
	return err
}

// FinishTruncate records that every item written before the TRUNCATE at lsn is removed:
// the table may become consistent again. A later TRUNCATE (a higher fence) that
// superseded it is left running.
func (s *Store) FinishTruncate(ctx context.Context, source string, lsn uint64, seq uint32) error {
	upd := expression.Remove(ddb.Name("truncating_lsn")).Remove(ddb.Name("truncating_seq")).Remove(ddb.Name("truncate_segments")).
		Set(ddb.Name("updated_at"), expression.Value(s.now()))
	_, err := s.update(ctx, tableID(source), upd, condPtr(ddb.Name("truncating_lsn").Equal(expression.Value(lsn)).And(ddb.Name("truncating_seq").Equal(expression.Value(seq)))))
	return err
}

// delete removes one item (absent: nothing to do).
func (s *Store) delete(ctx context.Context, id string) error {
	if _, err := s.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.Name, Key: key(id)}); err != nil {
		return fmt.Errorf("control: deleting %s: %w", id, err)
	}
	return nil
}
