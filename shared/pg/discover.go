package pg

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"tandem/shared/ident"
	"tandem/shared/mapping"
	"tandem/shared/schema"
)

// PublicationTables lists the tables a publication replicates.
func PublicationTables(ctx context.Context, q Querier, publication string) ([]ident.Table, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", publication).Scan(&exists); err != nil {
		return nil, fmt.Errorf("postgres: reading publication %s: %w", publication, err)
	}
	if !exists {
		return nil, Misconfiguredf("postgres: publication %q does not exist: run the plan handler (it creates it) or CREATE PUBLICATION %s FOR ALL TABLES", publication, publication)
	}
	rows, err := q.Query(ctx, "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2", publication)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing publication %s: %w", publication, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ident.Table, error) {
		var t ident.Table
		return t, r.Scan(&t.Schema, &t.Name)
	})
}

// ErrNoTable means the table does not exist (any more).
var ErrNoTable = errors.New("table does not exist")

// DescribeTable reads a table's columns, key, replica identity and size estimate.
// keyColumns, when given, replaces the primary key as the item key.
func DescribeTable(ctx context.Context, q Querier, types *Types, schemaName, name string, keyColumns []string) (*schema.Table, error) {
	t := &schema.Table{Schema: schemaName, Name: name}
	var ident, relkind string
	var reltuples float64
	err := q.QueryRow(ctx, `
		SELECT c.oid, c.relreplident::text, c.reltuples::float8, c.relkind::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`, schemaName, name).
		Scan(&t.OID, &ident, &reltuples, &relkind)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: table %s: %w", t.Source(), ErrNoTable)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: describing %s: %w", t.Source(), err)
	}
	t.ReplicaIdentity = ident[0]
	t.Partitioned = relkind == "p"
	t.EstimatedRows = int64(reltuples)

	// Generated columns are left out: PostgreSQL 15's pgoutput does not send them, so the
	// snapshot does not read them either and an item never depends on which path wrote
	// it. The type keeps its modifier (character(6), not character = character(1)): key
	// values are cast with it. identity says whether the column is in the replica
	// identity: the primary key for DEFAULT (only a NOT DEFERRABLE one can be), the
	// chosen index for USING INDEX, every column for FULL.
	rows, err := q.Query(ctx, `
		SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod),
		       coalesce((SELECT k.n FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(att, n)
		                 WHERE i.indrelid = a.attrelid AND i.indisprimary AND k.att = a.attnum), 0)::int,
		       a.attgenerated <> '',
		       CASE c.relreplident
		         WHEN 'f' THEN true
		         WHEN 'd' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary
		                               AND i.indimmediate AND a.attnum = ANY(i.indkey))
		         WHEN 'i' THEN EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisreplident
		                               AND a.attnum = ANY(i.indkey))
		         ELSE false END
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, t.OID)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading columns of %s: %w", t.Source(), err)
	}
	type col struct {
		name, sqlType       string
		oid                 uint32
		pkPos               int
		generated, identity bool
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.name, &c.oid, &c.sqlType, &c.pkPos, &c.generated, &c.identity)
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: reading columns of %s: %w", t.Source(), err)
	}
	pk := map[int]int{}
	generated := map[string]bool{}
	for _, c := range cols {
		if c.generated {
			generated[c.name] = true
			if c.pkPos > 0 {
				return nil, Misconfiguredf("table %s: primary key column %q is a generated column, which logical replication does not send: configure key_columns without it", t.Source(), c.name)
			}
			continue
		}
		typ, err := types.Lookup(ctx, q, c.oid)
		if err != nil {
			return nil, err
		}
		i := len(t.Columns)
		t.Columns = append(t.Columns, schema.Column{Name: c.name, Type: typ, SQLType: c.sqlType})
		if c.pkPos > 0 {
			pk[c.pkPos] = i
		}
		if c.identity {
			t.Identity = append(t.Identity, i)
		}
	}
	if len(keyColumns) > 0 {
		for _, k := range keyColumns {
			i := t.Column(k)
			if i < 0 {
				if generated[k] {
					return nil, Misconfiguredf("config: key_columns of %s names %q, a generated column, which logical replication does not send: choose other key columns", t.Source(), k)
				}
				return nil, fmt.Errorf("config: key_columns of %s names %q, which is not a column of the table", t.Source(), k)
			}
			t.Key = append(t.Key, i)
		}
	} else {
		for pos := 1; pos <= len(pk); pos++ {
			t.Key = append(t.Key, pk[pos])
		}
	}
	return t, nil
}

// FormatType is format_type(oid, typmod): the SQL type a text value is cast to, with its
// modifier (character(6), bit(8), numeric(10,2)).
func FormatType(ctx context.Context, q Querier, oid uint32, typmod int32) (string, error) {
	var name string
	if err := q.QueryRow(ctx, "SELECT format_type($1, $2)", oid, typmod).Scan(&name); err != nil {
		return "", fmt.Errorf("postgres: format_type(%d, %d): %w", oid, typmod, err)
	}
	return name, nil
}

// Types caches what mapping needs of each type OID. Domains resolve to their base type.
type Types struct {
	mu   sync.Mutex
	byID map[uint32]*mapping.Type
}

// Lookup returns the type of oid, reading pg_type on first use.
func (ts *Types) Lookup(ctx context.Context, q Querier, oid uint32) (*mapping.Type, error) {
	ts.mu.Lock()
	t, ok := ts.byID[oid]
	ts.mu.Unlock()
	if ok {
		return t, nil
	}
	var name, category, typtype string
	var elem, base uint32
	var delim string
	err := q.QueryRow(ctx, `
		SELECT typname, typcategory::text, typtype::text, typelem, typbasetype, typdelim::text
		FROM pg_type WHERE oid = $1`, oid).Scan(&name, &category, &typtype, &elem, &base, &delim)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading type %d: %w", oid, err)
	}
	if typtype == "d" {
		t, err = ts.Lookup(ctx, q, base)
		if err != nil {
			return nil, err
		}
	} else {
		t = &mapping.Type{OID: oid, Name: name, Category: category[0], Delim: ','}
		if category == "A" && elem != 0 {
			if t.Elem, err = ts.Lookup(ctx, q, elem); err != nil {
				return nil, err
			}
			var elemDelim string
			if err := q.QueryRow(ctx, "SELECT typdelim::text FROM pg_type WHERE oid = $1", elem).Scan(&elemDelim); err == nil && elemDelim != "" {
				t.Delim = elemDelim[0]
			}
		}
	}
	ts.mu.Lock()
	if ts.byID == nil {
		ts.byID = map[uint32]*mapping.Type{}
	}
	ts.byID[oid] = t
	ts.mu.Unlock()
	return t, nil
}

// FilledColumns reports which of the named columns may hold non-NULL values in rows that
// existed before the column was added: those with a default (stored as a "missing" value
// or written by a table rewrite). Rows are not re-logged for that, so a new snapshot is
// needed (README "Bad input and faults").
func FilledColumns(ctx context.Context, q Querier, schemaName, table string, columns []string) ([]string, error) {
	rows, err := q.Query(ctx, `
		SELECT a.attname FROM pg_attribute a
		JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = ANY($3) AND (a.atthasdef OR a.atthasmissing)`,
		schemaName, table, columns)
	if err != nil {
		return nil, fmt.Errorf("postgres: reading column defaults of %s: %w", ident.Table{Schema: schemaName, Name: table}, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
