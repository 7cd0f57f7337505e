package e2e

import (
	"testing"

	"tandem/shared/control"
)

// waitSnapshotDone waits until the table's snapshot (possibly one the streamer started
// itself) is done and the stream has applied past its consistency point.
func (f *fixture) waitConsistent(source string) control.TableState {
	f.t.Helper()
	var st control.TableState
	eventually(f.t, source+" consistent", func() bool {
		var err error
		st, _, err = f.env.Control.Table(f.ctx, source)
		return err == nil && st.Consistent
	})
	return st
}

// TestSchemaChanges applies DDL while streaming and requires DynamoDB to keep matching
// PostgreSQL without stopping the stream (README "Bad input and faults").
func TestSchemaChanges(t *testing.T) {
	f := newFixture(t, itemsDDL+`
		CREATE TABLE late (id int PRIMARY KEY, v text);
		INSERT INTO late SELECT g, 'before it was published ' || g FROM generate_series(1, 30) g;
		CREATE PUBLICATION tandem FOR TABLE items;`, nil)
	f.plan()
	f.snapshot("public.items")
	f.startStreamer(nil)
	first := f.waitConsistent("public.items")

	step := func(name string, resnapshot bool, sql ...string) {
		t.Helper()
		before, _, _ := f.env.Control.Table(f.ctx, "public.items")
		for _, s := range sql {
			f.exec(s)
		}
		f.waitCaughtUp()
		if resnapshot {
			eventually(t, name+": re-snapshot planned", func() bool {
				st, _, err := f.env.Control.Table(f.ctx, "public.items")
				return err == nil && st.Epoch != before.Epoch
			})
		}
		st := f.waitConsistent("public.items")
		f.assertConverged("public.items")
		if again := st.Epoch != before.Epoch; again != resnapshot {
			t.Errorf("%s: re-snapshot = %v, want %v", name, again, resnapshot)
		}
	}
	step("nullable column added", false,
		"ALTER TABLE items ADD COLUMN note text",
		"UPDATE items SET note = 'n' || id WHERE id % 7 = 0",
		"INSERT INTO items (id, v, note) VALUES (100, 'new', 'with note')")
	step("column added with a default", true,
		"ALTER TABLE items ADD COLUMN flag int NOT NULL DEFAULT 7",
		"UPDATE items SET flag = 8 WHERE id = 3")
	step("column dropped", true,
		"ALTER TABLE items DROP COLUMN note",
		"UPDATE items SET v = 'after drop' WHERE id = 4")
	step("column dropped in the transaction that updates a TOASTed row", true,
		"ALTER TABLE items ADD COLUMN gone text DEFAULT 'soon gone'",
		"UPDATE items SET gone = 'x' WHERE id = 1",
		"BEGIN; ALTER TABLE items DROP COLUMN gone; UPDATE items SET v = 'merged after drop' WHERE id = 1; COMMIT")
	step("column type changed", true,
		"ALTER TABLE items ALTER COLUMN flag TYPE text USING flag::text || '!'",
		"DELETE FROM items WHERE id = 5")
	// DDL alone is not in the WAL stream: the catalog watcher notices it.
	step("column added with a default and no write after it", true,
		"ALTER TABLE items ADD COLUMN quiet int DEFAULT 42")
	step("replica identity full", false,
		"ALTER TABLE items REPLICA IDENTITY FULL",
		"UPDATE items SET v = 'full' WHERE id = 6",
		"UPDATE items SET id = 600 WHERE id = 7",
		"DELETE FROM items WHERE id = 8")
	if st, _, _ := f.env.Control.Table(f.ctx, "public.items"); st.Epoch <= first.Epoch {
		t.Errorf("epoch did not move: %d", st.Epoch)
	}

	// A table added to the publication while streaming is snapshotted by the streamer,
	// including rows that were never in the WAL stream, whether or not it changes.
	f.exec("ALTER PUBLICATION tandem ADD TABLE late")
	f.exec("UPDATE late SET v = 'streamed' WHERE id = 1")
	f.waitCaughtUp()
	f.waitConsistent("public.late")
	f.exec("CREATE TABLE quiet (id int PRIMARY KEY, v text); INSERT INTO quiet VALUES (1, 'never changes again')")
	f.exec("ALTER PUBLICATION tandem ADD TABLE quiet")
	f.waitConsistent("public.quiet")
	f.assertConverged("public.late", "public.items", "public.quiet")
}
