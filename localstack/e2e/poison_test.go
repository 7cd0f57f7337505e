package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"

	"tandem/shared/pg"
	"tandem/shared/pipeline"
)

// TestPoisonChanges covers README "Bad input and faults": a change DynamoDB can never accept becomes a dead
// letter naming table, key and column; its table is marked degraded (not consistent);
// every other row and table converges; and the slot's confirmed LSN moves past it, so
// WAL does not pile up on the primary behind one bad row.
func TestPoisonChanges(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE keys (k text PRIMARY KEY, v text);
		CREATE TABLE pairs (a int, b text, v text, PRIMARY KEY (a, b));
		CREATE TABLE docs (id int PRIMARY KEY, doc jsonb);
		CREATE TABLE bins (id bytea PRIMARY KEY, v text);
		CREATE TABLE other (id int PRIMARY KEY, v text);
		INSERT INTO keys SELECT 'k' || g, 'v' || g FROM generate_series(1, 30) g;
		INSERT INTO keys VALUES ('', 'empty key at snapshot');
		INSERT INTO pairs SELECT g, 'b' || g, 'v' || g FROM generate_series(1, 30) g;
		INSERT INTO docs SELECT g, jsonb_build_object('n', g) FROM generate_series(1, 30) g;
		INSERT INTO docs VALUES (1000, (repeat('[', 33) || repeat(']', 33))::jsonb);
		INSERT INTO bins VALUES ('\x01', 'one'), ('\x', 'empty binary key');
		INSERT INTO other SELECT g, 'v' || g FROM generate_series(1, 30) g;`, nil)
	f.plan()
	f.startStreamer(nil)
	// f.snapshot fails the test unless each snapshot finished: a poison row never fails
	// its table, whichever limit it breaks.
	for _, table := range []string{"keys", "pairs", "docs", "bins", "other"} {
		f.snapshot("public." + table)
	}
	f.assertDeadLetterWith("public.keys", "k=", "snapshot", "k", "empty")
	f.assertDeadLetterWith("public.docs", "id=1000", "snapshot", "doc", "32 levels")
	f.assertDeadLetterWith("public.bins", `id=\x`, "snapshot", "id", "empty bytea")

	longKey := strings.Repeat("x", 2100)
	longSort := strings.Repeat("y", 1100)
	f.exec("INSERT INTO keys VALUES ($1, 'too long a partition key')", longKey)
	f.exec("INSERT INTO pairs VALUES (7000, $1, 'too long a sort key')", longSort)
	f.exec(`INSERT INTO docs VALUES (2000, '{"": 1}'), (2001, (repeat('{"a":', 33) || '1' || repeat('}', 33))::jsonb)`)
	f.exec("DELETE FROM keys WHERE k = ''")
	f.exec("UPDATE keys SET k = '' WHERE k = 'k5'") // a key update onto a poison key
	poisonEnd := f.currentLSN()
	f.exec("INSERT INTO keys VALUES ('after', 'after the poison')")
	f.exec("INSERT INTO other VALUES (1000, 'after the poison')")
	f.exec("UPDATE docs SET doc = '{\"fine\": true}' WHERE id = 3")
	f.waitCaughtUp()

	f.assertDeadLetterWith("public.keys", "k="+longKey, "stream", "k", "2048-byte partition key")
	f.assertDeadLetterWith("public.pairs", "a=7000,b="+longSort, "stream", "b", "1024-byte sort key")
	f.assertDeadLetterWith("public.docs", "id=2000", "stream", "doc", "empty object key")
	f.assertDeadLetterWith("public.docs", "id=2001", "stream", "doc", "32 levels")
	if got := attrS(f.item("public.keys", map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "after"}}), "v"); got != "after the poison" {
		t.Errorf("a change after the poison ones did not arrive: v = %q", got)
	}
	// The slot is acknowledged past the poison changes: WAL is not retained behind them.
	eventually(t, "confirmed_flush_lsn past the poison changes", func() bool {
		slot, err := pg.ReadSlot(f.ctx, f.src, f.cfg.Slot)
		return err == nil && slot.ConfirmedFlushLSN >= poisonEnd
	})

	// Tables with a dead letter are degraded, never reported consistent; the others are.
	for table, degraded := range map[string]bool{"keys": true, "pairs": true, "docs": true, "bins": true, "other": false} {
		eventually(t, "consistency of "+table, func() bool {
			st, _, err := f.env.Control.Table(f.ctx, "public."+table)
			if err != nil {
				t.Fatal(err)
			}
			if degraded {
				return st.Degraded != "" && !st.Consistent
			}
			return st.Degraded == "" && st.Consistent
		})
	}

	// The status shows each degraded table with its reason and dead letters.
	status, err := f.env.Status(f.ctx, pipeline.StatusInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range status.Tables {
		switch {
		case ts.Table == "public.other" && (ts.Degraded != "" || ts.DeadLetters != 0 || !ts.Consistent):
			t.Errorf("status of public.other: %+v, want consistent without dead letters", ts)
		case ts.Table == "public.keys" && (!strings.Contains(ts.Degraded, "dead letter") || ts.DeadLetters < 3 || ts.Consistent):
			t.Errorf("status of public.keys: %+v, want degraded, 3 dead letters, not consistent", ts)
		}
	}
	if status.DeadLetters < 9 {
		t.Errorf("status counts %d dead letters, want at least 9", status.DeadLetters)
	}

	// Every row but the poison ones converged: once they are gone from PostgreSQL (their
	// DELETEs are poison too, and skipped the same way), DynamoDB equals PostgreSQL.
	f.exec("DELETE FROM keys WHERE k IN ('', $1)", longKey)
	f.exec("DELETE FROM pairs WHERE a = 7000")
	f.exec("DELETE FROM docs WHERE id IN (1000, 2000, 2001)")
	f.exec(`DELETE FROM bins WHERE id = '\x'`)
	f.waitCaughtUp()
	f.assertConverged("public.keys", "public.pairs", "public.docs", "public.bins", "public.other")
}

// TestWideTableToastMerge: an UPDATE of a 400-column table that leaves a TOASTed value
// unchanged needs an update expression over DynamoDB's 4 KB limit; it must still merge
// (and, before the snapshot wrote the row, re-read) without losing the TOASTed value.
func TestWideTableToastMerge(t *testing.T) {
	var cols, vals []string
	for i := 1; i <= 400; i++ {
		cols = append(cols, fmt.Sprintf("c%d int", i))
		vals = append(vals, "g")
	}
	f := newFixture(t, fmt.Sprintf(`
		CREATE TABLE wide (id int PRIMARY KEY, big text, %s);
		ALTER TABLE wide ALTER COLUMN big SET STORAGE EXTERNAL;
		INSERT INTO wide SELECT g, (SELECT string_agg(md5(g::text || h::text), '') FROM generate_series(1, 100) h), %s
		FROM generate_series(1, 50) g;`, strings.Join(cols, ", "), strings.Join(vals, ", ")), nil)
	f.plan()
	f.startStreamer(nil)
	// Before the snapshot: no item yet, so the merge is completed by a re-read.
	f.exec("UPDATE wide SET c1 = -1 WHERE id = 40")
	f.waitCaughtUp()
	f.snapshot("public.wide")
	// After the snapshot: merged into the existing item.
	f.exec("UPDATE wide SET c2 = -2, c400 = NULL WHERE id IN (3, 40)")
	f.waitCaughtUp()
	for _, id := range []int{3, 40} {
		if item := f.item("public.wide", intKey("id", id)); len(attrS(item, "big")) != 3200 {
			t.Errorf("row %d lost its TOASTed value: big has %d characters", id, len(attrS(item, "big")))
		}
	}
	f.assertConverged("public.wide")
	if dl := f.deadLetters(); len(dl) > 0 {
		t.Errorf("no change should be dead-lettered, got %+v", dl)
	}
}

// assertDeadLetterWith checks a dead letter of table and key: from source, naming the
// column, with a reason that names table and key and contains every phrase.
func (f *fixture) assertDeadLetterWith(table, key, source, column string, phrases ...string) {
	f.t.Helper()
	all := f.deadLetters()
	for _, d := range all {
		if d.Table != table || d.Key != key {
			continue
		}
		if d.Source != source || d.Column != column {
			f.t.Errorf("dead letter %s %.40s: source %q column %q, want %q %q", table, key, d.Source, d.Column, source, column)
		}
		if d.LSN == 0 {
			f.t.Errorf("dead letter %s %.40s has no LSN", table, key)
		}
		for _, p := range append([]string{table, clipKey(key)}, phrases...) {
			if !strings.Contains(d.Reason, p) {
				f.t.Errorf("dead letter %s %.40s: reason should mention %q: %.300s", table, key, p, d.Reason)
			}
		}
		return
	}
	var got []string
	for _, d := range all {
		got = append(got, fmt.Sprintf("%s %.40s (%s at %s)", d.Table, d.Key, d.Source, pglogrepl.LSN(d.LSN)))
	}
	f.t.Errorf("no dead letter for %s %.40s; dead letters: %v", table, key, got)
}

func clipKey(key string) string { return key[:min(len(key), 60)] }
