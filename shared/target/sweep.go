package target

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"tandem/shared/ddb"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// scan visits, page by page, the items of t's target matching filter, projected to the
// key and the metadata attributes, so memory stays bounded by one page.
func (w *Writer) scan(ctx context.Context, t *schema.Table, filter expression.ConditionBuilder, visit func(Item) error) error {
	proj := expression.NamesList(expression.Name(precedence.AttrLSN), expression.Name(precedence.AttrSeq),
		expression.Name(precedence.AttrSrc), expression.Name(precedence.AttrDeleted), expression.Name(precedence.AttrEpoch))
	for _, k := range t.KeySchema() {
		proj = proj.AddNames(expression.Name(k.Name))
	}
	expr, err := expression.NewBuilder().WithFilter(filter).WithProjection(proj).Build()
	if err != nil {
		return err
	}
	p := dynamodb.NewScanPaginator(w.DB, &dynamodb.ScanInput{
		TableName:                 &t.Target,
		FilterExpression:          expr.Filter(),
		ProjectionExpression:      expr.Projection(),
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

// TombstoneAll soft-deletes every live item of t at p: a TRUNCATE (DESIGN §2.8).
func (w *Writer) TombstoneAll(ctx context.Context, t *schema.Table, p precedence.Position) (int, error) {
	n := 0
	live := expression.AttributeNotExists(expression.Name(precedence.AttrDeleted))
	err := w.scan(ctx, t, live, func(item Item) error {
		applied, err := w.Delete(ctx, t, keyOf(t, item), p)
		if applied {
			n++
		}
		return err
	})
	return n, err
}

// SweepTombstones removes tombstones committed at or before upTo (DESIGN §2.5). The caller
// guarantees no snapshot of t that started before upTo is still running.
func (w *Writer) SweepTombstones(ctx context.Context, t *schema.Table, upTo uint64) (int, error) {
	filter := expression.Name(precedence.AttrDeleted).Equal(expression.Value(true)).
		And(expression.Name(precedence.AttrLSN).LessThanEqual(expression.Value(upTo)))
	return w.deleteWhere(ctx, t, filter, func(item Item) expression.ConditionBuilder {
		p, _, _ := precedence.ItemPosition(item)
		return precedence.SweepableTombstone(p)
	})
}

// SweepStaleSnapshot removes snapshot rows read before a fence (a TRUNCATE at fenceLSN):
// a fenced snapshot's in-flight writes may have landed after the truncate's tombstones.
func (w *Writer) SweepStaleSnapshot(ctx context.Context, t *schema.Table, fenceLSN uint64) (int, error) {
	stale := precedence.StaleSnapshot(fenceLSN)
	return w.deleteWhere(ctx, t, stale, func(Item) expression.ConditionBuilder { return stale })
}

// SweepOrphans removes, after the snapshot of epoch e (floored at floor) is done, the
// items of rows that no longer exist (see precedence.Orphan).
func (w *Writer) SweepOrphans(ctx context.Context, t *schema.Table, e int64, floor uint64) (int, error) {
	orphan := precedence.Orphan(e, floor)
	return w.deleteWhere(ctx, t, orphan, func(Item) expression.ConditionBuilder { return orphan })
}

func (w *Writer) deleteWhere(ctx context.Context, t *schema.Table, filter expression.ConditionBuilder, guard func(Item) expression.ConditionBuilder) (int, error) {
	n := 0
	err := w.scan(ctx, t, filter, func(item Item) error {
		expr, err := expression.NewBuilder().WithCondition(guard(item)).Build()
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
