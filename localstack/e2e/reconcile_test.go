package e2e

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/localstack/testenv"
	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/ident"
	"tandem/shared/pipeline"
)

// TestReconcile covers README "Bad input and faults": a configuration change is applied correctly (the
// table is snapshotted again where needed) or refused with the fix, and a table that is
// no longer replicated is never reported consistent.
func TestReconcile(t *testing.T) {
	t.Run("target renamed", func(t *testing.T) {
		f := newFixture(t, itemsDDL, func(c *config.Config) { c.Tables = []config.Table{{Source: "items"}} })
		f.plan()
		stop := f.startStreamer(nil)
		f.snapshot("public.items")
		f.waitConsistent("public.items")
		f.assertConverged("public.items")
		old := f.table("public.items").Target
		stop()
		before := len(f.scan(old))

		// Plan has not run: status must not call the new, empty target consistent.
		v2 := f.name + "_items_v2"
		f.cfg.Tables = []config.Table{{Source: "items", Target: v2}}
		if st := f.status("public.items"); st.Consistent || !strings.Contains(st.Error, v2) {
			t.Errorf("before plan: status %+v, want not consistent, naming %s", st, v2)
		}
		f.exec("UPDATE items SET v = 'while moving' WHERE id = 3")
		out := f.plan()
		if len(out.Tables) != 1 || out.Tables[0].Target != v2 || out.Tables[0].State != control.Pending {
			t.Errorf("plan output %+v, want public.items pending into %s", out.Tables, v2)
		}
		if st := f.status("public.items"); st.Consistent || st.Target != v2 || !slices.Contains(st.PreviousTargets, old) {
			t.Errorf("after plan: status %+v, want not consistent, target %s, previous %s", st, v2, old)
		}
		stop = f.startStreamer(nil)
		f.exec("UPDATE items SET v = 'streamed into v2' WHERE id = 4")
		f.exec("INSERT INTO items (id, v) VALUES (1000, 'new')")
		f.exec("DELETE FROM items WHERE id = 5")
		f.snapshot("public.items")
		f.finalize("public.items")
		f.waitCaughtUp()
		f.waitConsistent("public.items")
		f.assertConverged("public.items")
		if st := f.status("public.items"); !st.Consistent || st.Target != v2 {
			t.Errorf("after the new snapshot: status %+v, want consistent in %s", st, v2)
		}
		if n := len(f.scan(old)); n != before {
			t.Errorf("old target %s: %d items, want the %d it had (left as it is)", old, n, before)
		}

		// A streamer restarted with a new target re-snapshots by itself, without a plan.
		stop()
		v3 := f.name + "_items_v3"
		f.cfg.Tables = []config.Table{{Source: "items", Target: v3}}
		f.exec("UPDATE items SET v = 'before v3' WHERE id = 6")
		f.startStreamer(nil)
		eventually(t, "streamer re-plans into "+v3, func() bool {
			st, _, err := f.env.Control.Table(f.ctx, "public.items")
			return err == nil && st.Target == v3
		})
		f.exec("UPDATE items SET v = 'streamed into v3' WHERE id = 7")
		f.waitCaughtUp()
		f.waitConsistent("public.items")
		f.assertConverged("public.items")
	})

	t.Run("key_columns changed", func(t *testing.T) {
		f := newFixture(t, `
			CREATE TABLE acct (id int PRIMARY KEY, code text NOT NULL UNIQUE, v text);
			ALTER TABLE acct REPLICA IDENTITY FULL;
			INSERT INTO acct SELECT g, 'c' || g, 'v' || g FROM generate_series(1, 50) g;`,
			func(c *config.Config) { c.Tables = []config.Table{{Source: "acct"}} })
		f.plan()
		stop := f.startStreamer(nil)
		f.snapshot("public.acct")
		f.waitConsistent("public.acct")
		stop()
		old, _, _ := f.env.Control.Table(f.ctx, "public.acct")

		// Same target, new key: refused with the fix, nothing recorded.
		f.cfg.Tables = []config.Table{{Source: "acct", KeyColumns: []string{"code"}}}
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "public.acct", "(id)", "(code)", old.Target, "configure a new target")
		if !fault.IsFatal(err) {
			t.Errorf("plan error should be permanent (fatal), is %s", fault.Classify(err))
		}
		if st, _, _ := f.env.Control.Table(f.ctx, "public.acct"); st.Target != old.Target || !slices.Equal(st.KeyColumns, []string{"id"}) || st.Epoch != old.Epoch {
			t.Errorf("refused plan changed the control table: %+v", st)
		}
		if st := f.status("public.acct"); st.Consistent {
			t.Errorf("status says consistent for a key the target does not have: %+v", st)
		}

		// With a new target the table is snapshotted again into it, keyed by code.
		byCode := f.name + "_acct_by_code"
		f.cfg.Tables = []config.Table{{Source: "acct", KeyColumns: []string{"code"}, Target: byCode}}
		f.plan()
		f.startStreamer(nil)
		f.exec("UPDATE acct SET v = 'streamed' WHERE id = 3")
		f.exec("UPDATE acct SET code = 'moved' WHERE id = 4")
		f.exec("DELETE FROM acct WHERE id = 5")
		f.snapshot("public.acct")
		f.finalize("public.acct")
		f.waitCaughtUp()
		st := f.waitConsistent("public.acct")
		f.assertConverged("public.acct")
		if st.Target != byCode || !slices.Equal(st.KeyColumns, []string{"code"}) {
			t.Errorf("control table %+v, want target %s keyed by code", st, byCode)
		}
		key := map[string]types.AttributeValue{"code": &types.AttributeValueMemberS{Value: "c3"}}
		if item := f.item("public.acct", key); item == nil {
			t.Errorf("no item keyed by code c3 in %s", byCode)
		}
	})

	t.Run("table removed from the configuration", func(t *testing.T) {
		f := newFixture(t, itemsDDL+`
			CREATE TABLE other (id int PRIMARY KEY, v text);
			INSERT INTO other SELECT g, 'o' || g FROM generate_series(1, 30) g;`,
			func(c *config.Config) { c.Tables = []config.Table{{Source: "items"}, {Source: "other"}} })
		f.plan()
		stop := f.startStreamer(nil)
		f.snapshot("public.items")
		f.snapshot("public.other")
		f.waitConsistent("public.other")
		stop()

		f.cfg.Tables = []config.Table{{Source: "items"}}
		if st := f.status("public.other"); st.Consistent || st.State != control.Removed {
			t.Errorf("before plan: status %+v, want removed, not consistent", st)
		}
		f.plan()
		if f.published("public.other") {
			t.Error("public.other is still in the publication Tandem created")
		}
		stop = f.startStreamer(nil)
		f.exec("UPDATE other SET v = 'while removed' WHERE id = 1")
		f.exec("DELETE FROM other WHERE id = 2")
		f.exec("UPDATE items SET v = 'still streamed' WHERE id = 1")
		f.waitCaughtUp()
		time.Sleep(3 * f.cfg.StatusInterval.Duration) // a few checkpoints: none may mark it consistent
		if st, _, _ := f.env.Control.Table(f.ctx, "public.other"); st.State != control.Removed || st.Consistent {
			t.Errorf("control table: %+v, want removed and not consistent", st)
		}
		if st := f.status("public.other"); st.Consistent || st.State != control.Removed || !strings.Contains(st.Error, "no longer applied") {
			t.Errorf("status %+v, want removed, not consistent, saying why", st)
		}
		f.assertConverged("public.items")

		// Configured again: it rejoins the publication and is snapshotted again, so the
		// changes made while it was out reach DynamoDB.
		stop()
		f.cfg.Tables = []config.Table{{Source: "items"}, {Source: "other"}}
		f.plan()
		if !f.published("public.other") {
			t.Error("public.other did not rejoin the publication")
		}
		f.startStreamer(nil)
		f.snapshot("public.other")
		f.finalize("public.other")
		f.waitCaughtUp()
		f.waitConsistent("public.other")
		f.assertConverged("public.other", "public.items")
	})

	t.Run("publication created by the user is only checked", func(t *testing.T) {
		f := newFixture(t, itemsDDL+`
			CREATE TABLE other (id int PRIMARY KEY);
			CREATE TABLE third (id int PRIMARY KEY);
			CREATE PUBLICATION tandem FOR TABLE items, other;`,
			func(c *config.Config) { c.Tables = []config.Table{{Source: "items"}} })
		f.plan()
		if !f.published("public.other") {
			t.Error("plan removed public.other from a publication the user created")
		}
		f.cfg.Tables = []config.Table{{Source: "items"}, {Source: "third"}}
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "not created by Tandem", "public.third", `ALTER PUBLICATION "tandem" ADD TABLE "public"."third"`)
		if f.published("public.third") {
			t.Error("plan added public.third to a publication the user created")
		}
	})

	t.Run("misspelled table", func(t *testing.T) {
		f := newFixture(t, itemsDDL, func(c *config.Config) { c.Tables = []config.Table{{Source: "items"}, {Source: "itmes"}} })
		began := time.Now()
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "public.itmes", "do not exist")
		if !fault.IsFatal(err) {
			t.Errorf("plan error should be permanent (fatal), is %s", fault.Classify(err))
		}
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("plan took %s to refuse", d)
		}
		f.assertNoSlot()
		if tables, _ := f.env.Control.Tables(f.ctx); len(tables) != 0 {
			t.Errorf("a refused plan recorded tables: %+v", tables)
		}

		err = runStreamer(t, f.env, 20*time.Second)
		wantErr(t, "streamer", err, "public.itmes", "do not exist")

		// The streamer binary exits non-zero within seconds, saying why.
		bin, err := testenv.Binary("tandem/streamer")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = append(f.processEnv(), "TANDEM_TABLES=items,itmes")
		output, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if ctx.Err() != nil || !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("streamer binary: %v (%v), want a non-zero exit within 30s; output:\n%s", err, ctx.Err(), output)
		}
		if !strings.Contains(string(output), "public.itmes") {
			t.Errorf("streamer output does not name public.itmes:\n%s", output)
		}
	})

	t.Run("failed plan records no targets", func(t *testing.T) {
		f := newFixture(t, itemsDDL+`
			CREATE TABLE nokey (code text NOT NULL, v text);
			ALTER TABLE nokey REPLICA IDENTITY FULL;`,
			func(c *config.Config) { c.Tables = []config.Table{{Source: "items"}, {Source: "nokey"}} })
		_, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
		wantErr(t, "plan", err, "public.nokey", "no primary key")
		if tables, _ := f.env.Control.Tables(f.ctx); len(tables) != 0 {
			t.Errorf("a refused plan recorded tables: %+v", tables)
		}
	})
}

// status is one table's line of the status handler's output.
func (f *fixture) status(source string) pipeline.TableStatus {
	f.t.Helper()
	out, err := f.env.Status(f.ctx, pipeline.StatusInput{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, ts := range out.Tables {
		if ts.Table == source {
			return ts
		}
	}
	f.t.Fatalf("status lists no %s: %+v", source, out.Tables)
	return pipeline.TableStatus{}
}

// finalize runs the finalize handler for a table, as the state machine does.
func (f *fixture) finalize(source string) {
	f.t.Helper()
	if _, err := f.env.Finalize(f.ctx, pipeline.TableInput{Table: source}); err != nil {
		f.t.Fatalf("finalize %s: %v", source, err)
	}
}

// published reports whether the fixture's publication contains the table.
func (f *fixture) published(source string) bool {
	f.t.Helper()
	id, err := ident.Parse(source)
	if err != nil {
		f.t.Fatal(err)
	}
	var in bool
	if err := f.src.QueryRow(f.ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`,
		f.cfg.Publication, id.Schema, id.Name).Scan(&in); err != nil {
		f.t.Fatal(err)
	}
	return in
}
