package pg

import (
	"context"
	"errors"
	"fmt"
	"tandem/shared/ident"

	"github.com/jackc/pgx/v5"
)

// MissingTables returns those of the tables that are no table of the database (a
// misspelling in the configuration, or a table dropped since).
func MissingTables(ctx context.Context, q Querier, tables []ident.Table) ([]ident.Table, error) {
	var missing []ident.Table
	for _, t := range tables {
		var exists bool
		err := q.QueryRow(ctx, `
			SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			               WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))`, t.Schema, t.Name).Scan(&exists)
		if err != nil {
			return nil, fmt.Errorf("postgres: looking up table %s: %w", t, err)
		}
		if !exists {
			missing = append(missing, t)
		}
	}
	return missing, nil
}

// Publication is a publication as the catalog describes it.
type Publication struct {
	Exists, AllTables bool
}

// ReadPublication reads whether the publication exists and whether it is FOR ALL TABLES.
func ReadPublication(ctx context.Context, q Querier, name string) (Publication, error) {
	var p Publication
	err := q.QueryRow(ctx, "SELECT true, puballtables FROM pg_publication WHERE pubname = $1", name).Scan(&p.Exists, &p.AllTables)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("postgres: reading publication %s: %w", name, err)
	}
	return p, nil
}

// DropFromPublication removes tables from a publication.
func DropFromPublication(ctx context.Context, q Querier, name string, tables []ident.Table) error {
	if len(tables) == 0 {
		return nil
	}
	sql := "ALTER PUBLICATION " + ident.Quote(name) + " DROP TABLE " + sqlList(tables)
	if _, err := q.Exec(ctx, sql); err != nil {
		return privilegeError(fmt.Errorf("postgres: removing %s from publication %s: %w", textList(tables), name, err), name)
	}
	return nil
}

// PublicationMembers lists the tables added to a publication one by one (ALTER
// PUBLICATION ... DROP TABLE can remove exactly these; partitions a partitioned member
// publishes and tables of a published schema are not among them).
func PublicationMembers(ctx context.Context, q Querier, name string) ([]ident.Table, error) {
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname
		FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = p.oid
		JOIN pg_class c ON c.oid = r.prrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.pubname = $1 ORDER BY 1, 2`, name)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing publication %s: %w", name, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ident.Table, error) {
		var t ident.Table
		return t, r.Scan(&t.Schema, &t.Name)
	})
}
