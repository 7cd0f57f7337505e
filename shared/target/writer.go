// Package target writes rows to the DynamoDB target tables under the precedence rules of
// package precedence. A write refused by its condition has lost to a newer write: that is
// counted, not reported as an error.
package target

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"tandem/shared/ddb"
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

	Applied, Lost atomic.Int64
}

// TooLargeError is a row DynamoDB cannot store (over 400 KB).
type TooLargeError struct {
	Table, Key string
	Size       int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("row %s of %s is %d bytes as a DynamoDB item, over the %d-byte item limit", e.Key, e.Table, e.Size, mapping.MaxItemSize)
}

// Snapshot writes a row read by a snapshot chunk.
func (w *Writer) Snapshot(ctx context.Context, t *schema.Table, item Item, r precedence.Read) (bool, error) {
	return w.put(ctx, t, precedence.SnapshotItem(item, r), precedence.Snapshot(r))
}

// Stream writes the full row of a change at p.
func (w *Writer) Stream(ctx context.Context, t *schema.Table, item Item, p precedence.Position) (bool, error) {
	return w.put(ctx, t, precedence.StreamItem(item, p), precedence.Stream(p))
}

// Delete writes the tombstone of a change at p.
func (w *Writer) Delete(ctx context.Context, t *schema.Table, key Item, p precedence.Position) (bool, error) {
	expires := time.Now().Add(w.TombstoneTTL).Unix()
	return w.put(ctx, t, precedence.Tombstone(key, p, expires), precedence.Stream(p))
}

func (w *Writer) put(ctx context.Context, t *schema.Table, item Item, cond expression.ConditionBuilder) (bool, error) {
	if size := mapping.ItemSize(item); size > mapping.MaxItemSize {
		return false, &TooLargeError{Table: t.Source(), Key: keyString(t, item), Size: size}
	}
	expr, err := ddb.Build(expression.NewBuilder().WithCondition(cond))
	if err != nil {
		return false, err
	}
	_, err = w.DB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 &t.Target,
		Item:                      item,
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	if isItemTooLarge(err) {
		// ItemSize is an estimate; DynamoDB has the last word.
		return false, &TooLargeError{Table: t.Source(), Key: keyString(t, item), Size: mapping.ItemSize(item)}
	}
	return w.outcome(t, err)
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
		return false, false, err
	}
	_, err = w.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &t.Target,
		Key:                       key,
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	if isItemTooLarge(err) {
		return false, false, &TooLargeError{Table: t.Source(), Key: keyString(t, key), Size: mapping.MaxItemSize + 1}
	}
	if !ddb.IsConditionFailed(err) {
		applied, err = w.outcome(t, err)
		return applied, false, err
	}
	// Refused: either a newer write is there (lost), or there is nothing live to merge into.
	out, err := w.DB.GetItem(ctx, &dynamodb.GetItemInput{TableName: &t.Target, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return false, false, fmt.Errorf("dynamodb: reading %s of %s: %w", keyString(t, key), t.Target, err)
	}
	if pos, src, ok := precedence.ItemPosition(out.Item); ok && src == precedence.SrcStream && !pos.Less(p) {
		w.Lost.Add(1)
		return false, false, nil
	}
	return false, true, nil
}

func isItemTooLarge(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "ValidationException" && strings.Contains(api.ErrorMessage(), "Item size")
}

func (w *Writer) outcome(t *schema.Table, err error) (bool, error) {
	switch {
	case err == nil:
		w.Applied.Add(1)
		return true, nil
	case ddb.IsConditionFailed(err):
		w.Lost.Add(1)
		return false, nil
	}
	return false, fmt.Errorf("dynamodb: writing to %s: %w", t.Target, err)
}

// EnsureTable creates the target table of t if missing, with TTL on tombstones.
func EnsureTable(ctx context.Context, db *dynamodb.Client, t *schema.Table) error {
	var keys []types.KeySchemaElement
	var attrs []types.AttributeDefinition
	for _, k := range t.KeySchema() {
		keys = append(keys, types.KeySchemaElement{AttributeName: aws.String(k.Name), KeyType: k.Kind})
		attrs = append(attrs, types.AttributeDefinition{AttributeName: aws.String(k.Name), AttributeType: k.Type})
	}
	return ddb.EnsureTable(ctx, db, t.Target, keys, attrs, precedence.AttrExpires)
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
