package pg

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"tandem/shared/ident"
)

// Capacity is what the server has left for Tandem's one slot and one WAL sender (the
// streamer's replication connection), both fixed at server start.
type Capacity struct {
	MaxSlots, MaxSenders int
	// OtherSlots are the replication slots other than Tandem's; OwnSlot says Tandem's exists.
	OtherSlots []string
	OwnSlot    bool
	// OtherSenders counts WAL senders (logical and physical replication connections) other
	// than one streaming Tandem's slot.
	OtherSenders int
}

// ReadCapacity reads max_replication_slots and max_wal_senders and what uses them.
// pg_stat_activity lists every WAL sender to any role, unlike pg_stat_replication's details.
func ReadCapacity(ctx context.Context, q Querier, slot string) (Capacity, error) {
	var c Capacity
	err := q.QueryRow(ctx, `
		SELECT current_setting('max_replication_slots')::int, current_setting('max_wal_senders')::int,
		       EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),
		       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'
		          AND pid IS DISTINCT FROM (SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1))::int`, slot).
		Scan(&c.MaxSlots, &c.MaxSenders, &c.OwnSlot, &c.OtherSenders)
	if err != nil {
		return c, fmt.Errorf("postgres: reading replication capacity: %w", err)
	}
	rows, err := q.Query(ctx, "SELECT slot_name FROM pg_replication_slots WHERE slot_name <> $1 ORDER BY 1", slot)
	if err != nil {
		return c, fmt.Errorf("postgres: listing replication slots: %w", err)
	}
	if c.OtherSlots, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return c, fmt.Errorf("postgres: listing replication slots: %w", err)
	}
	return c, nil
}

// CheckSlots refuses a server where Tandem could not create its slot (unless it exists).
func (c Capacity) CheckSlots(slot string) error {
	if !c.OwnSlot && len(c.OtherSlots) >= c.MaxSlots {
		return Misconfiguredf("postgres: max_replication_slots is %d and all are used by other slots (%s), so Tandem cannot create slot %s: raise max_replication_slots (a restart) or drop an unused slot (SELECT pg_drop_replication_slot('name'))",
			c.MaxSlots, textListOf(c.OtherSlots), slot)
	}
	return nil
}

// CheckSenders refuses a server where the streamer could not open its replication
// connection: every WAL sender is taken.
func (c Capacity) CheckSenders() error {
	if c.OtherSenders >= c.MaxSenders {
		return Misconfiguredf("postgres: max_wal_senders is %d and %d WAL sender(s) are connected, so the streamer could not open its replication connection: raise max_wal_senders (a restart)",
			c.MaxSenders, c.OtherSenders)
	}
	return nil
}

func textListOf(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// AllTables lists the tables a publication FOR ALL TABLES would publish: the ordinary,
// permanent user tables (partitions included, as each is published on its own).
func AllTables(ctx context.Context, q Querier) ([]ident.Table, error) {
	return userTables(ctx, q, "p", "tables")
}

// UnloggedTables lists the user's UNLOGGED tables: those AllTables, and so a FOR ALL
// TABLES publication, leave out (PersistenceProblems says why).
func UnloggedTables(ctx context.Context, q Querier) ([]ident.Table, error) {
	return userTables(ctx, q, "u", "unlogged tables")
}

// userTables lists the ordinary user tables of one relpersistence ('p' permanent, 'u'
// unlogged); what names them in an error.
func userTables(ctx context.Context, q Querier, persistence, what string) ([]ident.Table, error) {
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relpersistence = $1 AND c.oid >= 16384
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2`, persistence)
	if err != nil {
		return nil, fmt.Errorf("postgres: listing %s: %w", what, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ident.Table, error) {
		var t ident.Table
		return t, r.Scan(&t.Schema, &t.Name)
	})
}

// TLS describes the encryption of the current connection (pg_stat_ssl).
type TLS struct {
	Encrypted       bool
	Version, Cipher string
}

// ReadTLS reports whether this session's connection is encrypted.
func ReadTLS(ctx context.Context, q Querier) (TLS, error) {
	var t TLS
	err := q.QueryRow(ctx, "SELECT ssl, coalesce(version, ''), coalesce(cipher, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()").
		Scan(&t.Encrypted, &t.Version, &t.Cipher)
	if err != nil {
		return t, fmt.Errorf("postgres: reading pg_stat_ssl: %w", err)
	}
	return t, nil
}
