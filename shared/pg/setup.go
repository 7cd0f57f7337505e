package pg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"tandem/shared/ident"
)

// CheckServer verifies what logical replication needs before anything is created, so a
// misconfigured server fails with the fix rather than a protocol error.
func CheckServer(ctx context.Context, q Querier) error {
	walLevel, err := WALLevel(ctx, q)
	if err != nil {
		return err
	}
	if err := CheckWALLevel(walLevel); err != nil {
		return err
	}
	return CheckReplicationRole(ctx, q)
}

// WALLevel reads the server's wal_level setting.
func WALLevel(ctx context.Context, q Querier) (string, error) {
	var walLevel string
	if err := q.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return "", fmt.Errorf("postgres: reading wal_level: %w", err)
	}
	return walLevel, nil
}

// CheckWALLevel refuses a wal_level other than logical, saying how to change it. It takes
// the setting rather than reading it because wal_level is per cluster: tests give it values
// a running test server cannot have.
func CheckWALLevel(walLevel string) error {
	if walLevel != "logical" {
		return Misconfiguredf("postgres: wal_level is %q but Tandem needs wal_level = logical (set it in postgresql.conf or the RDS parameter group, rds.logical_replication = 1, and restart PostgreSQL)", walLevel)
	}
	return nil
}

// CheckReplicationRole requires the connected role to be able to create and read a
// replication slot: REPLICATION, superuser, or (on RDS) membership of rds_replication.
func CheckReplicationRole(ctx context.Context, q Querier) error {
	var user string
	var canReplicate bool
	err := q.QueryRow(ctx, `
		SELECT current_user, r.rolreplication OR r.rolsuper OR
		       coalesce((SELECT pg_has_role(current_user, oid, 'member') FROM pg_roles WHERE rolname = 'rds_replication'), false)
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&user, &canReplicate)
	if err != nil {
		return fmt.Errorf("postgres: reading role attributes: %w", err)
	}
	if !canReplicate {
		return Misconfiguredf("postgres: role %q lacks the REPLICATION privilege needed for a replication slot: run ALTER ROLE %s REPLICATION (on RDS: GRANT rds_replication TO %s)", user, user, user)
	}
	return nil
}

// EnsurePublication creates the publication if missing (FOR ALL TABLES, or for the given
// tables) and adds any listed table it lacks.
func EnsurePublication(ctx context.Context, q Querier, name string, tables []ident.Table) error {
	var exists, allTables bool
	err := q.QueryRow(ctx, "SELECT true, puballtables FROM pg_publication WHERE pubname = $1", name).Scan(&exists, &allTables)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("postgres: reading publication %s: %w", name, err)
	}
	if err := CheckPartitioned(ctx, q, tables); err != nil {
		return err
	}
	if err := CheckPersistence(ctx, q, tables); err != nil {
		return err
	}
	pub := ident.Quote(name)
	if !exists {
		if err := checkIdentity(ctx, q, name, tables); err != nil {
			return err
		}
		sql := "CREATE PUBLICATION " + pub + " FOR ALL TABLES"
		if len(tables) > 0 {
			sql = "CREATE PUBLICATION " + pub + " FOR TABLE " + sqlList(tables)
		}
		if _, err := q.Exec(ctx, sql); err != nil {
			return privilegeError(fmt.Errorf("postgres: creating publication %s (%s): %w", name, sql, err), name)
		}
		return nil
	}
	if allTables || len(tables) == 0 {
		return nil
	}
	var missing []ident.Table
	for _, t := range tables {
		var in bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
			name, t.Schema, t.Name).Scan(&in); err != nil {
			return fmt.Errorf("postgres: reading publication %s: %w", name, err)
		}
		if !in {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		if err := checkIdentity(ctx, q, name, missing); err != nil {
			return err
		}
		if _, err := q.Exec(ctx, "ALTER PUBLICATION "+pub+" ADD TABLE "+sqlList(missing)); err != nil {
			return privilegeError(fmt.Errorf("postgres: adding %s to publication %s: %w", textList(missing), name, err), name)
		}
	}
	return nil
}

// CheckPublicationPrivilege predicts, with the fix, a refusal of publication DDL the
// connected role may not run on stock PostgreSQL: PostgreSQL would answer 42501
// (insufficient privilege), which no retry changes. It is a prediction for tandem check
// only: managed services let their admin roles do more (RDS's rds_superuser may create a
// FOR ALL TABLES publication without being a superuser), so plan and the streamer issue
// the DDL and take PostgreSQL's answer (privilegeError). create says the publication is
// to be created, FOR TABLE tables or (none) FOR ALL TABLES; otherwise tables are to be
// added to the existing publication name. CREATE PUBLICATION needs CREATE on the
// database, FOR ALL TABLES a superuser, and adding a table (at creation or later) owning
// it; ALTER PUBLICATION needs owning the publication.
func CheckPublicationPrivilege(ctx context.Context, q Querier, name string, create bool, tables []ident.Table) error {
	var user, database string
	var super, canCreate bool
	err := q.QueryRow(ctx, `
		SELECT current_user, current_database(), r.rolsuper, has_database_privilege(current_database(), 'CREATE')
		FROM pg_roles r WHERE r.rolname = current_user`).Scan(&user, &database, &super, &canCreate)
	if err != nil {
		return fmt.Errorf("postgres: reading role attributes: %w", err)
	}
	if super {
		return nil
	}
	pub := ident.Quote(name)
	// What the owner (or a superuser) would run instead; Tandem then uses that publication
	// as it is and never alters it.
	ddl := "CREATE PUBLICATION " + pub + " FOR ALL TABLES"
	if !create {
		ddl = "ALTER PUBLICATION " + pub + " ADD TABLE " + sqlList(tables)
	} else if len(tables) > 0 {
		ddl = "CREATE PUBLICATION " + pub + " FOR TABLE " + sqlList(tables)
	}
	switch {
	case create && len(tables) == 0:
		return Misconfiguredf("postgres: role %q may not create publication %s: CREATE PUBLICATION ... FOR ALL TABLES needs a superuser. Fix: have a superuser run %s (Tandem then uses it as it is), or configure the tables to replicate (the role must own them)",
			user, name, ddl)
	case create && !canCreate:
		return Misconfiguredf("postgres: role %q may not create publication %s: it lacks the CREATE privilege on database %s. Fix: GRANT CREATE ON DATABASE %s TO %s, or have the tables' owner run %s (Tandem then uses it as it is)",
			user, name, database, ident.Quote(database), ident.Quote(user), ddl)
	}
	if !create {
		var owns bool
		var owner string
		err := q.QueryRow(ctx, "SELECT pg_has_role(pubowner, 'USAGE'), pg_get_userbyid(pubowner) FROM pg_publication WHERE pubname = $1", name).Scan(&owns, &owner)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("postgres: reading publication %s: %w", name, err)
		}
		if err == nil && !owns {
			return Misconfiguredf("postgres: role %q may not alter publication %s, owned by %s, to add table(s) %s. Fix: have %s run %s, or run Tandem as %s",
				user, name, owner, textList(tables), owner, ddl, owner)
		}
	}
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner)
		FROM unnest($1::text[]) u(name) JOIN pg_class c ON c.oid = to_regclass(u.name)
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1, 2`, regclassTexts(tables))
	if err != nil {
		return fmt.Errorf("postgres: reading the owners of the tables to publish: %w", err)
	}
	var notOwned, owners []string
	for rows.Next() {
		var t ident.Table
		var owner string
		if err := rows.Scan(&t.Schema, &t.Name, &owner); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: reading the owners of the tables to publish: %w", err)
		}
		notOwned = append(notOwned, t.String()+" (owner "+owner+")")
		if !slices.Contains(owners, owner) {
			owners = append(owners, owner)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: reading the owners of the tables to publish: %w", err)
	}
	if len(notOwned) == 0 {
		return nil
	}
	return Misconfiguredf("postgres: role %q may not publish table(s) %s in publication %s: only a table's owner may add it to a publication. Fix: have the owner (%s) or a superuser run %s (Tandem then uses that publication as it is), or run Tandem as the tables' owner",
		user, strings.Join(notOwned, ", "), name, strings.Join(owners, ", "), ddl)
}

// privilegeError turns PostgreSQL's insufficient privilege (42501) on publication DDL
// into a refusal with the fix: retrying cannot grant it. Other errors are returned as
// they are.
func privilegeError(err error, publication string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		return err
	}
	return Misconfiguredf("%v: retrying cannot help; the publication's DDL needs the tables' owner (and CREATE on the database, FOR ALL TABLES a superuser). Fix: have the tables' owner or a superuser create publication %s (Tandem then uses it as it is), or run Tandem as the tables' owner",
		err, publication)
}

// checkIdentity refuses to publish tables whose rows the WAL cannot identify: once such a
// table is in a publication (which publishes UPDATE and DELETE), PostgreSQL rejects every
// UPDATE and DELETE on it, breaking the application's writes. tables are the tables to
// publish (partitions of a partitioned one included); none means every table, as FOR ALL
// TABLES publishes (ordinary, permanent, user tables).
func checkIdentity(ctx context.Context, q Querier, publication string, tables []ident.Table) error {
	problems, err := IdentityProblems(ctx, q, tables)
	if err != nil || len(problems) == 0 {
		return err
	}
	texts := make([]string, len(problems))
	for i, p := range problems {
		texts[i] = p.Problem
	}
	return Misconfiguredf("postgres: not creating or extending publication %s: %s; %s", publication, strings.Join(texts, "; "), IdentityConsequence)
}

// IdentityConsequence is what publishing a table with an IdentityProblem would do, and
// the fixes.
const IdentityConsequence = "once published, PostgreSQL would reject every UPDATE and DELETE on such a table. " +
	"Fix each: add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL (or USING INDEX) and configure its key_columns, " +
	"or list only the tables to replicate in the configured tables"

// TableProblem is a table refused for its shape: one whose rows the WAL cannot identify
// (IdentityProblems), or whose changes are not in the WAL at all (PersistenceProblems).
type TableProblem struct {
	Table ident.Table
	// Problem names the table, the cause and the fix ("table public.t has a DEFERRABLE primary key ...").
	Problem string
}

// IdentityProblems lists the tables among tables (partitions of a partitioned one
// included; none: every table FOR ALL TABLES publishes) that have no usable replica
// identity: no primary key with REPLICA IDENTITY DEFAULT, a DEFERRABLE primary key
// (whatever the identity: see below), a lost identity index, or REPLICA IDENTITY NOTHING.
func IdentityProblems(ctx context.Context, q Querier, tables []ident.Table) ([]TableProblem, error) {
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname, c.relreplident::text,
		       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND NOT i.indimmediate)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND c.oid >= 16384
		  AND ($1::text[] IS NULL OR c.oid IN (
		        SELECT to_regclass(u.name) FROM unnest($1::text[]) u(name)
		        UNION ALL -- pg_partition_tree lists nothing for a table that is not partitioned
		        SELECT t.relid FROM unnest($1::text[]) u(name), pg_partition_tree(to_regclass(u.name)) t))
		  AND (EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND NOT i.indimmediate)
		   OR CASE c.relreplident
		        WHEN 'd' THEN NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary AND i.indimmediate)
		        WHEN 'i' THEN NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
		        ELSE c.relreplident = 'n' END)
		ORDER BY 1, 2`, regclassTexts(tables))
	if err != nil {
		return nil, fmt.Errorf("postgres: checking the replica identity of the tables to publish: %w", err)
	}
	var problems []TableProblem
	for rows.Next() {
		var t ident.Table
		var replident string
		var deferrable bool
		if err := rows.Scan(&t.Schema, &t.Name, &replident, &deferrable); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: checking the replica identity of the tables to publish: %w", err)
		}
		table := t.String()
		var problem string
		switch {
		case deferrable:
			// PostgreSQL never uses a DEFERRABLE key as the replica identity, and even with
			// REPLICA IDENTITY FULL one transaction may swap two rows' keys (1→2, then 2→1):
			// applied change by change, the second change's removal of key 2 would remove
			// the row the first one moved there.
			problem = "table " + table + " has a DEFERRABLE primary key: two rows may swap keys inside a transaction, " +
				"which one item per key cannot follow (fix: re-create the primary key NOT DEFERRABLE)"
		case replident == "d":
			problem = "table " + table + " has no primary key and REPLICA IDENTITY DEFAULT"
		case replident == "i":
			problem = "table " + table + " has REPLICA IDENTITY USING INDEX but that index no longer exists"
		default:
			problem = "table " + table + " has REPLICA IDENTITY NOTHING"
		}
		problems = append(problems, TableProblem{Table: t, Problem: problem})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: checking the replica identity of the tables to publish: %w", err)
	}
	return problems, nil
}

// CheckPartitioned refuses a configured partitioned table, before the publication is
// touched. Tandem's publication publishes each partition as its own table (the default
// publish_via_partition_root = false), so TRUNCATE of one partition, rows moving between
// partitions, ATTACH and DETACH PARTITION all reach the stream as changes of the
// partitions; a partitioned table itself has no rows to replicate.
func CheckPartitioned(ctx context.Context, q Querier, tables []ident.Table) error {
	if len(tables) == 0 {
		return nil
	}
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname,
		       coalesce((SELECT string_agg(quote_ident(pn.nspname) || '.' || quote_ident(p.relname), ', ' ORDER BY 1)
		                 FROM pg_partition_tree(c.oid) t JOIN pg_class p ON p.oid = t.relid
		                 JOIN pg_namespace pn ON pn.oid = p.relnamespace WHERE t.isleaf), '')
		FROM unnest($1::text[]) u(name) JOIN pg_class c ON c.oid = to_regclass(u.name)
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'p' ORDER BY 1, 2`, regclassTexts(tables))
	if err != nil {
		return fmt.Errorf("postgres: checking the configured tables for partitioned ones: %w", err)
	}
	var problems []string
	for rows.Next() {
		var t ident.Table
		var leaves string
		if err := rows.Scan(&t.Schema, &t.Name, &leaves); err != nil {
			rows.Close()
			return fmt.Errorf("postgres: checking the configured tables for partitioned ones: %w", err)
		}
		problems = append(problems, "table "+t.String()+" is partitioned: configure its partitions ("+leaves+") instead, each is replicated into its own target")
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("postgres: checking the configured tables for partitioned ones: %w", err)
	}
	if len(problems) == 0 {
		return nil
	}
	return Misconfiguredf("config: %s", strings.Join(problems, "; "))
}

// PersistenceProblems lists the tables among tables (none: no table) that are UNLOGGED
// or TEMPORARY. PostgreSQL writes none of their changes to the WAL, so logical
// replication cannot stream them: CREATE and ALTER PUBLICATION refuse them by name, a FOR
// ALL TABLES publication leaves them out without a word (an existing table may even be
// switched to UNLOGGED while in it), and a snapshot of one would never be kept current.
// This is the one rule for it: check, plan and the streamer all ask here.
func PersistenceProblems(ctx context.Context, q Querier, tables []ident.Table) ([]TableProblem, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `
		SELECT n.nspname, c.relname, c.relpersistence::text
		FROM unnest($1::text[]) u(name) JOIN pg_class c ON c.oid = to_regclass(u.name)
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relpersistence <> 'p' ORDER BY 1, 2`, regclassTexts(tables))
	if err == nil {
		var problems []TableProblem
		problems, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableProblem, error) {
			var t ident.Table
			var persistence string
			err := r.Scan(&t.Schema, &t.Name, &persistence)
			return TableProblem{Table: t, Problem: persistenceProblem(t, persistence)}, err
		})
		if err == nil {
			return problems, nil
		}
	}
	return nil, fmt.Errorf("postgres: checking the persistence of the configured tables: %w", err)
}

// persistenceProblem says why a table of this relpersistence ('u' or 't') cannot be
// replicated, and the fix.
func persistenceProblem(t ident.Table, persistence string) string {
	if persistence == "t" {
		return "table " + t.String() + " is TEMPORARY: PostgreSQL writes none of its changes to the WAL and it vanishes with its session, so logical replication cannot stream it. " +
			"Fix: replicate a permanent table instead, or remove it from the configured tables"
	}
	return "table " + t.String() + " is UNLOGGED: PostgreSQL writes none of its changes to the WAL, so logical replication cannot stream them " +
		"(no publication includes it, FOR ALL TABLES leaves it out) and its target would never be kept current. " +
		"Fix: ALTER TABLE " + t.String() + " SET LOGGED, or remove it from the configured tables"
}

// CheckPersistence refuses UNLOGGED and TEMPORARY tables among tables
// (PersistenceProblems), before the publication is touched.
func CheckPersistence(ctx context.Context, q Querier, tables []ident.Table) error {
	problems, err := PersistenceProblems(ctx, q, tables)
	if err != nil || len(problems) == 0 {
		return err
	}
	texts := make([]string, len(problems))
	for i, p := range problems {
		texts[i] = p.Problem
	}
	return Misconfiguredf("config: %s", strings.Join(texts, "; "))
}

// regclassTexts renders tables as regclass text (nil stays nil: all tables).
func regclassTexts(tables []ident.Table) []string {
	if len(tables) == 0 {
		return nil
	}
	out := make([]string, len(tables))
	for i, t := range tables {
		out[i] = t.SQL()
	}
	return out
}

func sqlList(tables []ident.Table) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = t.SQL()
	}
	return strings.Join(parts, ", ")
}

func textList(tables []ident.Table) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// Slot describes the replication slot as PostgreSQL reports it.
type Slot struct {
	Name              string
	Plugin            string
	Active            bool
	ActivePID         int32
	ConfirmedFlushLSN pglogrepl.LSN
	RestartLSN        pglogrepl.LSN
	WALStatus         string // reserved, extended, unreserved, lost
	CurrentLSN        pglogrepl.LSN
}

// RetainedBytes is how much WAL the slot holds back on the primary.
func (s Slot) RetainedBytes() uint64 {
	if s.CurrentLSN < s.RestartLSN {
		return 0
	}
	return uint64(s.CurrentLSN - s.RestartLSN)
}

// ErrSlotMissing means the slot does not exist.
var ErrSlotMissing = errors.New("replication slot does not exist")

// ReadSlot returns the slot's state, ErrSlotMissing, or an error for a slot that cannot be
// used (wrong plugin, WAL removed).
func ReadSlot(ctx context.Context, q Querier, name string) (Slot, error) {
	var s Slot
	var confirmed, restart, current string
	err := q.QueryRow(ctx, `
		SELECT slot_name, coalesce(plugin, ''), active, coalesce(active_pid, 0),
		       coalesce(confirmed_flush_lsn::text, '0/0'), coalesce(restart_lsn::text, '0/0'),
		       coalesce(wal_status, ''), pg_current_wal_insert_lsn()::text
		FROM pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&s.Name, &s.Plugin, &s.Active, &s.ActivePID, &confirmed, &restart, &s.WALStatus, &current)
	if errors.Is(err, pgx.ErrNoRows) {
		return Slot{}, fmt.Errorf("postgres: slot %q: %w", name, ErrSlotMissing)
	}
	if err != nil {
		return Slot{}, fmt.Errorf("postgres: reading slot %s: %w", name, err)
	}
	s.ConfirmedFlushLSN, _ = pglogrepl.ParseLSN(confirmed)
	s.RestartLSN, _ = pglogrepl.ParseLSN(restart)
	s.CurrentLSN, _ = pglogrepl.ParseLSN(current)
	if s.Plugin != "pgoutput" {
		return s, Misconfiguredf("postgres: slot %q uses plugin %q, Tandem needs a pgoutput slot: drop it or configure another slot name", name, s.Plugin)
	}
	if s.WALStatus == "lost" {
		return s, Misconfiguredf("postgres: slot %q is invalidated (wal_status = lost): the WAL it needed was removed (max_slot_wal_keep_size), so changes were lost; drop the slot and re-run plan to snapshot again", name)
	}
	return s, nil
}

// CreateSlot creates the pgoutput slot and returns its start LSN, the point from which
// the stream holds every change (README "The contract").
func CreateSlot(ctx context.Context, q Querier, name string) (pglogrepl.LSN, error) {
	var start string
	if err := q.QueryRow(ctx, "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", name).Scan(&start); err != nil {
		return 0, fmt.Errorf("postgres: creating replication slot %s: %w", name, err)
	}
	return pglogrepl.ParseLSN(start)
}

// DropSlot drops the slot if it exists and is not in use.
func DropSlot(ctx context.Context, q Querier, name string) error {
	_, err := q.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", name)
	if err != nil {
		return fmt.Errorf("postgres: dropping replication slot %s: %w", name, err)
	}
	return nil
}
