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
	"tandem/shared/target"
)

// row applies an INSERT (old nil), UPDATE or DELETE (next nil).
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
			return s.deadLetter(ctx, t, "?", p, "DELETE without old key: the table has REPLICA IDENTITY NOTHING")
		}
		oldVals, _ := tuple(old)
		return s.submitDelete(ctx, t, oldVals, p)
	}
	vals, unchanged := tuple(next)
	key, err := t.ItemKey(vals)
	if err != nil {
		return s.deadLetter(ctx, t, t.KeyString(vals), p, err.Error())
	}
	route := routingKey(t, key)
	if old != nil {
		// A primary-key update deletes the old key and writes the new one (DESIGN §2.7).
		oldVals, _ := tuple(old)
		if oldKey, err := t.ItemKey(oldVals); err == nil && routingKey(t, oldKey) != route {
			if err := s.submitDelete(ctx, t, oldVals, p); err != nil {
				return err
			}
		}
	}
	if unchanged != nil {
		return s.submitMerge(ctx, rel, key, vals, unchanged, p)
	}
	item, err := t.Item(vals)
	if err != nil {
		return s.deadLetter(ctx, t, t.KeyString(vals), p, err.Error())
	}
	return s.submit(ctx, t, route, p, func(ctx context.Context) error {
		_, err := s.Env.Writer.Stream(ctx, t, item, p)
		return s.tooLarge(ctx, t, t.KeyString(vals), p, err)
	})
}

func (s *session) submitDelete(ctx context.Context, t *schema.Table, oldVals [][]byte, p precedence.Position) error {
	key, err := t.ItemKey(oldVals)
	if err != nil {
		return s.deadLetter(ctx, t, t.KeyString(oldVals), p, err.Error())
	}
	return s.submit(ctx, t, routingKey(t, key), p, func(ctx context.Context) error {
		_, err := s.Env.Writer.Delete(ctx, t, key, p)
		return err
	})
}

// submitMerge applies an UPDATE that left unchanged TOAST values out (DESIGN §2.6): merged
// into the existing item, or, when there is none yet, completed by re-reading the row
// from PostgreSQL before the position can be acknowledged.
func (s *session) submitMerge(ctx context.Context, rel *relation, key map[string]types.AttributeValue, vals [][]byte, unchanged []bool, p precedence.Position) error {
	t, floor := rel.table, rel.floor
	set, err := t.Item(vals)
	if err != nil {
		return s.deadLetter(ctx, t, t.KeyString(vals), p, err.Error())
	}
	var remove []string
	for i, v := range vals {
		if v == nil && !unchanged[i] {
			remove = append(remove, t.Columns[i].Name)
		}
	}
	keyVals := keyText(t, vals)
	return s.submit(ctx, t, routingKey(t, key), p, func(ctx context.Context) error {
		_, missing, err := s.Env.Writer.Merge(ctx, t, key, set, remove, p, floor)
		if err != nil || !missing {
			return s.tooLarge(ctx, t, t.KeyString(vals), p, err)
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
		return s.tooLarge(ctx, t, t.KeyString(vals), p, err)
	})
}

// submit queues a write of the item named by route (see routingKey).
func (s *session) submit(ctx context.Context, t *schema.Table, route string, p precedence.Position, write func(context.Context) error) error {
	run := write
	if s.BeforeApply != nil {
		run = func(ctx context.Context) error {
			s.BeforeApply(ctx, t.Source(), p)
			return write(ctx)
		}
	}
	return s.ap.submit(ctx, job{key: route, txn: s.txn, run: s.counted(run)})
}

// tooLarge turns a row DynamoDB cannot hold into a dead letter, so one bad row does not
// stall the stream (and the WAL on the primary) forever.
func (s *session) tooLarge(ctx context.Context, t *schema.Table, key string, p precedence.Position, err error) error {
	var tl *target.TooLargeError
	if errors.As(err, &tl) {
		return s.deadLetter(ctx, t, key, p, err.Error())
	}
	return err
}

func (s *session) deadLetter(ctx context.Context, t *schema.Table, key string, p precedence.Position, reason string) error {
	s.Env.Log.Error("change dead-lettered", "table", t.Source(), "key", key, "position", p.String(), "reason", reason)
	s.metrics.deadLetters.Add(1)
	return s.Env.Control.AddDeadLetter(ctx, control.DeadLetter{Table: t.Source(), Key: key, LSN: p.LSN, Source: "stream", Reason: reason})
}
