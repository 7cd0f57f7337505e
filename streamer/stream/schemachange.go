package stream

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"

	"tandem/shared/control"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/schema"
)

// relation records a table's shape. A table seen for the first time (e.g. just added to
// the publication) is planned and snapshotted while the stream goes on. A changed shape
// that existing items cannot express (a dropped column, a changed type, a new column
// holding values for old rows) is a barrier followed by a new snapshot of the table
// whose writes replace the items the stream wrote before the change (README "Bad input and faults").
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
		return s.skipTable(ctx, relationIdent(m).String(), rel.skip)
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
	if err := pipeline.StaleConfig(st, t); err != nil {
		return err
	}
	reason, err := s.resnapshotReason(ctx, t, st)
	var refused *pg.Misconfigured
	if errors.As(err, &refused) {
		// A configuration change the stream cannot apply (a new key for the old target):
		// writing on would mix keys in one target. Plan refuses it with the fix.
		rel.table, rel.skip = nil, err.Error()
		if prev != nil && prev.skip == rel.skip {
			return nil
		}
		return s.skipTable(ctx, t.Source(), rel.skip)
	}
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
	if again, err := s.resnapshotReason(ctx, t, st); err != nil || again == "" {
		return err
	}
	return s.reshapeLocked(ctx, t, st.Shape, reason, floor)
}

func (s *session) reshapeLocked(ctx context.Context, t *schema.Table, recorded []string, reason string, floor uint64) error {
	s.Env.Log.Info("table changed: snapshotting it again while streaming", "table", t.Source(), "change", reason, "floor_lsn", pglogrepl.LSN(floor).String())
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

// resnapshotReason explains why the items written so far no longer match the table as
// configured: its target or key changed in the configuration, it is replicated again
// after it was removed (pipeline.Drift, as plan decides it), or its shape changed.
func (s *session) resnapshotReason(ctx context.Context, t *schema.Table, st control.TableState) (string, error) {
	reason, err := pipeline.Drift(st, t)
	if err != nil || reason != "" {
		return reason, err
	}
	return s.reshaped(ctx, t, st.Shape)
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
		name, oid := shapeColumn(c)
		was[name] = oid
	}
	var added []string
	for i, c := range t.Columns {
		_, oid := shapeColumn(now[i])
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

// shapeColumn splits a Shape entry: the column name may hold a ":", the type oid cannot.
func shapeColumn(entry string) (name, oid string) {
	i := strings.LastIndexByte(entry, ':')
	if i < 0 {
		return entry, ""
	}
	return entry[:i], entry[i+1:]
}
