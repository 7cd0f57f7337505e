package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/config"
	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/precedence"
)

// oddDDL has identifiers of every kind PostgreSQL allows: a schema with a dot and a
// space, a table with quotes, a dot, "#", "[", "]", ":" and a non-ASCII letter, columns
// likewise (a key column with "." and "[0]", a leading digit, upper case), a two-column
// key and a TOASTed column (over 2 KB, incompressible, stored out of line). public."a.b"
// and a.b are two tables whose names once both became the DynamoDB table "a.b".
const oddDDL = `
CREATE SCHEMA "Sch.ema space";
CREATE TABLE "Sch.ema space"."Odd ""Table"".v1 #[x]:ü" (
	"k.ey[0]" int,
	"Key #2: ü" text,
	"Big.Text [toast]" text,
	"v.x" text,
	"#hash" text,
	"a:b" int,
	"1st Col" text,
	"MixedCase" int,
	"]" text,
	PRIMARY KEY ("k.ey[0]", "Key #2: ü"));
ALTER TABLE "Sch.ema space"."Odd ""Table"".v1 #[x]:ü" ALTER "Big.Text [toast]" SET STORAGE EXTERNAL;
INSERT INTO "Sch.ema space"."Odd ""Table"".v1 #[x]:ü"
	SELECT g, 'k2 ' || (g % 3), (SELECT string_agg(md5(g::text || '.' || i::text), '') FROM generate_series(1, 100) i),
	       'v' || g, '#' || g, g * 10, 'first ' || g, -g, ']' || g
	FROM generate_series(1, 60) g;
CREATE TABLE public."a.b" ("x.y" int PRIMARY KEY, "w[1]" text);
INSERT INTO public."a.b" SELECT g, 'pub ' || g FROM generate_series(1, 25) g;
CREATE SCHEMA a;
CREATE TABLE a.b (id int PRIMARY KEY, w text);
INSERT INTO a.b SELECT g, 'a ' || g FROM generate_series(1, 25) g;`

// oddTable is the SQL name of the table with odd names.
const oddTable = `"Sch.ema space"."Odd ""Table"".v1 #[x]:ü"`

// TestIdentifiers replicates tables and columns named with every kind of character
// PostgreSQL allows, through every path: plan (publication, targets, control ids), the
// snapshot, streamed inserts, TOAST merges and re-reads, primary-key updates, deletes,
// TRUNCATE, finalize's sweeps, status and verify.
func TestIdentifiers(t *testing.T) {
	t.Run("configured tables through every path", testOddNamesEveryPath)
	t.Run("every table, one created while streaming", testOddNamesAllTables)
}

func testOddNamesEveryPath(t *testing.T) {
	odd := ident.Table{Schema: "Sch.ema space", Name: `Odd "Table".v1 #[x]:ü`}
	pubAB := ident.Table{Schema: "public", Name: "a.b"}
	aB := ident.Table{Schema: "a", Name: "b"}
	sources := []string{odd.String(), pubAB.String(), aB.String()}
	if sources[0] != `"Sch.ema space"."Odd ""Table"".v1 #[x]:ü"` || sources[1] != `public."a.b"` || sources[2] != "a.b" {
		t.Fatalf("canonical names: %q", sources)
	}
	f := newFixture(t, oddDDL, func(c *config.Config) {
		// As an operator writes them (TANDEM_TABLES takes the same list, comma-separated).
		c.Tables = []config.Table{{Source: oddTable}, {Source: `"public"."a.b"`}, {Source: "a.b"}}
	})
	out := f.plan()

	// Plan created the publication for exactly these tables, and three valid, distinct
	// targets; the control table knows each table by its canonical name.
	published, err := pg.PublicationTables(f.ctx, f.src, f.cfg.Publication)
	if err != nil {
		t.Fatal(err)
	}
	var pubTables []string
	for _, id := range published {
		pubTables = append(pubTables, id.String())
	}
	if strings.Join(pubTables, "|") != `"Sch.ema space"."Odd ""Table"".v1 #[x]:ü"|a.b|public."a.b"` {
		t.Errorf("publication tables = %q", pubTables)
	}
	valid := regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)
	targets := map[string]string{}
	for _, pt := range out.Tables {
		if !valid.MatchString(pt.Target) {
			t.Errorf("target %q of %s is not a valid DynamoDB table name", pt.Target, pt.Table)
		}
		if other, dup := targets[pt.Target]; dup {
			t.Errorf("%s and %s share the target %s", other, pt.Table, pt.Target)
		}
		targets[pt.Target] = pt.Table
	}
	if len(targets) != 3 || targets[f.cfg.TablePrefix+"a.b"] != "a.b" {
		t.Errorf("targets = %v, want three, a.b's being %sa.b", targets, f.cfg.TablePrefix)
	}
	for _, s := range sources {
		if _, found, err := f.env.Control.Table(f.ctx, s); err != nil || !found {
			t.Fatalf("control table has no %s (%v)", s, err)
		}
	}

	f.startStreamer(nil)
	bigOf := func(k int) string {
		var s string
		if err := f.src.QueryRow(f.ctx, `SELECT "Big.Text [toast]" FROM `+oddTable+` WHERE "k.ey[0]" = $1`, k).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	key := func(k int) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"k.ey[0]": &types.AttributeValueMemberN{Value: strconv.Itoa(k)},
			"Key #2: ü": &types.AttributeValueMemberS{Value: "k2 " + strconv.Itoa(k%3)}}
	}

	// Snapshot, with an UPDATE that leaves the TOASTed column out of the WAL arriving for
	// a row the snapshot has not written yet: the stream re-reads the row by its key.
	c := f.env.Copier()
	c.AfterRead = onChunk(1, func() {
		f.exec(`UPDATE ` + oddTable + ` SET "v.x" = 'reread', "#hash" = NULL WHERE "k.ey[0]" = 50`)
		f.waitCaughtUp()
		item := f.item(sources[0], key(50))
		if attrS(item, "Big.Text [toast]") != bigOf(50) || attrS(item, "v.x") != "reread" {
			t.Errorf("re-read row 50 should be complete before the snapshot reaches it, got v.x=%q big=%d bytes", attrS(item, "v.x"), len(attrS(item, "Big.Text [toast]")))
		}
	})
	runCopier(f, c, sources[0])
	f.snapshot(sources[1])
	f.snapshot(sources[2])
	f.waitCaughtUp()
	f.assertConverged(sources...)

	// The stream: inserts, TOAST merges into existing items (one also removing a column),
	// a primary-key update (its TOASTed value unchanged), deletes.
	f.exec(`INSERT INTO ` + oddTable + ` VALUES (100, 'k2 1', repeat(md5('new'), 100), 'new', '#new', 1, 'first new', 7, ']new'), (101, 'k2 2', NULL, NULL, NULL, NULL, NULL, NULL, NULL)`)
	f.exec(`UPDATE ` + oddTable + ` SET "v.x" = 'merged', "a:b" = -1 WHERE "k.ey[0]" = 5`)
	f.exec(`UPDATE ` + oddTable + ` SET "#hash" = NULL, "]" = 'merged too', "MixedCase" = 0 WHERE "k.ey[0]" = 6`)
	f.exec(`UPDATE ` + oddTable + ` SET "k.ey[0]" = 1000 WHERE "k.ey[0]" = 7`)
	f.exec(`DELETE FROM ` + oddTable + ` WHERE "k.ey[0]" IN (8, 9)`)
	f.exec(`UPDATE public."a.b" SET "w[1]" = 'streamed' WHERE "x.y" = 3`)
	f.exec(`DELETE FROM public."a.b" WHERE "x.y" = 4`)
	f.exec(`UPDATE a.b SET w = 'streamed' WHERE id = 3`)
	f.waitCaughtUp()
	f.assertConverged(sources...)
	for k, want := range map[int]string{5: "merged", 50: "reread"} {
		item := f.item(sources[0], key(k))
		if attrS(item, "v.x") != want || attrS(item, "Big.Text [toast]") != bigOf(k) || attrS(item, precedence.AttrSrc) != precedence.SrcStream {
			t.Errorf("row %d: v.x=%q big=%d bytes src=%q, want %q with the TOASTed value, from the stream", k, attrS(item, "v.x"), len(attrS(item, "Big.Text [toast]")), attrS(item, precedence.AttrSrc), want)
		}
	}
	if item := f.item(sources[0], key(8)); !precedence.IsTombstone(item) {
		t.Errorf("deleted row 8 should be a tombstone, got %v", item)
	}
	// A column named with ":" is not mistaken for a changed shape: no re-snapshot.
	if st, _, _ := f.env.Control.Table(f.ctx, sources[0]); st.Epoch != 1 {
		t.Errorf("%s was snapshotted again (epoch %d): its shape was misread", sources[0], st.Epoch)
	}

	// Finalize sweeps tombstones by key (key attributes named with "." and "[0]").
	finalize := func() {
		t.Helper()
		for _, s := range sources {
			res, err := f.env.Finalize(f.ctx, pipeline.TableInput{Table: s})
			if err != nil || !res.Consistent {
				t.Fatalf("finalize %s: %+v %v", s, res, err)
			}
		}
	}
	finalize()
	if item := f.item(sources[0], key(8)); item != nil {
		t.Errorf("finalize should have swept the tombstone of row 8, got %v", item)
	}

	// TRUNCATE tombstones every item by key; rows inserted after it stay.
	f.exec(`TRUNCATE ` + oddTable + `, public."a.b"`)
	f.exec(`INSERT INTO ` + oddTable + ` VALUES (7, 'k2 1', repeat(md5('after'), 100), 'after truncate', NULL, NULL, NULL, NULL, NULL)`)
	f.exec(`UPDATE ` + oddTable + ` SET "v.x" = 'merged after truncate' WHERE "k.ey[0]" = 7`)
	f.waitCaughtUp()
	f.assertConverged(sources...)
	finalize()

	// A reset re-snapshots every table; finalize then sweeps the orphans of the old epoch.
	f.exec(`DELETE FROM a.b WHERE id > 20`)
	if _, err := f.env.Plan(f.ctx, pipeline.PlanInput{Reset: true}); err != nil {
		t.Fatal(err)
	}
	for _, s := range sources {
		f.snapshot(s)
	}
	f.waitCaughtUp()
	finalize()
	f.assertConverged(sources...)
	if n := len(f.scan(f.cfg.TablePrefix + "a.b")); n != 20 {
		t.Errorf("a.b's target holds %d items after the orphan sweep, want 20", n)
	}

	// Status names each table canonically, consistent; nothing was dead-lettered; and the
	// slot was acknowledged past every change.
	st, err := f.env.Status(f.ctx, pipeline.StatusInput{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ts := range st.Tables {
		names = append(names, ts.Table)
		if !ts.Consistent || ts.Error != "" {
			t.Errorf("status of %s: %+v", ts.Table, ts)
		}
		if _, err := ident.Parse(ts.Table); err != nil {
			t.Errorf("status table name does not parse back: %v", err)
		}
	}
	if len(names) != 3 || len(st.FailedTables) != 0 || st.DeadLetters != 0 {
		t.Errorf("status: tables %q, failed %v, dead letters %d", names, st.FailedTables, st.DeadLetters)
	}
	if dl := f.deadLetters(); len(dl) != 0 {
		t.Errorf("dead letters: %+v", dl)
	}
	end := f.currentLSN()
	f.waitApplied(end)
	deadline := time.Now().Add(30 * time.Second)
	for {
		slot, err := pg.ReadSlot(f.ctx, f.src, f.cfg.Slot)
		if err != nil {
			t.Fatal(err)
		}
		if slot.ConfirmedFlushLSN >= end {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot confirmed %s, not past the last change at %s", slot.ConfirmedFlushLSN, end)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testOddNamesAllTables: with no tables configured (a FOR ALL TABLES publication), a table
// named with a dot once failed the first change's session, and every one after it, for
// every table. Here one is there from the start and one is created while streaming (the
// streamer plans and snapshots it itself), while another table's changes go on.
func testOddNamesAllTables(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE items (id int PRIMARY KEY, v text);
		INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 10) g;
		CREATE TABLE "x.y z" ("id.[0]" int PRIMARY KEY, "v:w" text);
		INSERT INTO "x.y z" SELECT g, 'w' || g FROM generate_series(1, 30) g;
		CREATE SCHEMA "Late.One";`, nil)
	out := f.plan()
	if len(out.Tables) != 2 {
		t.Fatalf("plan: %+v", out.Tables)
	}
	f.startStreamer(nil)
	for _, pt := range out.Tables {
		f.snapshot(pt.Table)
	}
	dotted := ident.Table{Schema: "public", Name: "x.y z"}.String()
	late := ident.Table{Schema: "Late.One", Name: "ü #1"}.String()
	f.exec(`UPDATE "x.y z" SET "v:w" = 'streamed' WHERE "id.[0]" = 3`)
	f.exec(`DELETE FROM "x.y z" WHERE "id.[0]" = 4`)
	f.exec(`CREATE TABLE "Late.One"."ü #1" ("k[0]" text PRIMARY KEY, "a.b" int)`)
	f.exec(`INSERT INTO "Late.One"."ü #1" SELECT 'k' || g, g FROM generate_series(1, 30) g`)
	f.exec(`INSERT INTO items VALUES (11, 'after')`)
	f.exec(`UPDATE "Late.One"."ü #1" SET "a.b" = -1 WHERE "k[0]" = 'k5'`)
	f.waitConsistent(late)
	f.waitCaughtUp()
	f.assertConverged("public.items", dotted, late)
	if dl := f.deadLetters(); len(dl) != 0 {
		t.Errorf("dead letters: %+v", dl)
	}
}
