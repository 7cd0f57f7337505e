package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"

	"tandem/shared/control"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/precedence"
	"tandem/shared/schema"
	"tandem/shared/snapshot"
	"tandem/shared/target"
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

// tuple splits pgoutput tuple data into column texts (nil for NULL) and the columns whose
// unchanged TOAST value was not sent.
func tuple(td *pglogrepl.TupleData) (vals [][]byte, unchanged []bool) {
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
	return vals, unchanged
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

// truncate removes every row the tables had before the TRUNCATE (DESIGN §2.8). It is a
// barrier: earlier changes are written first. The fence stops a running snapshot, whose
// rows read before the truncate are swept by that snapshot or by finalize.
func (s *session) truncate(ctx context.Context, m *pglogrepl.TruncateMessage) error {
	p := s.position()
	if err := s.ap.drain(); err != nil {
		return err
	}
	for _, id := range m.RelationIDs {
		rel, ok := s.rels[id]
		if !ok || rel.table == nil {
			continue
		}
		t := rel.table
		if err := s.Env.Control.Truncated(ctx, t.Source(), p.LSN); err != nil {
			return err
		}
		n, err := s.Env.Writer.TombstoneAll(ctx, t, p)
		if err != nil {
			return err
		}
		s.Env.Log.Info("truncate applied", "table", t.Source(), "position", p.String(), "rows_tombstoned", n)
	}
	return nil
}

// relation records a table's shape. A table seen for the first time (e.g. just added to
// the publication) is planned and snapshotted while the stream goes on. A changed shape
// that existing items cannot express (a dropped column, a changed type, a new column
// holding values for old rows) is a barrier followed by a new snapshot of the table
// whose writes replace the items the stream wrote before the change (DESIGN §2.9).
func (s *session) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	rel, err := s.describe(ctx, m)
	if err != nil {
		return err
	}
	prev := s.rels[m.RelationID]
	s.rels[m.RelationID] = rel
	if rel.table == nil {
		if rel.skip == notConfigured || (prev != nil && prev.skip == rel.skip) {
			return nil
		}
		return s.skipTable(ctx, qualified(m), rel.skip)
	}
	t := rel.table
	s.shapeMu.Lock()
	defer s.shapeMu.Unlock()
	st, found, err := s.Env.Control.Table(ctx, t.Source())
	if err != nil {
		return err
	}
	if !found {
		return s.planNew(ctx, t)
	}
	rel.floor = st.FloorLSN
	reason, err := s.reshaped(ctx, t, st.Shape)
	if err != nil {
		return err
	}
	if reason != "" {
		// Every change before this transaction is written in the old shape; once they are
		// durable, a snapshot floored at this commit rewrites them.
		if err := s.ap.drain(); err != nil {
			return err
		}
		rel.floor = uint64(s.commitLSN)
		return s.reshapeLocked(ctx, t, st.Shape, reason, rel.floor)
	}
	if slices.Equal(st.Shape, t.Shape()) {
		return nil
	}
	return s.Env.Control.SetShape(ctx, t.Source(), t.Shape())
}

// planNew plans and snapshots, in this process, a replicated table the control table
// does not know (e.g. just added to the publication); s.shapeMu is held.
func (s *session) planNew(ctx context.Context, t *schema.Table) error {
	if _, found, err := s.Env.Control.Table(ctx, t.Source()); err != nil || found {
		return err
	}
	s.Env.Log.Info("new table in the publication: snapshotting it while streaming", "table", t.Source())
	if err := s.plan(ctx, t, control.PlanOptions{}); err != nil {
		return err
	}
	return s.Env.Control.SetShape(ctx, t.Source(), t.Shape())
}

// reshape starts the snapshot that rewrites a table whose shape changed, floored at
// floor, unless the change was handled meanwhile (by the Relation path or the catalog
// watcher, whichever came first).
func (s *session) reshape(ctx context.Context, t *schema.Table, reason string, floor uint64) error {
	s.shapeMu.Lock()
	defer s.shapeMu.Unlock()
	st, found, err := s.Env.Control.Table(ctx, t.Source())
	if err != nil || !found {
		return err
	}
	if again, err := s.reshaped(ctx, t, st.Shape); err != nil || again == "" {
		return err
	}
	return s.reshapeLocked(ctx, t, st.Shape, reason, floor)
}

func (s *session) reshapeLocked(ctx context.Context, t *schema.Table, recorded []string, reason string, floor uint64) error {
	s.Env.Log.Info("table shape changed: snapshotting it again while streaming", "table", t.Source(), "change", reason, "floor_lsn", pglogrepl.LSN(floor).String())
	if err := s.plan(ctx, t, control.PlanOptions{Reset: true, FloorLSN: floor}); err != nil {
		return err
	}
	if slices.Equal(recorded, t.Shape()) {
		return nil
	}
	return s.Env.Control.SetShape(ctx, t.Source(), t.Shape())
}

// skipTable stops replicating a table the stream can no longer apply (no usable key, a
// reserved column name after a schema change): one dead letter, and the table is marked
// failed so it is not reported consistent.
func (s *session) skipTable(ctx context.Context, source, reason string) error {
	s.Env.Log.Error("table skipped", "table", source, "reason", reason)
	if st, found, err := s.Env.Control.Table(ctx, source); err != nil {
		return err
	} else if found {
		if err := s.Env.Control.FailSnapshot(ctx, source, st.Epoch, "changes are skipped: "+reason); err != nil {
			return err
		}
	}
	return s.Env.Control.AddDeadLetter(ctx, control.DeadLetter{Table: source, Key: "*", LSN: uint64(s.commitLSN), Source: "stream", Reason: "table cannot be replicated, its changes are skipped: " + reason})
}

// reshaped explains why items written in the recorded shape no longer match the table, or
// returns "" when they still do (same columns, or only new columns that are NULL in old rows).
func (s *session) reshaped(ctx context.Context, t *schema.Table, recorded []string) (string, error) {
	if recorded == nil {
		return "", nil
	}
	now := t.Shape()
	was := map[string]string{}
	for _, c := range recorded {
		name, oid, _ := strings.Cut(c, ":")
		was[name] = oid
	}
	var added []string
	for i, c := range t.Columns {
		_, oid, _ := strings.Cut(now[i], ":")
		switch old, ok := was[c.Name]; {
		case !ok:
			added = append(added, c.Name)
		case old != oid:
			return "column " + c.Name + " changed type", nil
		}
		delete(was, c.Name)
	}
	for name := range was {
		return "column " + name + " dropped", nil
	}
	if len(added) > 0 {
		filled, err := pg.FilledColumns(ctx, s.Env.PG, t.Schema, t.Name, added)
		if err != nil || len(filled) == 0 {
			return "", err
		}
		return "column " + strings.Join(filled, ", ") + " added with a default", nil
	}
	return "", nil
}

// plan registers a snapshot the streamer runs itself, and starts it.
func (s *session) plan(ctx context.Context, t *schema.Table, o control.PlanOptions) error {
	full, err := s.Env.Describe(ctx, t.Source())
	if err != nil {
		return err
	}
	if *s.Env.Config.CreateTables {
		if err := target.EnsureTable(ctx, s.Env.DB, full); err != nil {
			return err
		}
	}
	o.Target, o.RowsEstimate, o.Runner = full.Target, full.EstimatedRows, control.RunnerStreamer
	st, err := s.Env.Control.Plan(ctx, t.Source(), o)
	if err != nil {
		return err
	}
	s.runSnapshot(ctx, t.Source(), st.Epoch)
	return nil
}

// runSnapshot copies a table in the background, once per epoch, then finalizes it (the
// state machine does that for the snapshots it runs). A copier of an older epoch is
// fenced and stops by itself.
func (s *Streamer) runSnapshot(ctx context.Context, source string, epoch int64) {
	id := fmt.Sprintf("%s@%d", source, epoch)
	if _, running := s.started.LoadOrStore(id, true); running {
		return
	}
	s.snapshots.Add(1)
	go func() {
		defer s.snapshots.Done()
		defer s.started.Delete(id)
		t, err := s.Env.Describe(ctx, source)
		var res snapshot.Result
		if err == nil {
			c := s.Env.Copier()
			c.Runner = control.RunnerStreamer
			res, err = c.Run(ctx, t, time.Time{})
		}
		if err == nil && res.Done {
			_, err = s.Env.Finalize(ctx, pipeline.TableInput{Table: source})
		}
		if err != nil && ctx.Err() == nil {
			s.Env.Log.Error("in-stream snapshot failed", "table", source, "error", err.Error())
			_ = s.Env.Control.FailSnapshot(context.WithoutCancel(ctx), source, epoch, err.Error())
		}
	}()
}

// resumeSnapshots restarts, after a restart of the streamer, the snapshots it runs
// itself that were not finished or not finalized.
func (s *Streamer) resumeSnapshots(ctx context.Context) error {
	tables, err := s.Env.Control.Tables(ctx)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if t.Runner == control.RunnerStreamer && t.State != control.Failed && (t.State != control.Done || t.FinalizedEpoch != t.Epoch) {
			s.runSnapshot(ctx, t.Source, t.Epoch)
		}
	}
	return nil
}
