package target

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"tandem/shared/ddb"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// RemoveStale deletes the items of the given keys that are still snapshot rows read before
// the fence (precedence.StaleSnapshot): what a snapshot chunk a TRUNCATE overtook may have
// written after the TRUNCATE's tombstones. Anything else at those keys (a tombstone, a row
// streamed or read after the fence) stays. It returns how many items it removed.
func (w *Writer) RemoveStale(ctx context.Context, t *schema.Table, keys []Item, fenceLSN uint64) (int, error) {
	expr, err := ddb.Build(expression.NewBuilder().WithCondition(precedence.StaleSnapshot(fenceLSN)))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, key := range keys {
		_, err := w.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName:                 &t.Target,
			Key:                       key,
			ConditionExpression:       expr.Condition(),
			ExpressionAttributeNames:  expr.Names(),
			ExpressionAttributeValues: expr.Values(),
		})
		switch {
		case err == nil:
			n++
		case !ddb.IsConditionFailed(err):
			return n, fmt.Errorf("dynamodb: removing stale snapshot rows of %s: %w", t.Target, err)
		}
	}
	return n, nil
}
