package e2e

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5"

	"tandem/localstack/testenv"
	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/precedence"
	"tandem/streamer/stream"
)

// TestBadInput covers README "Bad input and faults": each bad input gets a clear, specific error naming what is
// wrong and how to fix it, or a documented behaviour (dead letter) — never silent loss.
func TestBadInput(t *testing.T) {
	t.Run("table without primary key", func(t *testing.T) {
		// REPLICA IDENTITY FULL: without it PostgreSQL refuses UPDATE/DELETE on a table in
		// a FOR ALL TABLES publication, and the stream could not find the old key.
		f := newFixture(t, `
			CREATE TABLE nopk (code text NOT NULL, qty int, note text);
			ALTER TABLE nopk REPLICA IDENTITY FULL;
			INSERT INTO nopk SELECT 'c' || g, g, 'n' || g FROM generate_series(1, 50) g;`, nil)
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "public.nopk", "no primary key", "key_columns")

		// With key columns configured the same table replicates end to end.
		f.cfg.Tables = []config.Table{{Source: "public.nopk", KeyColumns: []string{"code"}}}
		f.plan()
		f.startStreamer(nil)
		f.snapshot("public.nopk")
		f.exec("INSERT INTO nopk VALUES ('new', 1000, 'inserted')")
		f.exec("UPDATE nopk SET qty = -qty, note = 'updated' WHERE code IN ('c3', 'c30')")
		f.exec("UPDATE nopk SET code = 'c7-moved' WHERE code = 'c7'") // key change
		f.exec("DELETE FROM nopk WHERE code IN ('c10', 'c40')")
		f.waitCaughtUp()
		f.assertConverged("public.nopk")
		key := map[string]types.AttributeValue{"code": &types.AttributeValueMemberS{Value: "c10"}}
		if item := f.item("public.nopk", key); !precedence.IsTombstone(item) {
			t.Errorf("deleted row c10 should be a tombstone, got %v", item)
		}
	})

	t.Run("table without primary key or replica identity stays writable", func(t *testing.T) {
		// Once a table is in a publication, PostgreSQL rejects UPDATE and DELETE on it unless
		// the WAL can identify rows. A failed plan must not leave behind a FOR ALL TABLES
		// publication that breaks the application's writes.
		f := newFixture(t, `
			CREATE TABLE nopk (code text NOT NULL, qty int);
			INSERT INTO nopk VALUES ('a', 1);
			CREATE TABLE items (id int PRIMARY KEY);`, nil)
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "public.nopk", "no primary key", "REPLICA IDENTITY FULL", "tables")
		f.exec("UPDATE nopk SET qty = 2")
		f.assertNoSlot()

		// Replicating only the tables that have a key works and leaves nopk alone.
		f.cfg.Tables = []config.Table{{Source: "items"}}
		f.plan()
		f.exec("UPDATE nopk SET qty = 3")
	})

	t.Run("wal_level replica", func(t *testing.T) {
		replica, err := testenv.StartPostgres(testenv.PostgresOptions{WalLevel: "replica"})
		if err != nil {
			t.Fatalf("starting a wal_level=replica cluster: %v", err)
		}
		t.Cleanup(func() { _ = replica.Stop() })
		f := newFixture(t, "", nil)
		dbURL, err := replica.CreateDatabase(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := execURL(f.ctx, dbURL, "CREATE TABLE items (id int PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		e := f.envFor(dbURL)
		_, err = e.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "wal_level", `"replica"`, "logical", "restart")

		// The streamer refuses too, rather than retrying forever.
		err = runStreamer(t, e, 30*time.Second)
		wantErr(t, "streamer", err, "wal_level", `"replica"`, "logical")
	})

	t.Run("role without REPLICATION", func(t *testing.T) {
		f := newFixture(t, "CREATE TABLE items (id int PRIMARY KEY, v text)", nil)
		role := f.name + "_norepl"
		db := pgx.Identifier{f.name}.Sanitize()
		r := pgx.Identifier{role}.Sanitize()
		f.exec("CREATE ROLE " + r + " LOGIN NOSUPERUSER NOREPLICATION")
		t.Cleanup(func() {
			// Roles are cluster-wide: drop it so a -count=N rerun can create it again.
			ctx := context.Background()
			_, _ = f.src.Exec(ctx, "DROP OWNED BY "+r)
			_, _ = f.src.Exec(ctx, "DROP ROLE "+r)
		})
		// Everything but REPLICATION: it may connect, create the publication and read.
		f.exec("GRANT CONNECT, CREATE ON DATABASE " + db + " TO " + r)
		f.exec("GRANT USAGE, CREATE ON SCHEMA public TO " + r)
		f.exec("GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + r)

		u, err := url.Parse(f.url)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(role)
		_, err = f.envFor(u.String()).Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "REPLICATION", role, "ALTER ROLE")
		f.assertNoSlot() // it failed before creating anything
	})

	t.Run("role that does not own the tables", func(t *testing.T) {
		// Only a table's owner (or a superuser) may publish it: PostgreSQL answers 42501,
		// which no retry changes, so plan fails at once with the fix instead of being
		// retried by the state machine for many minutes.
		f := newFixture(t, "CREATE TABLE items (id int PRIMARY KEY, v text)", func(c *config.Config) {
			c.Tables = []config.Table{{Source: "public.items"}}
		})
		role := f.name + "_notowner"
		r := pgx.Identifier{role}.Sanitize()
		f.exec("CREATE ROLE " + r + " LOGIN NOSUPERUSER REPLICATION")
		t.Cleanup(func() {
			ctx := context.Background()
			_, _ = f.src.Exec(ctx, "DROP OWNED BY "+r)
			_, _ = f.src.Exec(ctx, "DROP ROLE "+r)
		})
		f.exec("GRANT CONNECT, CREATE ON DATABASE " + pgx.Identifier{f.name}.Sanitize() + " TO " + r)
		f.exec("GRANT USAGE ON SCHEMA public TO " + r)
		f.exec("GRANT SELECT ON ALL TABLES IN SCHEMA public TO " + r)
		u, err := url.Parse(f.url)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(role)
		_, err = f.envFor(u.String()).Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "must be owner of table items", "SQLSTATE 42501", "publication "+f.cfg.Publication,
			"retrying cannot help", "run Tandem as the tables' owner")
		if c := fault.Classify(err); c != fault.Fatal {
			t.Errorf("plan's error is %s, want fatal (not retried)", c)
		}
		f.assertNoSlot() // refused before anything was created
		if rec, found, err := f.env.Control.Publication(f.ctx); err != nil || (found && rec.CreatedByTandem) {
			t.Errorf("after the refused CREATE PUBLICATION the control table still claims the publication for Tandem: %+v, %v", rec, err)
		}

		// Once the owner creates the publication, the role's plan uses it as it is: the
		// refused creation left no record claiming it for Tandem.
		f.exec("CREATE PUBLICATION " + pgx.Identifier{f.cfg.Publication}.Sanitize() + " FOR TABLE items")
		if _, err := f.envFor(u.String()).Plan(f.ctx, pipeline.PlanInput{}); err != nil {
			t.Errorf("plan with the owner's publication: %v", err)
		}
	})

	t.Run("create_tables false and no target", func(t *testing.T) {
		// Nothing would create the target: plan refuses at once, naming the table, the
		// target and the fix, instead of the snapshot failing on its first write.
		f := newFixture(t, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a')", func(c *config.Config) {
			c.CreateTables = aws.Bool(false)
		})
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "table public.items: its target table "+f.cfg.TablePrefix+"items does not exist", "create_tables is false",
			"create "+f.cfg.TablePrefix+"items with key schema (id N HASH), or set create_tables to true")
		if c := fault.Classify(err); c != fault.Fatal {
			t.Errorf("plan's error is %s, want fatal", c)
		}
		if recorded, err := f.env.Control.Tables(f.ctx); err != nil || len(recorded) != 0 {
			t.Errorf("a refused plan recorded %d table(s) (%v)", len(recorded), err)
		}
	})

	for _, col := range []string{"__lsn", "__src"} {
		t.Run("reserved column "+col, func(t *testing.T) {
			f := newFixture(t, `CREATE TABLE meta (id int PRIMARY KEY, "`+col+`" text)`, nil)
			_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
			wantErr(t, "plan", err, "public.meta", `"`+col+`"`, "reserved", "rename")
		})
	}

	// bigRows makes two rows oversize: a is 500 000 ASCII bytes; b is 140 000 three-byte
	// characters (420 000 UTF-8 bytes), over the limit only if the size counts bytes.
	bigRows := func(f *fixture, a, b int) {
		f.t.Helper()
		f.exec("UPDATE docs SET body = (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 15625) g) WHERE id = $1", a)
		f.exec("UPDATE docs SET body = (SELECT string_agg(chr(19968 + (g * 7919) % 20000), '') FROM generate_series(1, 140000) g) WHERE id = $1", b)
	}

	t.Run("row over 400 KB at snapshot", func(t *testing.T) {
		f := newFixture(t, `
			CREATE TABLE docs (id int PRIMARY KEY, body text);
			INSERT INTO docs SELECT g, 'small ' || g FROM generate_series(1, 40) g;`, nil)
		bigRows(f, 7, 23)
		f.plan()
		// f.snapshot fails the test unless the snapshot finished: one bad row must not
		// fail the whole table.
		f.snapshot("public.docs")
		f.assertDeadLetter("public.docs", "id=7", "snapshot")
		f.assertDeadLetter("public.docs", "id=23", "snapshot")
		for _, id := range []int{7, 23} {
			if item := f.item("public.docs", intKey("id", id)); item != nil {
				t.Errorf("oversize row %d should not be in DynamoDB, got %d attributes", id, len(item))
			}
		}
		// Every other row converges (the oversize ones are set aside: they are dead letters).
		f.exec("DELETE FROM docs WHERE id IN (7, 23)")
		f.assertConverged("public.docs")
	})

	t.Run("row over 400 KB while streaming", func(t *testing.T) {
		f := newFixture(t, `
			CREATE TABLE docs (id int PRIMARY KEY, body text);
			INSERT INTO docs SELECT g, 'small ' || g FROM generate_series(1, 10) g;`, nil)
		f.plan()
		f.startStreamer(nil)
		f.snapshot("public.docs")
		f.exec("INSERT INTO docs VALUES (100, NULL), (101, NULL)")
		bigRows(f, 100, 101)
		f.exec("INSERT INTO docs VALUES (102, 'after the big ones')")
		// The stream must not stall on the big rows: the later insert arrives.
		f.waitCaughtUp()
		if got := attrS(f.item("public.docs", intKey("id", 102)), "body"); got != "after the big ones" {
			t.Errorf("row 102 inserted after the oversize rows: body %q", got)
		}
		f.assertDeadLetter("public.docs", "id=100", "stream")
		f.assertDeadLetter("public.docs", "id=101", "stream")
		// The DELETE tombstones the keys, so the rest must equal PostgreSQL.
		f.exec("DELETE FROM docs WHERE id IN (100, 101)")
		f.waitCaughtUp()
		f.assertConverged("public.docs")
	})

	t.Run("numeric NaN, Infinity and 40 digits", func(t *testing.T) {
		// README "Items in DynamoDB": numeric -> N, except values N cannot hold -> S of the text form.
		const forty = "1234567890123456789012345678901234567891"
		want := []struct {
			value string
			n     bool // N; otherwise S
		}{
			{"NaN", false}, {"Infinity", false}, {"-Infinity", false}, {forty, false},
			{"12.5", true}, {"12345678901234567890123456789012345678", true}, // 38 digits fit N
		}
		f := newFixture(t, "CREATE TABLE nums (id int PRIMARY KEY, n numeric)", nil)
		insert := func(base int) {
			for i, w := range want {
				f.exec("INSERT INTO nums VALUES ($1, $2::numeric)", base+i, w.value)
			}
		}
		check := func(how string, base int) {
			t.Helper()
			for i, w := range want {
				item := f.item("public.nums", intKey("id", base+i))
				var got string
				var isN bool
				switch v := item["n"].(type) {
				case *types.AttributeValueMemberN:
					got, isN = v.Value, true
				case *types.AttributeValueMemberS:
					got = v.Value
				default:
					t.Errorf("%s: numeric %s: attribute is %T, want N or S", how, w.value, item["n"])
					continue
				}
				if got != w.value || isN != w.n {
					t.Errorf("%s: numeric %s: got %q (N=%v), want %q (N=%v)", how, w.value, got, isN, w.value, w.n)
				}
			}
		}
		insert(1)
		f.plan()
		f.startStreamer(nil)
		f.snapshot("public.nums")
		check("snapshot", 1)
		insert(101)
		f.waitCaughtUp()
		check("stream", 101)
		f.assertConverged("public.nums")
	})

	t.Run("publication dropped after the first run", func(t *testing.T) {
		f := newFixture(t, "CREATE TABLE items (id int PRIMARY KEY)", nil)
		f.plan()
		// Changes made while the publication is gone would not be in the stream.
		f.exec("DROP PUBLICATION " + f.cfg.Publication)
		err := runStreamer(t, f.env, 30*time.Second)
		wantErr(t, "streamer", err, `"`+f.cfg.Publication+`"`, "does not exist")
	})

	t.Run("streamer before the first plan creates publication and slot", func(t *testing.T) {
		// ECS starts the streamer when the stack is created, before any snapshot run.
		f := newFixture(t, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'before')", nil)
		f.startStreamer(nil)
		eventually(t, "slot created by the streamer", func() bool {
			_, err := pg.ReadSlot(f.ctx, f.env.PG, f.cfg.Slot)
			return err == nil
		})
		f.exec("INSERT INTO items VALUES (2, 'streamed before the plan')")
		f.plan()
		f.snapshot("public.items")
		f.waitCaughtUp()
		f.assertConverged("public.items")
	})

	t.Run("lost slot", func(t *testing.T) {
		f := newFixture(t, "CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')", nil)
		f.plan()
		f.snapshot("public.items")
		stop := f.startStreamer(nil)
		f.exec("UPDATE items SET v = 'streamed' WHERE id IN (1, 2)")
		f.waitCaughtUp()
		stop()
		// Changes made while the slot is gone are not in any stream.
		f.exec("SELECT pg_drop_replication_slot($1)", f.cfg.Slot)
		f.exec("UPDATE items SET v = 'lost' WHERE id = 1")
		f.exec("DELETE FROM items WHERE id = 2")
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, f.cfg.Slot, "no longer exists", "reset")
		err = runStreamer(t, f.env, 30*time.Second)
		wantErr(t, "streamer", err, f.cfg.Slot, "no longer exists")
		f.assertNoSlot() // refusing must not quietly create a new slot either

		// The documented way out: a reset re-snapshots every table from a new slot, and
		// its writes replace what the old stream wrote, including rows deleted meanwhile.
		out, err := f.env.Plan(f.ctx, pipeline.PlanInput{Reset: true})
		if err != nil || len(out.Tables) != 1 || out.Tables[0].State != "pending" {
			t.Fatalf("plan with reset: %+v %v", out, err)
		}
		f.startStreamer(nil)
		f.snapshot("public.items")
		if _, err := f.env.Finalize(f.ctx, pipeline.TableInput{Table: "public.items"}); err != nil {
			t.Fatal(err)
		}
		f.waitCaughtUp()
		f.assertConverged("public.items")
	})
}

// wantErr fails unless err is non-nil and contains every phrase.
func wantErr(t *testing.T, what string, err error, phrases ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded, want an error mentioning %q", what, phrases)
	}
	for _, p := range phrases {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s error should mention %q:\n%v", what, p, err)
		}
	}
}

// runStreamer runs a streamer that is expected to stop by itself with an error.
func runStreamer(t *testing.T, e *pipeline.Env, timeout time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := (&stream.Streamer{Env: e, Owner: "x"}).Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("streamer did not stop with an error within %s (returned %v)", timeout, err)
	}
	return err
}

// envFor is the fixture's environment (same control table, DynamoDB, config) with
// PostgreSQL reached through another URL.
func (f *fixture) envFor(pgURL string) *pipeline.Env {
	f.t.Helper()
	cfg := *f.cfg
	cfg.PostgresURL = pgURL
	pool, err := pg.Open(f.ctx, pg.Source{URL: pgURL}, 4)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(pool.Close)
	return pipeline.FromParts(&cfg, pool, f.db, testLogger())
}

func execURL(ctx context.Context, pgURL, sql string) error {
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func (f *fixture) deadLetters() []control.DeadLetter {
	f.t.Helper()
	var out []control.DeadLetter
	for _, item := range f.scan(f.cfg.ControlTable) {
		id, _ := item["id"].(*types.AttributeValueMemberS)
		if id == nil || !strings.HasPrefix(id.Value, "deadletter#") {
			continue
		}
		var d control.DeadLetter
		if err := attributevalue.UnmarshalMap(item, &d); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// assertDeadLetter checks a dead letter names the table and key and says why.
func (f *fixture) assertDeadLetter(table, key, source string) {
	f.t.Helper()
	all := f.deadLetters()
	for _, d := range all {
		if d.Table == table && d.Key == key {
			if d.Source != source {
				f.t.Errorf("dead letter %s %s: source %q, want %q", table, key, d.Source, source)
			}
			for _, p := range []string{key, table, "item limit"} {
				if !strings.Contains(d.Reason, p) {
					f.t.Errorf("dead letter %s %s: reason should mention %q: %s", table, key, p, d.Reason)
				}
			}
			return
		}
	}
	f.t.Errorf("no dead letter for %s %s; dead letters: %+v", table, key, all)
}

func (f *fixture) assertNoSlot() {
	f.t.Helper()
	_, err := pg.ReadSlot(f.ctx, f.src, f.cfg.Slot)
	if !errors.Is(err, pg.ErrSlotMissing) {
		f.t.Errorf("slot %s should not exist (err %v)", f.cfg.Slot, err)
	}
}
