package e2e

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/pg"
	"tandem/shared/precedence"
	"tandem/shared/schema"
	"tandem/shared/snapshot"
)

const itemsDDL = `
CREATE TABLE items (id int PRIMARY KEY, v text, big text);
ALTER TABLE items ALTER big SET STORAGE EXTERNAL;
INSERT INTO items SELECT g, 'v' || g, repeat(md5(g::text), 300) FROM generate_series(1, 60) g;`

// onChunk returns an AfterRead hook that runs f once, on the n-th chunk read (from 1).
func onChunk(n int64, f func()) func(context.Context, *schema.Table, *pg.Chunk) {
	var seen atomic.Int64
	return func(context.Context, *schema.Table, *pg.Chunk) {
		if seen.Add(1) == n {
			f()
		}
	}
}

func attrS(item map[string]types.AttributeValue, name string) string {
	if s, ok := item[name].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

// TestInterleavings forces each race of README "The contract" between the snapshot and the stream in
// the bad order and checks that DynamoDB still converges to PostgreSQL.
func TestInterleavings(t *testing.T) {
	t.Run("a/stream delete before snapshot write stays deleted", func(t *testing.T) {
		f := newFixture(t, itemsDDL, nil)
		f.plan()
		f.startStreamer(nil)
		c := f.env.Copier()
		c.AfterRead = onChunk(1, func() {
			// Row 5 is in the chunk just read; the stream deletes it before the chunk lands.
			f.exec("DELETE FROM items WHERE id = 5")
			f.waitCaughtUp()
		})
		runCopier(f, c, "public.items")
		f.waitCaughtUp()
		f.assertConverged("public.items")
		if item := f.item("public.items", intKey("id", 5)); !precedence.IsTombstone(item) {
			t.Errorf("row 5 should be a tombstone, got %v", item)
		}
	})

	t.Run("b/stream update before snapshot write keeps streamed version", func(t *testing.T) {
		f := newFixture(t, itemsDDL, nil)
		f.plan()
		f.startStreamer(nil)
		c := f.env.Copier()
		c.AfterRead = onChunk(1, func() {
			f.exec("UPDATE items SET v = 'streamed' WHERE id = 5")
			f.waitCaughtUp()
		})
		runCopier(f, c, "public.items")
		f.waitCaughtUp()
		f.assertConverged("public.items")
		if item := f.item("public.items", intKey("id", 5)); attrS(item, "v") != "streamed" || attrS(item, precedence.AttrSrc) != precedence.SrcStream {
			t.Errorf("row 5 should hold the streamed version, got %v", item)
		}
	})

	t.Run("c/snapshot write before an older stream change still converges", func(t *testing.T) {
		f := newFixture(t, itemsDDL, nil)
		f.plan()
		g := newGate()
		f.startStreamer(g.hook)
		// Both changes are held back; the snapshot reads the newest row and lands first.
		f.exec("UPDATE items SET v = 'u1' WHERE id = 5")
		f.exec("UPDATE items SET v = 'u2' WHERE id = 5")
		f.exec("UPDATE items SET v = 'u3', big = 'small now' WHERE id = 6")
		f.snapshot("public.items")
		if item := f.item("public.items", intKey("id", 5)); attrS(item, "v") != "u2" || attrS(item, precedence.AttrSrc) != precedence.SrcSnapshot {
			t.Fatalf("setup: the snapshot row should have landed first, got %v", item)
		}
		g.release()
		f.waitCaughtUp()
		f.assertConverged("public.items")
	})

	t.Run("d/toast-unchanged update before the snapshot wrote the row", func(t *testing.T) {
		f := newFixture(t, itemsDDL, nil)
		f.plan()
		f.startStreamer(nil)
		c := f.env.Copier()
		c.AfterRead = onChunk(1, func() {
			// Row 50 is not written yet; the UPDATE leaves the TOASTed column out of the WAL.
			f.exec("UPDATE items SET v = 'toast-kept' WHERE id = 50")
			f.waitCaughtUp()
			item := f.item("public.items", intKey("id", 50))
			if attrS(item, "big") == "" || attrS(item, "v") != "toast-kept" {
				t.Errorf("streamed row 50 should be complete before the snapshot reaches it, got v=%q big=%d bytes", attrS(item, "v"), len(attrS(item, "big")))
			}
		})
		runCopier(f, c, "public.items")
		f.waitCaughtUp()
		f.assertConverged("public.items")
	})

	t.Run("e/primary-key update during the snapshot", func(t *testing.T) {
		f := newFixture(t, itemsDDL, nil)
		f.plan()
		f.startStreamer(nil)
		c := f.env.Copier()
		c.AfterRead = onChunk(1, func() {
			f.exec("UPDATE items SET id = 1000 WHERE id = 2")  // read by this chunk
			f.exec("UPDATE items SET id = 2000 WHERE id = 45") // not read yet
			f.exec("UPDATE items SET id = 70 WHERE id = 1000") // moved again, into the range still to read
			f.waitCaughtUp()
		})
		runCopier(f, c, "public.items")
		f.waitCaughtUp()
		f.assertConverged("public.items")
	})

	t.Run("f/truncate during a running snapshot", func(t *testing.T) {
		f := newFixture(t, itemsDDL, nil)
		f.plan()
		f.startStreamer(nil)
		c := f.env.Copier()
		c.AfterRead = onChunk(2, func() {
			// The chunk just read is from before the TRUNCATE and must never become live.
			f.exec("TRUNCATE items")
			f.exec("INSERT INTO items VALUES (500, 'after', 'truncate'), (501, 'after', NULL)")
			f.waitCaughtUp()
		})
		res, err := c.Run(f.ctx, f.table("public.items"), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Done || !res.Fenced {
			t.Errorf("snapshot should end fenced and done, got %+v", res)
		}
		f.waitCaughtUp()
		f.assertConverged("public.items")
	})
}

func runCopier(f *fixture, c *snapshot.Copier, source string) {
	f.t.Helper()
	res, err := c.Run(f.ctx, f.table(source), time.Time{})
	if err != nil {
		f.t.Fatalf("snapshot of %s: %v", source, err)
	}
	if !res.Done {
		f.t.Fatalf("snapshot of %s not done: %+v", source, res)
	}
}
