package stream

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"

	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// truncate removes every row the tables had before the TRUNCATE (DESIGN §2.8). Earlier
// changes are written first (a barrier, brief: the queues are bounded); then the fence is
// recorded at once, which stops a running snapshot of the table, and the tombstones are
// written in the background while the stream goes on for every table. The TRUNCATE's
// transaction is acknowledged, and the table becomes consistent, only once they are all
// durable. Rows a fenced snapshot wrote after the truncate are swept by that snapshot or
// by finalize.
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
		s.tombstoneInBackground(t, p)
	}
	return nil
}

// tombstoneInBackground writes the TRUNCATE's tombstones of t, retried like any write. If
// the session ends first, the transaction stays unacknowledged and is replayed.
func (s *session) tombstoneInBackground(t *schema.Table, p precedence.Position) {
	x := s.txn
	s.tr.add(x)
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		n := 0
		j := job{key: t.Source(), txn: x, deadLetter: s.deadLetterer(t, "(TRUNCATE)", p), run: func(ctx context.Context) (err error) {
			n, err = s.Env.Writer.Truncate(ctx, t, p)
			return err
		}}
		if err := s.ap.apply(s.work, j); err != nil {
			// The session must end so the TRUNCATE is replayed: left pending, it would hold
			// every later position back unacknowledged.
			s.ap.fail(fmt.Errorf("truncating %s: %w", t.Source(), err))
			s.Env.Log.Warn("truncate interrupted: it is applied again after the reconnect", "table", t.Source(), "position", p.String(), "error", err.Error())
			return
		}
		s.tr.done(x)
		s.Env.Log.Info("truncate applied", "table", t.Source(), "position", p.String(), "rows_tombstoned", n)
	}()
}
