package verify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The PostgreSQL side is read here without shared/pg: the catalog says which columns a
// row has, and the rows are read by physical position (ctid ranges of the table itself,
// or of each leaf partition of a partitioned table), never by key order, so neither a
// discovery bug nor a key-paging bug of the snapshot can hide a row.

// sessionSettings are the GUCs under which README "Items in DynamoDB"'s "PostgreSQL's text output" is read. They
// are set per transaction so a pool with other settings still reads the contract's forms.
var sessionSettings = [][2]string{
	{"DateStyle", "ISO, MDY"}, {"IntervalStyle", "postgres"}, {"bytea_output", "hex"},
	{"TimeZone", "UTC"}, {"extra_float_digits", "1"},
}

// column is one replicated column as the catalog describes it.
type column struct {
	name string
	typ  *colType
	// sqlType is format_type() of the column's type: a key value given as text is cast
	// to it for a look-up by key.
	sqlType string
}

// source is the table as the catalog describes it.
type source struct {
	columns []column
	// relations are read with FROM ONLY: the table itself, or the leaf partitions of a
	// partitioned table (whose rows are its partitions' rows).
	relations []uint32
	// oid is the table's; partitioned says its rows are its partitions' (a look-up by key
	// reads it without ONLY).
	oid         uint32
	partitioned bool
}

// catalog reads the columns of schemaName.name: dropped columns are not columns, and
// stored generated columns are omitted from items by Tandem's decision, so they are not
// expected either.
func catalog(ctx context.Context, q pgx.Tx, schemaName, name string) (*source, error) {
	var oid uint32
	var kind string
	err := q.QueryRow(ctx, `SELECT c.oid, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = $2`, schemaName, name).Scan(&oid, &kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("verify: table %q.%q does not exist", schemaName, name)
	}
	if err != nil {
		return nil, fmt.Errorf("verify: reading the catalog of %q.%q: %w", schemaName, name, err)
	}
	src := &source{relations: []uint32{oid}, oid: oid, partitioned: kind == "p"}
	if kind == "p" {
		rows, err := q.Query(ctx, "SELECT relid::oid FROM pg_partition_tree($1::oid) WHERE isleaf ORDER BY 1", oid)
		if err != nil {
			return nil, fmt.Errorf("verify: listing the partitions of %q.%q: %w", schemaName, name, err)
		}
		if src.relations, err = pgx.CollectRows(rows, pgx.RowTo[uint32]); err != nil {
			return nil, fmt.Errorf("verify: listing the partitions of %q.%q: %w", schemaName, name, err)
		}
	}
	rows, err := q.Query(ctx, `SELECT attname, atttypid, format_type(atttypid, atttypmod) FROM pg_attribute
		WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
		ORDER BY attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("verify: reading the columns of %q.%q: %w", schemaName, name, err)
	}
	type att struct {
		name    string
		typ     uint32
		sqlType string
	}
	atts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (att, error) {
		var a att
		return a, r.Scan(&a.name, &a.typ, &a.sqlType)
	})
	if err != nil {
		return nil, fmt.Errorf("verify: reading the columns of %q.%q: %w", schemaName, name, err)
	}
	for _, a := range atts {
		t, err := typeOf(ctx, q, a.typ, 0)
		if err != nil {
			return nil, err
		}
		src.columns = append(src.columns, column{name: a.name, typ: t, sqlType: a.sqlType})
	}
	return src, nil
}

// typeOf resolves domains to their base type and arrays to their element type.
func typeOf(ctx context.Context, q pgx.Tx, oid uint32, depth int) (*colType, error) {
	if depth > 32 {
		return nil, fmt.Errorf("verify: type %d: domains nested too deep", oid)
	}
	var name, typtype, category, delim string
	var base, elem uint32
	err := q.QueryRow(ctx, `SELECT typname::text, typtype::text, typcategory::text, typdelim::text, typbasetype, typelem
		FROM pg_type WHERE oid = $1`, oid).Scan(&name, &typtype, &category, &delim, &base, &elem)
	if err != nil {
		return nil, fmt.Errorf("verify: reading type %d: %w", oid, err)
	}
	if typtype == "d" {
		return typeOf(ctx, q, base, depth+1)
	}
	// int2vector and oidvector have an element type but print space separated, not braced.
	if category == "A" && elem != 0 && oid != oidInt2vector && oid != oidOIDvector {
		e, err := typeOf(ctx, q, elem, depth+1)
		if err != nil {
			return nil, err
		}
		// array_out separates elements by the element type's own typdelim.
		var d string
		if err := q.QueryRow(ctx, "SELECT typdelim::text FROM pg_type WHERE oid = $1", elem).Scan(&d); err != nil {
			return nil, fmt.Errorf("verify: reading type %d: %w", elem, err)
		}
		return &colType{fam: famArray, name: name, elem: e, delim: d[0]}, nil
	}
	return &colType{fam: scalarFamily(oid), name: name}, nil
}

// row is one PostgreSQL row: the text output of each column (nil: NULL).
type row []*string

// segment is a range of pages of one relation; to == 0 means to the end.
type segment struct {
	rel      uint32
	from, to int64
}

// readRows reads every row of the table described by src under one snapshot, exported by
// the leader transaction to the workers, so parallel segments see one consistent state.
func readRows(ctx context.Context, pool *pgxpool.Pool, schemaName, name string, workers int, emit func(row)) (*source, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer conn.Release()
	lead, err := begin(ctx, conn.Conn(), "")
	if err != nil {
		return nil, err
	}
	defer lead.Rollback(context.Background()) //nolint:errcheck // read-only
	src, err := catalog(ctx, lead, schemaName, name)
	if err != nil {
		return nil, err
	}
	var snap string
	if err := lead.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snap); err != nil {
		return nil, fmt.Errorf("verify: exporting a snapshot: %w", err)
	}
	var segs []segment
	for _, rel := range src.relations {
		var pages int64
		if err := lead.QueryRow(ctx, "SELECT pg_relation_size($1::oid) / current_setting('block_size')::int", rel).Scan(&pages); err != nil {
			return nil, fmt.Errorf("verify: sizing %q.%q: %w", schemaName, name, err)
		}
		n := int64(workers)
		if pages < n {
			n = max(pages, 1)
		}
		for i := range n {
			s := segment{rel: rel, from: pages * i / n, to: pages * (i + 1) / n}
			if i == n-1 {
				s.to = 0 // rows on pages added since the size was read are in the last one
			}
			segs = append(segs, s)
		}
	}
	jobs := make(chan segment, len(segs))
	for _, s := range segs {
		jobs <- s
	}
	close(jobs)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	safeEmit := func(r row) { mu.Lock(); emit(r); mu.Unlock() }
	work := func(tx pgx.Tx) {
		for s := range jobs {
			if err := readSegment(ctx, tx, src, s, safeEmit); err != nil {
				fail(fmt.Errorf("verify: reading %q.%q: %w", schemaName, name, err))
				return
			}
		}
	}
	for range min(workers, len(segs)) - 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pool.Acquire(ctx)
			if err != nil {
				fail(fmt.Errorf("verify: %w", err))
				return
			}
			defer c.Release()
			tx, err := begin(ctx, c.Conn(), snap)
			if err != nil {
				fail(err)
				return
			}
			defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
			work(tx)
		}()
	}
	work(lead)
	wg.Wait()
	return src, firstErr
}

// begin opens a read-only repeatable-read transaction with the contract's session
// settings, importing snapshot when given.
func begin(ctx context.Context, c *pgx.Conn, snapshot string) (pgx.Tx, error) {
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if snapshot != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(snapshot)); err != nil {
			tx.Rollback(ctx) //nolint:errcheck // failing anyway
			return nil, fmt.Errorf("verify: importing snapshot: %w", err)
		}
	}
	for _, kv := range sessionSettings {
		if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", kv[0], kv[1]); err != nil {
			tx.Rollback(ctx) //nolint:errcheck // failing anyway
			return nil, fmt.Errorf("verify: setting %s: %w", kv[0], err)
		}
	}
	return tx, nil
}

// readSegment reads one page range in the text format (the simple protocol returns
// every value as its type's text output).
func readSegment(ctx context.Context, tx pgx.Tx, src *source, s segment, emit func(row)) error {
	var rel string
	if err := tx.QueryRow(ctx, "SELECT $1::oid::regclass::text", s.rel).Scan(&rel); err != nil {
		return err
	}
	q := fmt.Sprintf("SELECT %s FROM ONLY %s t WHERE t.ctid >= '(%d,0)'::tid", src.selectList(), rel, s.from)
	if s.to > 0 {
		q += fmt.Sprintf(" AND t.ctid < '(%d,0)'::tid", s.to)
	}
	return queryRows(ctx, tx, src, q, emit)
}

// queryRows runs q (whose columns are src's) in the simple protocol, which returns every
// value as its type's text output, and emits each row.
func queryRows(ctx context.Context, tx pgx.Tx, src *source, q string, emit func(row), args ...any) error {
	rows, err := tx.Query(ctx, q, append([]any{pgx.QueryExecModeSimpleProtocol}, args...)...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		r := make(row, len(src.columns))
		for i := range r {
			if raw[i] != nil {
				v := string(raw[i])
				r[i] = &v
			}
		}
		emit(r)
	}
	return rows.Err()
}

// selectList is the columns of src, qualified by the alias t.
func (src *source) selectList() string {
	cols := make([]string, len(src.columns))
	for i, c := range src.columns {
		cols[i] = "t." + pgx.Identifier{c.name}.Sanitize()
	}
	sel := strings.Join(cols, ", ")
	if sel == "" {
		sel = "1" // a table without replicated columns still has rows
	}
	return sel
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
