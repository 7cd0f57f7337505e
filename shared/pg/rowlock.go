package pg

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"tandem/shared/schema"
)

// LockedRow is a row read under a share lock (ReadRowLocked): while the lock is held no
// transaction can change or delete it, so every change to the row either committed
// before LSN (and is in Row) or will commit after Release, at a later LSN.
type LockedRow struct {
	Row   [][]byte
	Found bool
	// LSN is pg_current_wal_insert_lsn() read after the lock was taken.
	LSN pglogrepl.LSN
	tx  pgx.Tx
}

// Release ends the transaction holding the lock.
func (l *LockedRow) Release(ctx context.Context) error {
	if l.tx == nil {
		return nil
	}
	err := l.tx.Commit(ctx)
	l.tx = nil
	return err
}

// ReadRowLocked reads the current row with the given key (text of the key columns in
// key order) with SELECT ... FOR SHARE, then the WAL insert position, in a transaction
// left open until Release: a write made while it is held, positioned at LSN, is ordered
// after every change the row shows and before every later one. The lock waits at most
// lockTimeout for a transaction changing the row (the application's writes wait for the
// lock only while it is held: keep that short).
func ReadRowLocked(ctx context.Context, pool interface {
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
}, t *schema.Table, key []string, lockTimeout string) (*LockedRow, error) {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("postgres: re-reading %s (%s): %w", t.Source(), strings.Join(key, ","), err)
	}
	fail := func(err error) (*LockedRow, error) {
		tx.Rollback(ctx) //nolint:errcheck // failing anyway
		return nil, fmt.Errorf("postgres: re-reading %s (%s): %w", t.Source(), strings.Join(key, ","), err)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", lockTimeout); err != nil {
		return fail(err)
	}
	sql := "SELECT " + columnList(t) + " FROM " + fromTable(t) + " WHERE " + keyTuple(t) + " = " + keyParams(t, 0) + " FOR SHARE"
	args := make([]any, len(key))
	for i, v := range key {
		args[i] = v
	}
	rows, err := queryText(ctx, tx, sql, args)
	if err != nil {
		return fail(err)
	}
	l := &LockedRow{tx: tx}
	if len(rows) > 0 {
		l.Row, l.Found = rows[0], true
	}
	if l.LSN, err = CurrentLSN(ctx, tx); err != nil {
		return fail(err)
	}
	return l, nil
}
