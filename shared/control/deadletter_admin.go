package control

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"tandem/shared/ddb"
)

// RemoveDeadLetter deletes one dead letter (retried with success, or cleared by the
// operator). Removing one that is gone already is not an error.
func (s *Store) RemoveDeadLetter(ctx context.Context, id string) error {
	if _, err := s.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &s.Name, Key: key(id)}); err != nil {
		return fmt.Errorf("control: removing dead letter %s: %w", id, err)
	}
	return nil
}

// ClearDegraded removes a table's degraded mark once every change it stood for was
// applied after all (the dead letters retried), but only if the mark is still reason,
// the one read before the retries: a dead letter recorded meanwhile marks the table with
// its own reason and keeps it degraded. The streamer then marks the table consistent
// again by the usual rule. cleared is false when the mark changed or was gone.
func (s *Store) ClearDegraded(ctx context.Context, source, reason string) (cleared bool, err error) {
	upd := expression.Remove(ddb.Name("degraded")).Set(ddb.Name("updated_at"), expression.Value(s.now()))
	return s.update(ctx, tableID(source), upd, condPtr(ddb.Name("degraded").Equal(expression.Value(reason))))
}
