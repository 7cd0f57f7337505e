package stream

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/schema"
)

// relation is what the stream knows of a pgoutput relation: the table as the WAL
// describes it (column order of the tuples), or why its changes are skipped.
type relation struct {
	msg   *pglogrepl.RelationMessage
	table *schema.Table // nil: not replicated
	skip  string
	// floor is the LSN of the table's last schema change: items written before it are
	// in the old shape and must not be merged into (0: none).
	floor uint64
}

const notConfigured = "not in the configured tables"

// describe builds the stream's view of a relation: columns and their order come from the
// Relation message (that is how tuples are laid out); the item key and the SQL types used
// to re-read rows come from the catalog and the configuration, as for the snapshot.
func (s *Streamer) describe(ctx context.Context, m *pglogrepl.RelationMessage) (*relation, error) {
	rel := &relation{msg: m}
	tc, ok := s.Env.Config.TableFor(relationIdent(m))
	if !ok {
		rel.skip = notConfigured
		return rel, nil
	}
	cat, err := pg.DescribeTable(ctx, s.Env.PG, s.Env.Types, m.Namespace, m.RelationName, tc.KeyColumns)
	if errors.Is(err, pg.ErrNoTable) {
		// Dropped since: its remaining changes still apply, keyed by the replica identity.
		cat = &schema.Table{Schema: m.Namespace, Name: m.RelationName}
	} else if err != nil {
		return nil, err
	}
	t, skip, err := relationTable(m, cat, tc.Target, func(c *pglogrepl.RelationMessageColumn) (schema.Column, error) {
		typ, err := s.Env.Types.Lookup(ctx, s.Env.PG, c.DataType)
		if err != nil {
			return schema.Column{}, err
		}
		col := schema.Column{Name: c.Name, Type: typ}
		if ci := cat.Column(c.Name); ci >= 0 {
			col.SQLType = cat.Columns[ci].SQLType
		} else if col.SQLType, err = pg.FormatType(ctx, s.Env.PG, c.DataType, c.TypeModifier); err != nil {
			return schema.Column{}, err
		}
		return col, nil
	})
	if err != nil {
		return nil, err
	}
	rel.table, rel.skip = t, skip
	return rel, nil
}

// relationTable is the table a Relation message describes, replicated into target: its
// columns in the message's order (how tuples are laid out), each resolved by column; its
// item key from the catalog's view cat, or else from the replica identity. A table that
// cannot be replicated is nil, with the reason in skip.
func relationTable(m *pglogrepl.RelationMessage, cat *schema.Table, target string, column func(*pglogrepl.RelationMessageColumn) (schema.Column, error)) (t *schema.Table, skip string, err error) {
	t = &schema.Table{Schema: m.Namespace, Name: m.RelationName, OID: m.RelationID, Target: target, ReplicaIdentity: m.ReplicaIdentity, Partitioned: cat.Partitioned}
	for i, c := range m.Columns {
		col, err := column(c)
		if err != nil {
			return nil, "", err
		}
		t.Columns = append(t.Columns, col)
		// The Relation message flags the replica identity's columns (all of them for FULL):
		// what this stream's old tuples will carry.
		if c.Flags&1 != 0 {
			t.Identity = append(t.Identity, i)
		}
	}
	for _, ci := range cat.Key {
		i := t.Column(cat.Columns[ci].Name)
		if i < 0 {
			return nil, fmt.Sprintf("key column %s is not in the replication stream's relation (the key changed?)", cat.Columns[ci].Name), nil
		}
		t.Key = append(t.Key, i)
	}
	if len(t.Key) == 0 && m.ReplicaIdentity != 'f' {
		for i, c := range m.Columns {
			if c.Flags&1 != 0 {
				t.Key = append(t.Key, i)
			}
		}
	}
	if err := t.Validate(); err != nil {
		return nil, err.Error(), nil
	}
	return t, "", nil
}

// relationIdent is the table a Relation message describes.
func relationIdent(m *pglogrepl.RelationMessage) ident.Table {
	return ident.Table{Schema: m.Namespace, Name: m.RelationName}
}
