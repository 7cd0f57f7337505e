package pg

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"tandem/shared/ident"
	"tandem/shared/schema"
)

// Chunk is one page of a table in key order, read in its own short transaction.
type Chunk struct {
	// Rows hold the text of every column (nil for NULL), indexed like Table.Columns.
	Rows [][][]byte
	// LSN is pg_current_wal_lsn() read inside the chunk's transaction, after the rows.
	LSN pglogrepl.LSN
	// LastKey is the text of the last row's key columns, the cursor of the next chunk.
	LastKey []string
}

// ReadChunk reads up to limit rows with keys after the cursor (nil: from the start) and up
// to and including upTo (nil: to the last key), the end of the range being read. The
// transaction lasts one query, so the primary's xmin horizon is never held for long
// (README "The contract"); keyset pagination works for composite keys of any orderable type.
func ReadChunk(ctx context.Context, pool interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}, t *schema.Table, after, upTo []string, limit int) (Chunk, error) {
	return ReadChunkWhere(ctx, pool, t, after, upTo, limit, "")
}

// ReadChunkWhere is ReadChunk of the rows matching filter, a boolean SQL expression on
// the table checked by CheckFilter ("" for every row): a filtered re-snapshot.
func ReadChunkWhere(ctx context.Context, pool interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}, t *schema.Table, after, upTo []string, limit int, filter string) (Chunk, error) {
	var c Chunk
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return c, fmt.Errorf("postgres: chunk of %s: %w", t.Source(), err)
	}
	defer tx.Rollback(ctx)

	sql := "SELECT " + columnList(t) + " FROM " + fromTable(t)
	args := make([]any, 0, len(after)+len(upTo))
	var where []string
	if filter != "" {
		where = append(where, "("+filter+")")
	}
	if after != nil {
		where = append(where, keyTuple(t)+" > "+keyParams(t, len(args)))
		for _, v := range after {
			args = append(args, v)
		}
	}
	if upTo != nil {
		where = append(where, keyTuple(t)+" <= "+keyParams(t, len(args)))
		for _, v := range upTo {
			args = append(args, v)
		}
	}
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY " + keyList(t) + " LIMIT " + strconv.Itoa(limit)
	if c.Rows, err = queryText(ctx, tx, sql, args); err != nil {
		return c, fmt.Errorf("postgres: chunk of %s: %w", t.Source(), err)
	}
	if c.LSN, err = CurrentLSN(ctx, tx); err != nil {
		return c, err
	}
	if err := tx.Commit(ctx); err != nil {
		return c, fmt.Errorf("postgres: chunk of %s: %w", t.Source(), err)
	}
	if n := len(c.Rows); n > 0 {
		last := c.Rows[n-1]
		for _, ci := range t.Key {
			c.LastKey = append(c.LastKey, string(last[ci]))
		}
	}
	return c, nil
}

// ReadRow re-reads the current row with the given key (text of the key columns in key
// order), for an UPDATE whose unchanged TOAST values were not sent (README "The contract").
func ReadRow(ctx context.Context, q Querier, t *schema.Table, key []string) (row [][]byte, found bool, err error) {
	sql := "SELECT " + columnList(t) + " FROM " + fromTable(t) + " WHERE " + keyTuple(t) + " = " + keyParams(t, 0)
	args := make([]any, len(key))
	for i, v := range key {
		args[i] = v
	}
	rows, err := queryText(ctx, q, sql, args)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: re-reading %s (%s): %w", t.Source(), strings.Join(key, ","), err)
	}
	if len(rows) == 0 {
		return nil, false, nil
	}
	return rows[0], true, nil
}

// queryText runs a query with text result format, the same form pgoutput sends, so
// snapshot and stream values go through one mapping.
func queryText(ctx context.Context, q Querier, sql string, args []any) ([][][]byte, error) {
	rows, err := q.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][][]byte
	for rows.Next() {
		raw := rows.RawValues()
		row := make([][]byte, len(raw))
		for i, v := range raw {
			if v != nil {
				row[i] = append(make([]byte, 0, len(v)), v...)
			}
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

func tableIdent(t *schema.Table) string { return t.Ident().SQL() }

// fromTable reads the table itself, never the tables inheriting from it: their rows are
// published, and replicated, as their own tables (README "The contract"). A partitioned table has
// no rows of its own; its rows are its partitions' (published through it with
// publish_via_partition_root).
func fromTable(t *schema.Table) string {
	if t.Partitioned {
		return tableIdent(t)
	}
	return "ONLY " + tableIdent(t)
}

func columnList(t *schema.Table) string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = ident.Quote(c.Name)
	}
	return strings.Join(names, ", ")
}

func keyList(t *schema.Table) string {
	names := make([]string, len(t.Key))
	for i, ci := range t.Key {
		names[i] = ident.Quote(t.Columns[ci].Name)
	}
	return strings.Join(names, ", ")
}

func keyTuple(t *schema.Table) string { return "(" + keyList(t) + ")" }

// keyParams renders ($n+1::text::type, ...), numbering after the first n parameters: key
// values travel as their text form and are converted by the column type's own input
// function, so any orderable type works.
func keyParams(t *schema.Table, n int) string {
	parts := make([]string, len(t.Key))
	for i, ci := range t.Key {
		parts[i] = "$" + strconv.Itoa(n+i+1) + "::text::" + t.Columns[ci].SQLType
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
