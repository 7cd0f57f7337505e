// Package pg is Tandem's access to the source PostgreSQL: connections, replication setup,
// table discovery, the chunked snapshot reader and re-reads by key. Every connection uses
// mapping.SessionSettings so values arrive in the text forms the mapping expects.
package pg

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/fault"
	"tandem/shared/mapping"
)

// Open returns a pool for ordinary queries.
func Open(ctx context.Context, url string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid connection URL: %w", err)
	}
	for k, v := range mapping.SessionSettings {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "tandem"
	// No server-side prepared statements: a cached plan fails with "cached plan must not
	// change result type" after the DDL that Tandem must replicate through (§2.9).
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: cannot connect: %w", err)
	}
	return pool, nil
}

// ConnectReplication opens a logical replication connection (replication=database).
func ConnectReplication(ctx context.Context, url string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid connection URL: %w", err)
	}
	for k, v := range mapping.SessionSettings {
		cfg.RuntimeParams[k] = v
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "tandem-streamer"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: replication connection: %w", err)
	}
	return conn, nil
}

// Querier is what the read helpers need: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// CurrentLSN returns the WAL insert position. It is DESIGN's pg_current_wal_lsn(), taken
// as pg_current_wal_insert_lsn(): with synchronous_commit = off a committed transaction's
// commit record can lie beyond the write position pg_current_wal_lsn() reports, and a
// consistency point must not come before any change the read could see.
func CurrentLSN(ctx context.Context, q Querier) (pglogrepl.LSN, error) {
	var s string
	if err := q.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		return 0, fmt.Errorf("postgres: reading pg_current_wal_insert_lsn(): %w", err)
	}
	return pglogrepl.ParseLSN(s)
}

// Misconfigured is an error no retry can fix: the server, the role, the publication or
// the slot is not what Tandem needs. The message says what to change. It is classified
// fault.Fatal.
type Misconfigured = fault.FatalError

// Misconfiguredf formats a Misconfigured error.
func Misconfiguredf(format string, args ...any) error { return fault.Fatalf(format, args...) }
