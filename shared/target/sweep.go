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

// scan visits, page by page, the items of t's target matching filter, so memory stays
// bounded by one page. Items are read whole: a Scan is charged for the whole item
// whatever it projects, and a projection would have to name the key attributes, which the
// emulator the tests run against (moto 5.2) misreads when a name ends in "[n]".
func (w *Writer) scan(ctx context.Context, t *schema.Table, filter expression.ConditionBuilder, visit func(Item) error) error {
	expr, err := ddb.Build(expression.NewBuilder().WithFilter(filter))
	if err != nil {
		return err
	}
	p := dynamodb.NewScanPaginator(w.DB, &dynamodb.ScanInput{
		TableName:                 &t.Target,
		FilterExpression:          expr.Filter(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("dynamodb: scanning %s: %w", t.Target, err)
		}
		for _, item := range page.Items {
			if err := visit(item); err != nil {
				return err
			}
		}
	}
	return nil
}

func keyOf(t *schema.Table, item Item) Item {
	key := Item{}
	for _, k := range t.KeySchema() {
		key[k.Name] = item[k.Name]
	}
	return key
}

// truncateWriters is how many tombstones a TRUNCATE writes at once.
const truncateWriters = 16

// Truncate soft-deletes every live item of t written before the TRUNCATE at p (DESIGN
// §2.8), in parallel. Each tombstone is guarded by precedence.WrittenBefore, so writes
// after the TRUNCATE (streamed or snapshotted) that land meanwhile are never touched, and
// the caller need not hold the stream back while it runs.
func (w *Writer) Truncate(ctx context.Context, t *schema.Table, p precedence.Position) (int, error) {
	var n atomic.Int64
	before := precedence.WrittenBefore(p)
	live := expression.AttributeNotExists(ddb.Name(precedence.AttrDeleted)).And(before)
	expires := time.Now().Add(w.TombstoneTTL).Unix()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	keys := make(chan Item)
	var wg sync.WaitGroup
	for range truncateWriters {
		wg.Go(func() {
			for key := range keys {
				err := w.putItem(ctx, t, precedence.Tombstone(key, p, expires), before)
				switch {
				case err == nil:
					n.Add(1)
				case !ddb.IsConditionFailed(err):
					cancel(fmt.Errorf("dynamodb: truncating %s: %w", t.Target, err))
				}
			}
		})
	}
	err := w.scan(ctx, t, live, func(item Item) error {
		select {
		case keys <- keyOf(t, item):
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	close(keys)
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && err == nil {
		err = cause
	}
	return int(n.Load()), err
}

// Sweep says what may be removed once a table's snapshot can no longer write (zero
// values: nothing of that kind).
type Sweep struct {
	// FenceLSN: snapshot rows read before a TRUNCATE at it (a fenced snapshot's in-flight
	// writes may have landed after the truncate's tombstones).
	FenceLSN uint64
	// Epoch and Floor: with Orphans, items the snapshot of Epoch (floored at Floor) should
	// have rewritten but did not, because their rows no longer exist (precedence.Orphan).
	Epoch   int64
	Floor   uint64
	Orphans bool
	// TombstonesUpTo: tombstones committed at or before it (DESIGN §2.5); the caller
	// guarantees no snapshot that started before it is still running.
	TombstonesUpTo uint64
}

// Sweep removes, in one scan of the target table, everything s describes, each item
// under a condition that re-checks it, so a write that landed meanwhile is kept.
func (w *Writer) Sweep(ctx context.Context, t *schema.Table, s Sweep) (int, error) {
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
		return 0, nil
	}
	return w.deleteWhere(ctx, t, or(filters), func(item Item) expression.ConditionBuilder {
		guards := general
		if p, _, ok := precedence.ItemPosition(item); ok && s.TombstonesUpTo > 0 && precedence.IsTombstone(item) {
			guards = append(append([]expression.ConditionBuilder(nil), general...), precedence.SweepableTombstone(p))
		}
		return or(guards)
	})
}

func or(conds []expression.ConditionBuilder) expression.ConditionBuilder {
	if len(conds) == 1 {
		return conds[0]
	}
	return expression.Or(conds[0], conds[1], conds[2:]...)
}

func (w *Writer) deleteWhere(ctx context.Context, t *schema.Table, filter expression.ConditionBuilder, guard func(Item) expression.ConditionBuilder) (int, error) {
	n := 0
	err := w.scan(ctx, t, filter, func(item Item) error {
		expr, err := ddb.Build(expression.NewBuilder().WithCondition(guard(item)))
		if err != nil {
			return err
		}
		_, err = w.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                 &t.Target,
			Key:                       keyOf(t, item),
			ConditionExpression:       expr.Condition(),
			ExpressionAttributeNames:  expr.Names(),
			ExpressionAttributeValues: expr.Values(),
		})
		switch {
		case err == nil:
			n++
		case !ddb.IsConditionFailed(err):
			return fmt.Errorf("dynamodb: sweeping %s: %w", t.Target, err)
		}
		return nil
	})
	return n, err
}
