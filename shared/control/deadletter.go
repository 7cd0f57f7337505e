package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"

	"tandem/shared/ddb"
	"tandem/shared/fault"
)

const deadLetterPrefix = "deadletter#"

// DeadLetter is a change or row Tandem could not apply (README "Bad input and faults"): a value or key
// DynamoDB will never accept. The stream and the snapshot go on without it; its table is
// marked degraded until it is snapshotted again.
type DeadLetter struct {
	ID     string `dynamodbav:"id"`
	Table  string `dynamodbav:"table"`
	Key    string `dynamodbav:"key"`
	Column string `dynamodbav:"column,omitempty"`
	LSN    uint64 `dynamodbav:"lsn"`
	// Seq orders changes inside one transaction (two poison changes of one key in one
	// transaction are two dead letters).
	Seq    uint32 `dynamodbav:"seq,omitempty"`
	Source string `dynamodbav:"source"`
	Reason string `dynamodbav:"reason"`
	At     string `dynamodbav:"at"`
}

// DeadLetterOf describes a poison error as a dead letter (table, key and column from the
// error when it names them).
func DeadLetterOf(err error, table, key string, lsn uint64, source string) DeadLetter {
	d := DeadLetter{Table: table, Key: key, LSN: lsn, Source: source, Reason: err.Error()}
	if p, ok := err.(*fault.PoisonError); ok {
		if p.Table != "" {
			d.Table = p.Table
		}
		if p.Key != "" {
			d.Key = p.Key
		}
		d.Column = p.Column
	}
	return d
}

// maxReason bounds a dead letter's reason: errors may quote values, and the control table
// item must stay far below DynamoDB's item limit.
const maxReason = 2000

// AddDeadLetter records a change that could not be applied, and marks its table degraded
// (not consistent: DynamoDB lacks that change). Both writes are idempotent: a retried or
// replayed dead letter overwrites itself. The item id hashes the key, so a key too long
// for DynamoDB is still recorded in full.
func (s *Store) AddDeadLetter(ctx context.Context, d DeadLetter) error {
	sum := sha256.Sum256([]byte(d.Table + "\x00" + d.Key))
	d.ID = fmt.Sprintf("%s%s#%s#%d#%d", deadLetterPrefix, d.Table, hex.EncodeToString(sum[:8]), d.LSN, d.Seq)
	d.At = s.now()
	if len(d.Reason) > maxReason {
		d.Reason = d.Reason[:maxReason] + "..."
	}
	if _, err := s.put(ctx, d, nil); err != nil {
		return err
	}
	if d.Key == "*" {
		return nil // the whole table is skipped: its state says so already
	}
	return s.MarkDegraded(ctx, d.Table, fmt.Sprintf("dead letter at LSN %s: %s", pglogrepl.LSN(d.LSN), d.Reason))
}

// MarkDegraded records that a table's target lacks a change (a dead letter): it is not
// consistent until snapshotted again (plan with reset, or a re-snapshot of the table).
func (s *Store) MarkDegraded(ctx context.Context, source, reason string) error {
	upd := expression.Set(ddb.Name("degraded"), expression.Value(reason)).
		Set(ddb.Name("consistent"), expression.Value(false)).
		Set(ddb.Name("updated_at"), expression.Value(s.now()))
	_, err := s.update(ctx, tableID(source), upd, condPtr(expression.AttributeExists(ddb.Name("id"))))
	return err
}

// DeadLetters lists the dead letters, of one table or (table "") of all.
func (s *Store) DeadLetters(ctx context.Context, table string) ([]DeadLetter, error) {
	prefix := deadLetterPrefix
	if table != "" {
		prefix += table + "#"
	}
	var out []DeadLetter
	err := s.scanPrefix(ctx, prefix, func(item map[string]types.AttributeValue) error {
		var d DeadLetter
		if err := attributevalue.UnmarshalMap(item, &d); err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("control: listing dead letters: %w", err)
	}
	return out, nil
}
