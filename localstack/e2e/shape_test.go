package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/pipeline"
)

// toastValue is SQL for an incompressible text of about 3 KB: stored out of line (TOAST),
// so an UPDATE of another column leaves it out of the WAL.
const toastValue = "(SELECT string_agg(md5(g::text || '-' || %s), '') FROM generate_series(1, 100) g)"

// TestShapeInheritance: the snapshot reads a table itself (FROM ONLY), so the rows of a
// table inheriting from it land only in the child's target (README "The contract").
func TestShapeInheritance(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE parent (id int PRIMARY KEY, v text);
		CREATE TABLE child (extra text) INHERITS (parent);
		ALTER TABLE child ADD PRIMARY KEY (id);
		INSERT INTO parent SELECT g, 'parent ' || g FROM generate_series(1, 45) g;
		INSERT INTO child SELECT g, 'child ' || g, 'x' FROM generate_series(1001, 1045) g;`, nil)
	f.plan()
	f.startStreamer(nil)
	f.snapshot("public.parent")
	f.snapshot("public.child")
	f.exec("DELETE FROM child WHERE id IN (1001, 1002, 1040)")
	f.exec("DELETE FROM parent WHERE id = 1003") // through the parent, deletes a child row
	f.exec("UPDATE parent SET v = 'updated' WHERE id IN (1, 1010)")
	f.exec("INSERT INTO child VALUES (2000, 'late child', 'y')")
	f.waitCaughtUp()
	f.assertConverged("public.parent", "public.child")
	for _, item := range f.scan(f.table("public.parent").Target) {
		if id := attrN(item, "id"); id >= 1000 {
			t.Errorf("the parent's target holds child row %d: %v", id, item)
		}
	}
	if n := len(f.scan(f.table("public.child").Target)); n != 46 {
		t.Errorf("child target has %d items, want 46 (43 live + 3 tombstones)", n)
	}
}

// TestShapeKeyTypmod: keys whose type has a modifier (char(n), varchar(n), numeric(p,s),
// bit(n)) page through more rows than one chunk and are found by the TOAST re-read of a row
// updated before the snapshot reached it.
func TestShapeKeyTypmod(t *testing.T) {
	cases := []struct {
		name, typ, key string // key: SQL for row g's key
	}{
		{"char6", "char(6)", "lpad(g::text, 3, '0')"},
		{"char4", "char(4)", "'k' || g"},
		{"varchar8", "varchar(8)", "'v' || g"},
		{"numeric", "numeric(10,2)", "g + 0.25"},
		{"bits", "bit(8)", "g::bit(8)"},
	}
	var ddl strings.Builder
	for _, c := range cases {
		fmt.Fprintf(&ddl, "CREATE TABLE %s (k %s PRIMARY KEY, n int, body text);\n", c.name, c.typ)
		fmt.Fprintf(&ddl, "INSERT INTO %s SELECT %s, g, %s FROM generate_series(1, 50) g;\n", c.name, c.key, fmt.Sprintf(toastValue, "g::text"))
	}
	f := newFixture(t, ddl.String(), nil) // chunk size 20: three chunks and the end
	f.plan()
	f.startStreamer(nil)
	for _, c := range cases {
		// Rows past the first chunk, updated before the snapshot runs: the stream has no
		// item to merge into and re-reads them by key.
		f.exec(fmt.Sprintf("UPDATE %s SET n = -n WHERE n IN (33, 47)", c.name))
	}
	f.waitCaughtUp()
	for _, c := range cases {
		source := "public." + c.name
		res, err := f.env.Copier().Run(f.ctx, f.table(source), time.Time{})
		if err != nil || !res.Done || res.RowsCopied != 50 {
			t.Errorf("%s: snapshot copied %d rows in %d chunks (done %v, %v), want 50", source, res.RowsCopied, res.Chunks, res.Done, err)
		}
		f.assertConverged(source)
		withBody := 0
		for _, item := range f.scan(f.table(source).Target) {
			if n := attrN(item, "n"); n == -33 || n == -47 {
				if len(attrS(item, "body")) < 2048 {
					t.Errorf("%s: row n=%d updated by the stream lost its TOASTed body: %v", source, n, item["body"])
				}
				withBody++
			}
		}
		if withBody != 2 {
			t.Errorf("%s: %d of the 2 updated rows found", source, withBody)
		}
	}
}

// TestShapeGeneratedColumn: PostgreSQL 15's pgoutput does not send generated columns, so
// Tandem leaves them out on both paths: an item is the same whichever path wrote it, and
// the column never looks like a schema change.
func TestShapeGeneratedColumn(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE priced (id int PRIMARY KEY, qty int, price numeric,
		                     total numeric GENERATED ALWAYS AS (qty * price) STORED);
		INSERT INTO priced SELECT g, g, 1.5 FROM generate_series(1, 30) g;`, nil)
	f.plan()
	f.startStreamer(nil)
	f.snapshot("public.priced")
	f.exec("UPDATE priced SET qty = 100 WHERE id = 3")
	f.exec("INSERT INTO priced VALUES (31, 2, 2)")
	f.waitCaughtUp()
	f.waitConsistent("public.priced")
	f.exec("UPDATE priced SET price = 9 WHERE id = 4")
	f.waitCaughtUp()
	f.assertConverged("public.priced")
	snap, streamed := f.item("public.priced", intKey("id", 5)), f.item("public.priced", intKey("id", 3))
	if attrS(snap, "__src") != "snapshot" || attrS(streamed, "__src") != "stream" {
		t.Fatalf("want one item of each path: %v / %v", snap, streamed)
	}
	for _, item := range []map[string]types.AttributeValue{snap, streamed} {
		if _, ok := item["total"]; ok {
			t.Errorf("generated column total written by the %s: %v", attrS(item, "__src"), item)
		}
		if _, ok := item["qty"]; !ok {
			t.Errorf("column qty missing from %v", item)
		}
	}
	if st := f.waitConsistent("public.priced"); st.Epoch != 1 {
		t.Errorf("generated column caused a re-snapshot: epoch %d", st.Epoch)
	}
}

// TestShapeReplicaIdentityIndex: with REPLICA IDENTITY USING INDEX on a unique index other
// than the primary key, the WAL names old rows by the index's columns; the item key must
// be within them, else plan refuses with the fix.
func TestShapeReplicaIdentityIndex(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE accounts (id int PRIMARY KEY, code text NOT NULL UNIQUE, v text);
		ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_code_key;
		INSERT INTO accounts SELECT g, 'c' || g, 'v' || g FROM generate_series(1, 40) g;
		CREATE TABLE plain (id int PRIMARY KEY, code text);`, nil)
	_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
	wantErr(t, "plan", err, "public.accounts", "USING INDEX on (code)", "does not cover", "id", `"key_columns": ["code"]`, "REPLICA IDENTITY FULL")

	// key_columns that the identity does not cover are refused too (DEFAULT: the primary key).
	f.cfg.Tables = []config.Table{{Source: "public.plain", KeyColumns: []string{"code"}}}
	_, err = f.env.Plan(f.ctx, pipeline.PlanInput{})
	wantErr(t, "plan", err, "public.plain", "primary key (id)", "does not cover", "code")

	// Keyed by the identity's columns, deletes and key changes replicate.
	f.cfg.Tables = []config.Table{{Source: "public.accounts", KeyColumns: []string{"code"}}}
	f.plan()
	f.startStreamer(nil)
	f.snapshot("public.accounts")
	f.exec("DELETE FROM accounts WHERE id IN (3, 30)")
	f.exec("UPDATE accounts SET code = 'moved' WHERE id = 7")
	f.exec("UPDATE accounts SET id = 700, v = 'pk changed' WHERE id = 8")
	f.waitCaughtUp()
	f.assertConverged("public.accounts")

	// Changed while streaming to an identity that no longer covers the key: the table is
	// marked failed with the reason instead of leaving stale items silently.
	f.exec("ALTER TABLE accounts ADD CONSTRAINT accounts_v_key UNIQUE (v)")
	f.exec("UPDATE accounts SET v = 'v' || id")
	f.exec("ALTER TABLE accounts ALTER COLUMN v SET NOT NULL")
	f.exec("ALTER TABLE accounts REPLICA IDENTITY USING INDEX accounts_v_key")
	f.exec("DELETE FROM accounts WHERE id = 11")
	f.waitCaughtUp()
	eventually(t, "accounts marked failed", func() bool {
		st, _, err := f.env.Control.Table(f.ctx, "public.accounts")
		return err == nil && st.State == control.Failed && strings.Contains(st.Error, "does not cover item key column(s) code")
	})

	// FULL covers any key. (A new table: plain's target was created keyed by id.)
	f.exec("CREATE TABLE keyed (id int PRIMARY KEY, code text NOT NULL); ALTER TABLE keyed REPLICA IDENTITY FULL")
	f.exec("INSERT INTO keyed VALUES (1, 'a'), (2, 'b'), (3, 'c')")
	f.cfg.Tables = []config.Table{{Source: "public.keyed", KeyColumns: []string{"code"}}}
	f.plan()
	f.snapshot("public.keyed")
	f.exec("DELETE FROM keyed WHERE code = 'a'")
	f.exec("UPDATE keyed SET code = 'z' WHERE id = 2")
	f.waitCaughtUp()
	f.assertConverged("public.keyed")
}

// TestShapeDeferrablePrimaryKey: a DEFERRABLE primary key is refused, whatever the
// replica identity (its rows may swap keys inside a transaction). Plan refuses before it
// creates the publication, so the application's UPDATE and DELETE keep working; the other
// tables replicate once the table is left out.
func TestShapeDeferrablePrimaryKey(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE deferred (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text);
		CREATE TABLE deferred_full (id int PRIMARY KEY DEFERRABLE, v text);
		ALTER TABLE deferred_full REPLICA IDENTITY FULL;
		CREATE TABLE normal (id int PRIMARY KEY, v text);
		INSERT INTO deferred SELECT g, 'd' || g FROM generate_series(1, 10) g;
		INSERT INTO normal SELECT g, 'n' || g FROM generate_series(1, 30) g;`, nil)
	_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
	wantErr(t, "plan", err, "public.deferred", "DEFERRABLE primary key", "swap keys", "NOT DEFERRABLE", "configured tables")
	wantErr(t, "plan", err, "public.deferred_full", "DEFERRABLE primary key")
	var pubs int
	if err := f.src.QueryRow(f.ctx, "SELECT count(*) FROM pg_publication").Scan(&pubs); err != nil || pubs != 0 {
		t.Errorf("a refused plan left %d publication(s) (%v)", pubs, err)
	}
	f.exec("UPDATE deferred SET v = 'still writable' WHERE id = 1")
	f.exec("DELETE FROM deferred WHERE id = 2")

	f.cfg.Tables = []config.Table{{Source: "public.normal"}}
	f.plan()
	f.exec("UPDATE deferred SET v = 'writable after plan' WHERE id = 3")
	f.exec("DELETE FROM deferred WHERE id = 4")
	f.startStreamer(nil)
	f.snapshot("public.normal")
	f.exec("UPDATE normal SET v = 'streamed' WHERE id < 5")
	f.exec("DELETE FROM normal WHERE id = 9")
	f.waitCaughtUp()
	f.assertConverged("public.normal")

	// Configured explicitly, each is refused with the same reason, and the publication is
	// not extended.
	f.cfg.Tables = append(f.cfg.Tables, config.Table{Source: "public.deferred_full"})
	_, err = f.env.Plan(f.ctx, pipeline.PlanInput{})
	wantErr(t, "plan", err, "public.deferred_full", "DEFERRABLE primary key", "not creating or extending publication")
	f.cfg.Tables = []config.Table{{Source: "public.normal"}, {Source: "public.deferred"}}
	_, err = f.env.Plan(f.ctx, pipeline.PlanInput{})
	wantErr(t, "plan", err, "public.deferred", "DEFERRABLE primary key", "not creating or extending publication")
	f.exec("UPDATE deferred SET v = 'writable after the second plan' WHERE id = 5")
	f.exec("DELETE FROM deferred WHERE id = 6")
}

// attrN is a number attribute as an int (0 when absent or not a whole number).
func attrN(item map[string]types.AttributeValue, name string) int {
	n, _ := item[name].(*types.AttributeValueMemberN)
	if n == nil {
		return 0
	}
	v, _ := strconv.Atoi(n.Value)
	return v
}

const partitionedDDL = `
	CREATE TABLE m (id int, region text, v text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
	CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu');
	CREATE TABLE m_us PARTITION OF m FOR VALUES IN ('us');
	INSERT INTO m SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, 'v' || g FROM generate_series(1, 60) g;`

// TestShapePartitioned: Tandem's publication publishes each partition as its own table
// (publish_via_partition_root = false), so every partition lands in its own target and
// TRUNCATE of a partition, rows moving between partitions, ATTACH and DETACH PARTITION are
// ordinary changes of those tables. What it cannot replicate correctly is refused.
func TestShapePartitioned(t *testing.T) {
	t.Run("every partition into its own target", func(t *testing.T) {
		f := newFixture(t, partitionedDDL+`
			CREATE TABLE m_asia (id int, region text, v text, PRIMARY KEY (region, id));
			INSERT INTO m_asia SELECT g, 'asia', 'a' || g FROM generate_series(100, 110) g;`, nil)
		out := f.plan()
		var planned []string
		for _, pt := range out.Tables {
			planned = append(planned, pt.Table)
		}
		if strings.Join(planned, " ") != "public.m_asia public.m_eu public.m_us" {
			t.Fatalf("planned %v, want the partitions and the standalone table, not the partitioned root", planned)
		}
		f.startStreamer(nil)
		for _, source := range planned {
			f.snapshot(source)
		}
		f.exec("UPDATE m SET region = 'us', v = 'moved' WHERE id IN (2, 4)") // eu -> us
		f.exec("UPDATE m SET v = 'stays' WHERE id = 6")
		f.exec("TRUNCATE m_eu")
		f.exec("INSERT INTO m VALUES (8, 'eu', 'after the truncate')")
		f.exec("ALTER TABLE m ATTACH PARTITION m_asia FOR VALUES IN ('asia')")
		f.exec("INSERT INTO m VALUES (111, 'asia', 'through the root')")
		f.exec("CREATE TABLE m_sa PARTITION OF m FOR VALUES IN ('sa')")
		f.exec("INSERT INTO m SELECT g, 'sa', 's' || g FROM generate_series(200, 230) g")
		f.exec("ALTER TABLE m DETACH PARTITION m_us")
		f.exec("UPDATE m_us SET v = 'detached' WHERE id IN (1, 2)")
		f.waitCaughtUp()
		f.waitConsistent("public.m_sa")
		f.waitCaughtUp()
		f.assertConverged("public.m_eu", "public.m_us", "public.m_asia", "public.m_sa")
		if n := len(f.scan(f.table("public.m_eu").Target)); n == 0 {
			t.Errorf("m_eu target is empty")
		}
	})

	t.Run("a configured partitioned table is refused before the publication", func(t *testing.T) {
		f := newFixture(t, partitionedDDL, func(c *config.Config) { c.Tables = []config.Table{{Source: "public.m"}} })
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "public.m is partitioned", "public.m_eu, public.m_us", "own target")
		var pubs int
		if err := f.src.QueryRow(f.ctx, "SELECT count(*) FROM pg_publication").Scan(&pubs); err != nil || pubs != 0 {
			t.Errorf("a refused plan left %d publication(s) (%v)", pubs, err)
		}
		// Its partitions, configured, replicate, including a TRUNCATE of the whole tree.
		f.cfg.Tables = []config.Table{{Source: "public.m_eu"}, {Source: "public.m_us"}}
		f.plan()
		f.startStreamer(nil)
		f.snapshot("public.m_eu")
		f.snapshot("public.m_us")
		f.exec("UPDATE m SET region = 'eu' WHERE id = 1")
		f.exec("TRUNCATE m")
		f.exec("INSERT INTO m VALUES (1, 'us', 'after'), (2, 'eu', 'after')")
		f.waitCaughtUp()
		f.assertConverged("public.m_eu", "public.m_us")
	})

	t.Run("publish_via_partition_root is refused", func(t *testing.T) {
		f := newFixture(t, partitionedDDL+`
			CREATE TABLE other (id int PRIMARY KEY);
			CREATE PUBLICATION tandem FOR TABLE m, other WITH (publish_via_partition_root = true);`, nil)
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "public.m is partitioned", "publish_via_partition_root = true", "TRUNCATE of a partition", "publish_via_partition_root = false")
	})
}

// TestShapeUnlogged: an UNLOGGED table's changes are not in the WAL, so it cannot be
// streamed. Configured, plan refuses it by name with the fix before it creates the
// publication, also when a FOR ALL TABLES publication exists (which would leave it out
// without a word). A replicated table switched to UNLOGGED while streaming (PostgreSQL
// allows it in a FOR ALL TABLES publication, which then drops it) is marked failed with
// the reason, not removed or left looking current.
func TestShapeUnlogged(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE normal (id int PRIMARY KEY, v text);
		CREATE TABLE later (id int PRIMARY KEY, v text);
		CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text);
		INSERT INTO normal SELECT g, 'n' || g FROM generate_series(1, 20) g;
		INSERT INTO later SELECT g, 'l' || g FROM generate_series(1, 20) g;`,
		func(c *config.Config) {
			c.Tables = []config.Table{{Source: "public.normal"}, {Source: "public.scratch"}}
		})
	_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
	wantErr(t, "plan", err, "table public.scratch is UNLOGGED", "none of its changes to the WAL", "ALTER TABLE public.scratch SET LOGGED")
	var pubs int
	if err := f.src.QueryRow(f.ctx, "SELECT count(*) FROM pg_publication").Scan(&pubs); err != nil || pubs != 0 {
		t.Errorf("a refused plan left %d publication(s) (%v)", pubs, err)
	}

	f.exec("CREATE PUBLICATION " + f.cfg.Publication + " FOR ALL TABLES")
	_, err = f.env.Plan(f.ctx, pipeline.PlanInput{})
	wantErr(t, "plan", err, "table public.scratch is UNLOGGED", "SET LOGGED")

	f.cfg.Tables = []config.Table{{Source: "public.normal"}, {Source: "public.later"}}
	f.plan()
	f.startStreamer(nil)
	f.snapshot("public.normal")
	f.snapshot("public.later")
	f.exec("ALTER TABLE later SET UNLOGGED")
	f.exec("UPDATE later SET v = 'lost' WHERE id = 1")
	eventually(t, "later marked failed", func() bool {
		st, _, err := f.env.Control.Table(f.ctx, "public.later")
		return err == nil && st.State == control.Failed && strings.Contains(st.Error, "table public.later is UNLOGGED") &&
			strings.Contains(st.Error, "SET LOGGED")
	})
	f.exec("UPDATE normal SET v = 'streamed' WHERE id < 5")
	f.waitCaughtUp()
	f.assertConverged("public.normal")
}
