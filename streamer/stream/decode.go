package stream

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"

	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// message applies one pgoutput message.
func (s *session) message(ctx context.Context, m pglogrepl.Message) error {
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		return s.relation(ctx, m)
	case *pglogrepl.BeginMessage:
		// Commit order is the order PostgreSQL applied changes in; the commit LSN is known
		// at Begin, so changes apply as they arrive instead of waiting for the Commit.
		s.txn, s.commitLSN, s.seq = s.tr.begin(m.CommitTime), m.FinalLSN, 0
	case *pglogrepl.CommitMessage:
		s.tr.commit(s.txn, m.TransactionEndLSN)
		s.txn = nil
	case *pglogrepl.InsertMessage:
		return s.row(ctx, m.RelationID, nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		return s.row(ctx, m.RelationID, m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return s.row(ctx, m.RelationID, m.OldTuple, nil)
	case *pglogrepl.TruncateMessage:
		return s.truncate(ctx, m)
	}
	return nil
}

func (s *session) position() precedence.Position {
	s.seq++
	return precedence.Position{LSN: uint64(s.commitLSN), Seq: s.seq}
}

// tuple splits pgoutput tuple data of table t into column texts (nil for NULL) and the
// columns whose unchanged TOAST value was not sent. A tuple must carry every column of
// its Relation message: anything else is a stream Tandem cannot read.
func tuple(t *schema.Table, td *pglogrepl.TupleData) (vals [][]byte, unchanged []bool, err error) {
	if len(td.Columns) != len(t.Columns) {
		return nil, nil, fmt.Errorf("pgoutput: a change of table %s carries %d columns, its Relation message %d", t.Source(), len(td.Columns), len(t.Columns))
	}
	vals = make([][]byte, len(td.Columns))
	for i, c := range td.Columns {
		switch c.DataType {
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			vals[i] = c.Data
		case pglogrepl.TupleDataTypeToast:
			if unchanged == nil {
				unchanged = make([]bool, len(td.Columns))
			}
			unchanged[i] = true
		}
	}
	return vals, unchanged, nil
}

// keyText is a row's key columns as text, the form PostgreSQL reads them back in.
func keyText(t *schema.Table, vals [][]byte) []string {
	key := make([]string, len(t.Key))
	for i, ci := range t.Key {
		key[i] = string(vals[ci])
	}
	return key
}

// routingKey names the DynamoDB item a change writes, so every change of one item goes
// to one worker in WAL order. It is the mapped key, not the text: numeric 1 and 1.0 are
// one item.
func routingKey(t *schema.Table, key map[string]types.AttributeValue) string {
	return t.Source() + "\x00" + t.KeyID(key)
}
