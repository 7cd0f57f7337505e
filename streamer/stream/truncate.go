package stream

import (
	"context"

	"github.com/jackc/pglogrepl"
)

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
