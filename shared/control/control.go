// Package control keeps Tandem's state in a DynamoDB control table: per-table snapshot
// state and progress, the streamer's checkpoint, the streamer lease, the slot's start LSN
// and dead letters. Every state transition is a conditional write, so a fenced or
// duplicated worker cannot overwrite a newer decision.
package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/ddb"
)

// Snapshot states of a table.
const (
	Pending = "pending"
	Running = "running"
	Done    = "done"
	Failed  = "failed"
	// Removed: the table left the configuration or the publication; its changes are no
	// longer applied, so it is never consistent (README "Bad input and faults").
	Removed = "removed"
	// Truncating is shown (by the status, not stored) for a done table while the items a
	// TRUNCATE left are being removed in the background.
	Truncating = "truncating"
)

// ErrFenced means the table's epoch or state changed under a snapshot (a TRUNCATE, a
// reset): the snapshot must stop writing.
var ErrFenced = errors.New("snapshot fenced: the table was truncated or re-planned while it ran")

// Store is the control table.
type Store struct {
	DB   *dynamodb.Client
	Name string
	// Now is the clock (tests may replace it).
	Now func() time.Time
}

// New returns a Store on the named table.
func New(db *dynamodb.Client, table string) *Store {
	return &Store{DB: db, Name: table, Now: time.Now}
}

// EnsureTable creates the control table if missing.
func (s *Store) EnsureTable(ctx context.Context) error {
	return ddb.EnsureTable(ctx, s.DB, s.Name,
		[]types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		[]types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}}, "", nil)
}

func (s *Store) now() string { return s.Now().UTC().Format(time.RFC3339Nano) }

func key(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}}
}

// get reads one item into out; found is false when it does not exist.
func (s *Store) get(ctx context.Context, id string, out any) (bool, error) {
	res, err := s.DB.GetItem(ctx, &dynamodb.GetItemInput{TableName: &s.Name, Key: key(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return false, fmt.Errorf("control: reading %s: %w", id, err)
	}
	if res.Item == nil {
		return false, nil
	}
	if err := attributevalue.UnmarshalMap(res.Item, out); err != nil {
		return false, fmt.Errorf("control: decoding %s: %w", id, err)
	}
	return true, nil
}

// update applies an update to one item under a condition; ok is false when the condition
// failed.
func (s *Store) update(ctx context.Context, id string, upd expression.UpdateBuilder, cond *expression.ConditionBuilder) (ok bool, err error) {
	b := expression.NewBuilder().WithUpdate(upd)
	if cond != nil {
		b = b.WithCondition(*cond)
	}
	expr, err := ddb.Build(b)
	if err != nil {
		return false, err
	}
	_, err = s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &s.Name,
		Key:                       key(id),
		UpdateExpression:          expr.Update(),
		ConditionExpression:       expr.Condition(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
	})
	if ddb.IsConditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("control: updating %s: %w", id, err)
	}
	return true, nil
}

// put writes a whole item under a condition; ok is false when the condition failed.
func (s *Store) put(ctx context.Context, item any, cond *expression.ConditionBuilder) (bool, error) {
	av, err := attributevalue.MarshalMap(item)
	if err != nil {
		return false, err
	}
	in := &dynamodb.PutItemInput{TableName: &s.Name, Item: av}
	if cond != nil {
		expr, err := ddb.Build(expression.NewBuilder().WithCondition(*cond))
		if err != nil {
			return false, err
		}
		in.ConditionExpression = expr.Condition()
		in.ExpressionAttributeNames = expr.Names()
		in.ExpressionAttributeValues = expr.Values()
	}
	_, err = s.DB.PutItem(ctx, in)
	if ddb.IsConditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("control: writing: %w", err)
	}
	return true, nil
}

// scanPrefix visits every item whose id starts with prefix.
func (s *Store) scanPrefix(ctx context.Context, prefix string, visit func(map[string]types.AttributeValue) error) error {
	expr, err := ddb.Build(expression.NewBuilder().WithFilter(ddb.Name("id").BeginsWith(prefix)))
	if err != nil {
		return err
	}
	p := dynamodb.NewScanPaginator(s.DB, &dynamodb.ScanInput{
		TableName:                 &s.Name,
		FilterExpression:          expr.Filter(),
		ExpressionAttributeNames:  expr.Names(),
		ExpressionAttributeValues: expr.Values(),
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, item := range page.Items {
			if err := visit(item); err != nil {
				return err
			}
		}
	}
	return nil
}

func condPtr(c expression.ConditionBuilder) *expression.ConditionBuilder { return &c }
