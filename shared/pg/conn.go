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

// Open returns a pool for ordinary queries. When the first connection is refused its
// credentials and src supplies passwords, it is tried once more with the password read
// anew (a secret rotated since it was read). Every later connection of the pool that is
// refused marks its password stale too (refusedLogins), so the pool's next connection
// after a rotation reads the new one.
func Open(ctx context.Context, src Source, maxConns int32) (*pgxpool.Pool, error) {
	pool, err := open(ctx, src, maxConns)
	if err != nil && src.Credentials != nil && IsAuthFailure(err) {
		pool, err = open(ctx, src, maxConns)
	}
	return pool, err
}

func open(ctx context.Context, src Source, maxConns int32) (*pgxpool.Pool, error) {
	cs, err := src.connString()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(cs)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid connection string: %s", parseReason(err))
	}
	for k, v := range mapping.SessionSettings {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "tandem"
	// No server-side prepared statements: a cached plan fails with "cached plan must not
	// change result type" after the DDL that Tandem must replicate through (README "Bad input and faults").
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if creds := src.Credentials; creds != nil {
		cfg.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			pw, err := creds.Password(ctx)
			if err != nil {
				return fmt.Errorf("postgres: the connection's password: %w", err)
			}
			cc.Password = pw
			// The pool reports no failed connection to anyone but the caller that
			// waited for it; a connect tracer sees every one.
			cc.Tracer = refusedLogins{creds: creds, password: pw}
			return nil
		}
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

// refusedLogins tells creds when the server refuses a pool connection's login made with
// password. It traces nothing else.
type refusedLogins struct {
	creds    Credentials
	password string
}

func (r refusedLogins) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

func (r refusedLogins) TraceConnectEnd(_ context.Context, data pgx.TraceConnectEndData) {
	if IsAuthFailure(data.Err) {
		r.creds.Refused(r.password)
	}
}

func (refusedLogins) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (refusedLogins) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// ConnectReplication opens a logical replication connection (replication=database),
// trying once more, with the password read anew, when the first login is refused.
func ConnectReplication(ctx context.Context, src Source) (*pgconn.PgConn, error) {
	conn, err := connectReplication(ctx, src)
	if err != nil && src.Credentials != nil && IsAuthFailure(err) {
		conn, err = connectReplication(ctx, src)
	}
	return conn, err
}

func connectReplication(ctx context.Context, src Source) (*pgconn.PgConn, error) {
	cfg, err := src.parse()
	if err != nil {
		return nil, err
	}
	for k, v := range mapping.SessionSettings {
		cfg.RuntimeParams[k] = v
	}
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["application_name"] = "tandem-streamer"
	if src.Credentials != nil {
		if cfg.Password, err = src.Credentials.Password(ctx); err != nil {
			return nil, fmt.Errorf("postgres: the replication connection's password: %w", err)
		}
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		if src.Credentials != nil && IsAuthFailure(err) {
			src.Credentials.Refused(cfg.Password)
		}
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

// CurrentLSN returns the WAL insert position: the LSN a chunk reads (README "The
// contract"), taken as pg_current_wal_insert_lsn() rather than pg_current_wal_lsn(): with
// synchronous_commit = off a committed transaction's commit record can lie beyond the
// write position pg_current_wal_lsn() reports, and a consistency point must not come
// before any change the read could see.
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
