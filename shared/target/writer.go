// Package target writes rows to the DynamoDB target tables under the precedence rules of
// package precedence. A write refused by its condition has lost to a newer write: that is
// counted, not reported as an error.
package target

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/ddb"
	"tandem/shared/fault"
	"tandem/shared/limits"
	"tandem/shared/mapping"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// Item is a DynamoDB item.
type Item = map[string]types.AttributeValue

// Writer applies snapshot and stream writes.
type Writer struct {
	DB *dynamodb.Client
	// TombstoneTTL sets __expires on tombstones, a backstop for the sweep.
	TombstoneTTL time.Duration

	// PassWriters bounds the writes all sweeps and TRUNCATE removals through this writer
	// keep in flight together, whatever their number of segments (0: segmentWriters per
	// segment), so background removal in the streamer never crowds out the stream.
	PassWriters int
	// PageLimit is the items one scan page of a sweep evaluates (0: pageLimit).
	PageLimit int

	Applied, Lost atomic.Int64

	passSlotsOnce sync.Once
	passSlots     chan struct{}
}

// Snapshot writes a row read by a snapshot chunk.
func (w *Writer) Snapshot(ctx context.Context, t *schema.Table, item Item, r precedence.Read) (bool, error) {
	return w.put(ctx, t, precedence.SnapshotItem(item, r), precedence.SnapshotGuard(r))
}

// Stream writes the full row of a change at p.
func (w *Writer) Stream(ctx context.Context, t *schema.Table, item Item, p precedence.Position) (bool, error) {
	return w.put(ctx, t, precedence.StreamItem(item, p), precedence.StreamGuard(p))
}

// Delete writes the tombstone of a change at p.
func (w *Writer) Delete(ctx context.Context, t *schema.Table, key Item, p precedence.Position) (bool, error) {
	expires := time.Now().Add(w.TombstoneTTL).Unix()
	return w.put(ctx, t, precedence.Tombstone(key, p, expires), precedence.StreamGuard(p))
}

func (w *Writer) put(ctx context.Context, t *schema.Table, item Item, guard ddb.Expression) (bool, error) {
	if size := mapping.ItemSize(item); size > limits.ItemSize {
		return false, poison(t, item, fmt.Sprintf("the row is %d bytes as a DynamoDB item, over DynamoDB's %d-byte item limit", size, limits.ItemSize), nil)
	}
	err := w.putItem(ctx, t, item, guard)
	return w.outcome(t, item, err)
}

func (w *Writer) putItem(ctx context.Context, t *schema.Table, item Item, guard ddb.Expression) error {
	return w.putItemWith(ctx, t, item, guard, "")
}

// buildGuard builds a condition that is not one of precedence's prebuilt guards.
func buildGuard(t *schema.Table, item Item, cond expression.ConditionBuilder) (ddb.Expression, error) {
	expr, err := ddb.Build(expression.NewBuilder().WithCondition(cond))
	if err != nil {
		return expr, poison(t, item, "cannot express the condition for DynamoDB", unbuildable(err))
	}
	return expr, nil
}

// putItemReturning is putItem whose refusal carries the item that refused it
// (ddb.ConditionFailedItem).
func (w *Writer) putItemReturning(ctx context.Context, t *schema.Table, item Item, guard ddb.Expression) error {
	return w.putItemWith(ctx, t, item, guard, types.ReturnValuesOnConditionCheckFailureAllOld)
}

func (w *Writer) putItemWith(ctx context.Context, t *schema.Table, item Item, guard ddb.Expression, onFailure types.ReturnValuesOnConditionCheckFailure) error {
	_, err := w.DB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                           &t.Target,
		Item:                                item,
		ConditionExpression:                 guard.Condition(),
		ExpressionAttributeNames:            guard.Names(),
		ExpressionAttributeValues:           guard.Values(),
		ReturnValuesOnConditionCheckFailure: onFailure,
	})
	return err
}

// Merge applies a change at p that left out unchanged TOAST values: set holds the sent
// columns, remove the sent NULLs, floor is the table's last schema change. missing
// reports that there was no current live item to merge into; the caller must then
// supply the full row.
func (w *Writer) Merge(ctx context.Context, t *schema.Table, key, set Item, remove []string, p precedence.Position, floor uint64) (applied, missing bool, err error) {
	set = precedence.StreamItem(set, p)
	var upd expression.UpdateBuilder
	for name, v := range set {
		if _, isKey := key[name]; !isKey {
			upd = upd.Set(ddb.Name(name), expression.Value(v))
		}
	}
	for _, name := range remove {
		upd = upd.Remove(ddb.Name(name))
	}
	expr, err := ddb.Build(expression.NewBuilder().WithUpdate(upd).WithCondition(precedence.Merge(p, floor)))
	if err != nil {
		return false, false, poison(t, key, "cannot express the update for DynamoDB", unbuildable(err))
	}
	if len(*expr.Update()) > limits.Expression || len(*expr.Condition()) > limits.Expression {
		// A wide table (hundreds of columns) overflows DynamoDB's expression limit.
		return w.mergeByPut(ctx, t, key, set, remove, p, floor)
	}
	_, err = w.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &t.Target,
		Key:                       key,
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		// The refusal carries the item that refused it: no second read to tell "lost"
		// from "nothing to merge into".
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	cur, refused := ddb.ConditionFailedItem(err)
	if !refused {
		applied, err = w.outcome(t, key, err)
		return applied, false, err
	}
	// Refused: either a newer write is there (lost), or there is nothing live to merge into.
	if precedence.Newer(cur, p) {
		w.Lost.Add(1)
		return false, false, nil
	}
	return false, true, nil
}

// mergeByPut is Merge as read, merge and conditional put, for updates too long for one
// UpdateItem expression. The put is guarded by the position read, so a write that lands
// in between makes it read again instead of being overwritten.
func (w *Writer) mergeByPut(ctx context.Context, t *schema.Table, key, set Item, remove []string, p precedence.Position, floor uint64) (applied, missing bool, err error) {
	cur, err := w.current(ctx, t, key)
	if err != nil {
		return false, false, err
	}
	for {
		if precedence.Newer(cur, p) {
			w.Lost.Add(1)
			return false, false, nil
		}
		if !precedence.CanMerge(cur, floor) {
			return false, true, nil
		}
		merged := make(Item, len(cur)+len(set))
		for k, v := range cur {
			merged[k] = v
		}
		for k, v := range set {
			merged[k] = v
		}
		for _, name := range remove {
			delete(merged, name)
		}
		delete(merged, precedence.AttrEpoch) // snapshot-only metadata (StreamItem's rule)
		if size := mapping.ItemSize(merged); size > limits.ItemSize {
			return false, false, poison(t, key, fmt.Sprintf("the merged row is %d bytes as a DynamoDB item, over DynamoDB's %d-byte item limit", size, limits.ItemSize), nil)
		}
		var guard ddb.Expression
		if guard, err = buildGuard(t, key, precedence.Stream(p).And(precedence.Unchanged(cur))); err != nil {
			return false, false, err
		}
		err = w.putItemReturning(ctx, t, merged, guard)
		if now, refused := ddb.ConditionFailedItem(err); refused {
			// Written meanwhile: decide again on what is there now, which the refusal
			// returned (absent: the item is gone).
			cur = now
			continue
		}
		applied, err = w.outcome(t, key, err)
		return applied, false, err
	}
}

func (w *Writer) current(ctx context.Context, t *schema.Table, key Item) (Item, error) {
	out, err := w.DB.GetItem(ctx, &dynamodb.GetItemInput{TableName: &t.Target, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("dynamodb: reading %s of %s: %w", keyString(t, key), t.Target, err)
	}
	return out.Item, nil
}

// outcome counts a write's result. A write DynamoDB can never accept comes back as a
// fault.PoisonError naming the table and key; every other error is returned for the
// caller to classify (transient: retried).
func (w *Writer) outcome(t *schema.Table, item Item, err error) (bool, error) {
	switch {
	case err == nil:
		w.Applied.Add(1)
		return true, nil
	case ddb.IsConditionFailed(err):
		w.Lost.Add(1)
		return false, nil
	case errors.As(err, new(*fault.PoisonError)):
		return false, fault.WithRow(err, t.Source(), keyString(t, item), "")
	case fault.IsPoison(err):
		return false, poison(t, item, "DynamoDB refused the write: "+err.Error(), err)
	}
	return false, fmt.Errorf("dynamodb: writing to %s: %w", t.Target, err)
}

// unbuildable is an expression the SDK's builder refuses (e.g. an attribute name it cannot
// take): retrying cannot change that.
func unbuildable(err error) error {
	return &fault.PoisonError{Reason: "cannot build the DynamoDB expression: " + err.Error(), Err: err}
}

func poison(t *schema.Table, item Item, reason string, err error) error {
	return &fault.PoisonError{Table: t.Source(), Key: keyString(t, item), Reason: reason, Err: err}
}

// EnsureTable creates the target table of t if missing, with TTL on tombstones and the
// given warm throughput (nil: DynamoDB's default).
func EnsureTable(ctx context.Context, db *dynamodb.Client, t *schema.Table, warm *types.WarmThroughput) error {
	var keys []types.KeySchemaElement
	var attrs []types.AttributeDefinition
	for _, k := range t.KeySchema() {
		keys = append(keys, types.KeySchemaElement{AttributeName: aws.String(k.Name), KeyType: k.Kind})
		attrs = append(attrs, types.AttributeDefinition{AttributeName: aws.String(k.Name), AttributeType: k.Type})
	}
	return ddb.EnsureTable(ctx, db, t.Target, keys, attrs, precedence.AttrExpires, warm)
}

func keyString(t *schema.Table, item Item) string {
	s := ""
	for _, k := range t.KeySchema() {
		if s != "" {
			s += ","
		}
		s += k.Name + "=" + avString(item[k.Name])
	}
	return s
}

func avString(v types.AttributeValue) string {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return v.Value
	case *types.AttributeValueMemberN:
		return v.Value
	case *types.AttributeValueMemberB:
		return fmt.Sprintf("%x", v.Value)
	}
	return "?"
}
