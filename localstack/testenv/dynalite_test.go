package testenv

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/ddb"
	"tandem/shared/precedence"
)

// TestDynalite: the harness installs and starts dynalite, Tandem's table creation (with its
// TTL call) succeeds on it, a snapshot write lands under Tandem's guard, and a snapshot
// write over a streamed item is refused by the same guard: the conditional-write
// semantics the benchmarks rely on.
func TestDynalite(t *testing.T) {
	d, err := StartDynalite()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	ctx := context.Background()
	cfg, _ := d.AWSConfig(ctx)
	db := ddb.FromConfig(cfg)
	table := "things"
	err = ddb.EnsureTable(ctx, db, table,
		[]types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		[]types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeN}},
		precedence.AttrExpires, nil)
	if err != nil {
		t.Fatal(err)
	}
	put := func(item map[string]types.AttributeValue, cond expression.ConditionBuilder) error {
		expr, err := ddb.Build(expression.NewBuilder().WithCondition(cond))
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &table, Item: item,
			ConditionExpression: expr.Condition(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values()})
		return err
	}
	row := func() map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: "1"}, "v": &types.AttributeValueMemberS{Value: "x"}}
	}
	read := precedence.Read{LSN: 100, Epoch: 1}
	if err := put(precedence.SnapshotItem(row(), read), precedence.Snapshot(read)); err != nil {
		t.Fatalf("snapshot write: %v", err)
	}
	pos := precedence.Position{LSN: 200}
	if err := put(precedence.StreamItem(row(), pos), precedence.Stream(pos)); err != nil {
		t.Fatalf("stream write over a snapshot row: %v", err)
	}
	later := precedence.Read{LSN: 300, Epoch: 1}
	if err := put(precedence.SnapshotItem(row(), later), precedence.Snapshot(later)); !ddb.IsConditionFailed(err) {
		t.Fatalf("snapshot write over a streamed row: got %v, want a failed condition", err)
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
}
