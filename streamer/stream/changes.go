package stream

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"

	"tandem/shared/control"
	"tandem/shared/pg"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// row applies an INSERT (old nil), UPDATE or DELETE (next nil). A change that cannot
// become an item (a key or value DynamoDB will not accept) is queued as a dead letter,
// so it is acknowledged only once the dead letter is durable, and the stream goes on.
func (s *session) row(ctx context.Context, relID uint32, old, next *pglogrepl.TupleData) error {
	rel, ok := s.rels[relID]
	if !ok {
		return fmt.Errorf("pgoutput: change for relation %d before its Relation message", relID)
	}
	p := s.position()
	t := rel.table
	if t == nil {
		return nil
	}
	if next == nil {
		if old == nil {
			return s.submitPoison(ctx, t, "?", p, errors.New("DELETE without old key: the table has REPLICA IDENTITY NOTHING"))
		}
		oldVals, _, err := tuple(t, old)
		if err != nil {
			return err
		}
		return s.submitDelete(ctx, t, oldVals, p)
	}
	vals, unchanged, err := tuple(t, next)
	if err != nil {
		return err
	}
	key, keyErr := t.ItemKey(vals)
	route := ""
	if keyErr == nil {
		route = routingKey(t, key)
	}
	if old != nil {
		// A primary-key update deletes the old key and writes the new one (README "The contract"),
		// even when the new key is one DynamoDB cannot store.
		oldVals, _, err := tuple(t, old)
		if err != nil {
			return err
		}
		if oldKey, err := t.ItemKey(oldVals); err == nil && routingKey(t, oldKey) != route {
			if err := s.submitDelete(ctx, t, oldVals, p); err != nil {
				return err
			}
		}
	}
	if keyErr != nil {
		return s.submitPoison(ctx, t, t.KeyString(vals), p, keyErr)
	}
	if unchanged != nil {
		return s.submitMerge(ctx, rel, key, vals, unchanged, p)
	}
	item, err := t.Item(vals)
	if err != nil {
		return s.submitPoison(ctx, t, t.KeyString(vals), p, err)
	}
	return s.submit(ctx, t, route, t.KeyString(vals), p, func(ctx context.Context) error {
		_, err := s.Env.Writer.Stream(ctx, t, item, p)
		return err
	})
}

func (s *session) submitDelete(ctx context.Context, t *schema.Table, oldVals [][]byte, p precedence.Position) error {
	key, err := t.ItemKey(oldVals)
	if err != nil {
		return s.submitPoison(ctx, t, t.KeyString(oldVals), p, err)
	}
	return s.submit(ctx, t, routingKey(t, key), t.KeyString(oldVals), p, func(ctx context.Context) error {
		_, err := s.Env.Writer.Delete(ctx, t, key, p)
		return err
	})
}

// submitMerge applies an UPDATE that left unchanged TOAST values out (README "The contract"): merged
// into the existing item, or, when there is none yet, completed by re-reading the row
// from PostgreSQL before the position can be acknowledged.
func (s *session) submitMerge(ctx context.Context, rel *relation, key map[string]types.AttributeValue, vals [][]byte, unchanged []bool, p precedence.Position) error {
	t, floor := rel.table, rel.floor
	set, err := t.Item(vals)
	if err != nil {
		return s.submitPoison(ctx, t, t.KeyString(vals), p, err)
	}
	var remove []string
	for i, v := range vals {
		if v == nil && !unchanged[i] {
			remove = append(remove, t.Columns[i].Name)
		}
	}
	keyVals := keyText(t, vals)
	return s.submit(ctx, t, routingKey(t, key), t.KeyString(vals), p, func(ctx context.Context) error {
		_, missing, err := s.Env.Writer.Merge(ctx, t, key, set, remove, p, floor)
		if err != nil || !missing {
			return err
		}
		full := append([][]byte(nil), vals...)
		current, found, err := pg.ReadRow(ctx, s.Env.PG, t, keyVals)
		if err != nil {
			return err
		}
		// Not found: the row was deleted since; a later DELETE in the stream tombstones
		// whatever is written now.
		if found {
			for i := range full {
				if unchanged[i] {
					full[i] = current[i]
				}
			}
		}
		item, err := t.Item(full)
		if err != nil {
			return err
		}
		_, err = s.Env.Writer.Stream(ctx, t, item, p)
		return err
	})
}

// submit queues a write of the item named by route (see routingKey); keyText names the
// row in a dead letter should the write turn out to be poison.
func (s *session) submit(ctx context.Context, t *schema.Table, route, keyText string, p precedence.Position, write func(context.Context) error) error {
	run := write
	if s.BeforeApply != nil {
		run = func(ctx context.Context) error {
			s.BeforeApply(ctx, t.Source(), p)
			return write(ctx)
		}
	}
	return s.ap.submit(ctx, job{key: route, txn: s.txn, run: s.counted(run), deadLetter: s.deadLetterer(t, keyText, p)})
}

// submitPoison queues a change known to be poison before any write: only its dead letter
// is written, in turn with the table's other changes.
func (s *session) submitPoison(ctx context.Context, t *schema.Table, keyText string, p precedence.Position, err error) error {
	return s.ap.submit(ctx, job{key: t.Source(), txn: s.txn, run: func(context.Context) error { return err }, deadLetter: s.deadLetterer(t, keyText, p)})
}

// deadLetterer records a poison change of t at p (README "Bad input and faults"): a dead letter naming the
// table, key, LSN and column, and the table marked degraded.
func (s *session) deadLetterer(t *schema.Table, keyText string, p precedence.Position) func(context.Context, error) error {
	return func(ctx context.Context, cause error) error {
		d := control.DeadLetterOf(cause, t.Source(), keyText, p.LSN, "stream")
		d.Seq = p.Seq
		s.Env.Log.Error("change dead-lettered", "table", d.Table, "key", d.Key, "column", d.Column, "position", p.String(), "reason", d.Reason)
		s.metrics.deadLetters.Add(1)
		return s.Env.Control.AddDeadLetter(ctx, d)
	}
}
