package target

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"tandem/shared/ddb"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// Segment names one DynamoDB parallel-scan segment (Segment N of TotalSegments Of) of a
// pass over a target table: sweeps and TRUNCATEs are split into segments worked on at
// once, each resumable on its own, so no step needs one pass over a whole table.
type Segment struct {
	N  int `json:"segment"`
	Of int `json:"of"`
}

// Whole is the one segment of a table scanned in a single pass.
var Whole = Segment{N: 0, Of: 1}

// Page is a segment's progress once a page's writes are durable: the scan resumes after
// Next (nil: the segment is done); Removed counts the items this page removed.
type Page struct {
	Next    Item
	Removed int
}

// SaveFunc records a segment's progress after each page, so a killed worker resumes
// there; nil records nothing.
type SaveFunc func(ctx context.Context, p Page) error

// Segments is how many parallel-scan segments a pass over target should use: one per
// perSegment items of DynamoDB's estimate (DescribeTable's ItemCount, or its size at
// 1 KB an item when larger), between 1 and maxSegments. The estimate is refreshed by
// DynamoDB about every six hours: it sizes the work, it does not bound it.
func (w *Writer) Segments(ctx context.Context, target string, perSegment, maxSegments int) (int, error) {
	out, err := w.DB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &target})
	if err != nil {
		return 0, fmt.Errorf("dynamodb: describing %s: %w", target, err)
	}
	items := aws.ToInt64(out.Table.ItemCount)
	items = max(items, aws.ToInt64(out.Table.TableSizeBytes)/1024)
	n := int((items + int64(perSegment) - 1) / int64(perSegment))
	return min(max(n, 1), maxSegments), nil
}

// pageLimit bounds the items one scan page evaluates, so progress is saved often and a
// page's writes fit well inside an invocation's deadline margin.
const pageLimit = 1000

// deadlineMargin is the time left before the deadline at which a pass stops starting
// pages; it returns where it stopped instead.
const deadlineMargin = 15 * time.Second

// SegmentWriters is how many deletes or tombstones one segment keeps in flight (fewer
// when Writer.PassWriters is lower).
const SegmentWriters = 16

// pass visits, page by page from start, the items of segment seg of t's target matching
// filter, applying act to each (SegmentWriters at once; act reports whether it removed
// the item), and saves the progress after each page. It stops when the segment is done
// (next nil) or before starting a page with less than deadlineMargin left (zero
// deadline: none). Items are read whole: a Scan is charged for the whole item whatever
// it projects, and a projection would have to name the key attributes, which the
// emulator the tests run against (moto 5.2) misreads when a name ends in "[n]".
func (w *Writer) pass(ctx context.Context, t *schema.Table, filter expression.ConditionBuilder, seg Segment, start Item, deadline time.Time,
	act func(context.Context, Item) (bool, error), save SaveFunc) (next Item, removed int, err error) {
	expr, err := ddb.Build(expression.NewBuilder().WithFilter(filter))
	if err != nil {
		return start, 0, err
	}
	in := &dynamodb.ScanInput{
		TableName:                 &t.Target,
		FilterExpression:          expr.Filter(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
		Limit:                     aws.Int32(pageLimit),
	}
	if w.PageLimit > 0 {
		in.Limit = aws.Int32(int32(w.PageLimit))
	}
	if seg.Of > 1 {
		in.Segment, in.TotalSegments = aws.Int32(int32(seg.N)), aws.Int32(int32(seg.Of))
	}
	next = start
	for first := true; first || next != nil; first = false {
		if !first && !deadline.IsZero() && time.Until(deadline) < deadlineMargin {
			return next, removed, nil
		}
		in.ExclusiveStartKey = next
		page, err := w.DB.Scan(ctx, in)
		if err != nil {
			return next, removed, fmt.Errorf("dynamodb: scanning %s: %w", t.Target, err)
		}
		n, err := w.each(ctx, page.Items, act)
		removed += n
		if err != nil {
			return next, removed, err
		}
		next = page.LastEvaluatedKey
		if len(next) == 0 {
			next = nil
		}
		if save != nil {
			if err := save(ctx, Page{Next: next, Removed: n}); err != nil {
				return next, removed, err
			}
		}
	}
	return nil, removed, nil
}

// each applies act to every item, SegmentWriters at once; it returns once all are done.
func (w *Writer) each(ctx context.Context, items []Item, act func(context.Context, Item) (bool, error)) (int, error) {
	var n atomic.Int64
	var first error
	var mu sync.Mutex
	todo := make(chan Item)
	var wg sync.WaitGroup
	for range min(SegmentWriters, len(items)) {
		wg.Go(func() {
			for item := range todo {
				release := w.passSlot(ctx)
				ok, err := act(ctx, item)
				release()
				if ok {
					n.Add(1)
				}
				if err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, item := range items {
		todo <- item
	}
	close(todo)
	wg.Wait()
	return int(n.Load()), first
}

// passSlot waits for one of the PassWriters slots (none when unbounded); release gives
// it back.
func (w *Writer) passSlot(ctx context.Context) (release func()) {
	if w.PassWriters <= 0 {
		return func() {}
	}
	w.passSlotsOnce.Do(func() { w.passSlots = make(chan struct{}, w.PassWriters) })
	select {
	case w.passSlots <- struct{}{}:
		return func() { <-w.passSlots }
	case <-ctx.Done():
		return func() {}
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func keyOf(t *schema.Table, item Item) Item {
	key := Item{}
	for _, k := range t.KeySchema() {
		key[k.Name] = item[k.Name]
	}
	return key
}

// Truncate soft-deletes, in one pass, every live item of t written before the TRUNCATE
// at p (README "Bad input and faults"); see TruncateSegment.
func (w *Writer) Truncate(ctx context.Context, t *schema.Table, p precedence.Position) (int, error) {
	_, n, err := w.TruncateSegment(ctx, t, p, Whole, nil, time.Time{}, nil)
	return n, err
}

// TruncateSegment soft-deletes the live items of segment seg of t written before the
// TRUNCATE at p, from start until the segment is done or the deadline nears (see pass).
// Each tombstone is guarded by precedence.WrittenBefore, so writes after the TRUNCATE
// (streamed or snapshotted) that land meanwhile are never touched, and the stream need
// not wait for it.
func (w *Writer) TruncateSegment(ctx context.Context, t *schema.Table, p precedence.Position, seg Segment, start Item, deadline time.Time, save SaveFunc) (Item, int, error) {
	before := precedence.WrittenBefore(p)
	live := expression.AttributeNotExists(ddb.Name(precedence.AttrDeleted)).And(before)
	guard, err := buildGuard(t, start, before)
	if err != nil {
		return start, 0, err
	}
	expires := time.Now().Add(w.TombstoneTTL).Unix()
	return w.pass(ctx, t, live, seg, start, deadline, func(ctx context.Context, item Item) (bool, error) {
		err := w.putItem(ctx, t, precedence.Tombstone(keyOf(t, item), p, expires), guard)
		switch {
		case err == nil:
			return true, nil
		case ddb.IsConditionFailed(err):
			return false, nil
		}
		return false, fmt.Errorf("dynamodb: truncating %s: %w", t.Target, err)
	}, save)
}

// Sweep says what may be removed once a table's snapshot can no longer write (zero
// values: nothing of that kind).
type Sweep struct {
	// FenceLSN: snapshot rows read before a TRUNCATE at it (a fenced snapshot's in-flight
	// writes may have landed after the truncate's tombstones).
	FenceLSN uint64 `json:"fence_lsn,omitempty"`
	// Epoch and Floor: with Orphans, items the snapshot of Epoch (floored at Floor) should
	// have rewritten but did not, because their rows no longer exist (precedence.Orphan).
	Epoch   int64  `json:"epoch,omitempty"`
	Floor   uint64 `json:"floor,omitempty"`
	Orphans bool   `json:"orphans,omitempty"`
	// TombstonesUpTo: tombstones committed at or before it (README "The contract"); the caller
	// guarantees no snapshot that started before it is still running.
	TombstonesUpTo uint64 `json:"tombstones_up_to,omitempty"`
}

// Sweep removes, in one pass over the target table, everything s describes; see
// SweepSegment.
func (w *Writer) Sweep(ctx context.Context, t *schema.Table, s Sweep) (int, error) {
	_, n, err := w.SweepSegment(ctx, t, s, Whole, nil, time.Time{}, nil)
	return n, err
}

// SweepSegment removes what s describes from segment seg of the target table, from start
// until the segment is done or the deadline nears (see pass), each item under a
// condition that re-checks it, so a write that landed meanwhile is kept.
func (w *Writer) SweepSegment(ctx context.Context, t *schema.Table, s Sweep, seg Segment, start Item, deadline time.Time, save SaveFunc) (Item, int, error) {
	var general []expression.ConditionBuilder
	if s.FenceLSN > 0 {
		general = append(general, precedence.StaleSnapshot(s.FenceLSN))
	}
	if s.Orphans {
		general = append(general, precedence.Orphan(s.Epoch, s.Floor))
	}
	filters := general
	if s.TombstonesUpTo > 0 {
		filters = append(filters, precedence.TombstoneAtOrBefore(s.TombstonesUpTo))
	}
	if len(filters) == 0 {
		if save != nil {
			return nil, 0, save(ctx, Page{})
		}
		return nil, 0, nil
	}
	return w.pass(ctx, t, or(filters), seg, start, deadline, func(ctx context.Context, item Item) (bool, error) {
		guards := general
		if p, _, ok := precedence.ItemPosition(item); ok && s.TombstonesUpTo > 0 && precedence.IsTombstone(item) {
			guards = append(append([]expression.ConditionBuilder(nil), general...), precedence.SweepableTombstone(p))
		}
		guard, err := buildGuard(t, item, or(guards))
		if err != nil {
			return false, err
		}
		return w.deleteIf(ctx, t, keyOf(t, item), guard, "sweeping")
	}, save)
}

func or(conds []expression.ConditionBuilder) expression.ConditionBuilder {
	if len(conds) == 1 {
		return conds[0]
	}
	return expression.Or(conds[0], conds[1], conds[2:]...)
}

// deleteIf deletes the item at key under guard; false when the guard refused it (written
// meanwhile). doing names the work in an error ("sweeping").
func (w *Writer) deleteIf(ctx context.Context, t *schema.Table, key Item, guard ddb.Expression, doing string) (bool, error) {
	_, err := w.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 &t.Target,
		Key:                       key,
		ConditionExpression:       guard.Condition(),
		ExpressionAttributeNames:  guard.Names(),
		ExpressionAttributeValues: guard.Values(),
	})
	switch {
	case err == nil:
		return true, nil
	case ddb.IsConditionFailed(err):
		return false, nil
	}
	return false, fmt.Errorf("dynamodb: %s %s: %w", doing, t.Target, err)
}
