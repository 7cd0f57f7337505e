package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pglogrepl"

	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
)

// TestTruncateDoesNotStallOtherTables: a TRUNCATE is recorded (fence and "truncating"
// record) and acknowledged at once; its older items are tombstoned in the background in
// parallel scan segments. A change to another table committed after it arrives long
// before they are done, the slot's confirmed_flush_lsn passes the TRUNCATE while the
// table still shows truncating, a streamer stopped mid-truncation resumes from the
// control table after its restart (nothing is replayed), and the table is consistent
// only once the removal is done, with a row inserted right after the TRUNCATE kept.
func TestTruncateDoesNotStallOtherTables(t *testing.T) {
	const rows = 2000
	f := newFixture(t, `
		CREATE TABLE big (id int PRIMARY KEY, v text);
		CREATE TABLE other (id int PRIMARY KEY, v text);
		INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, 2000) g;`, func(c *config.Config) {
		c.ChunkSize, c.SweepSegmentItems, c.SweepWriters = 500, 400, 32
	})
	f.plan()
	stop := f.startStreamer(nil)
	f.snapshot("public.big")
	f.snapshot("public.other")
	f.waitCaughtUp()
	eventually(t, "public.big consistent before the TRUNCATE", func() bool { return f.tableStatus("public.big").Consistent })

	f.exec("TRUNCATE big")
	truncated := f.currentLSN()
	f.exec("INSERT INTO big VALUES (1, 'after the truncate')") // a later write the tombstones must not touch
	f.exec("INSERT INTO other VALUES (1, 'after the truncate')")
	began := time.Now()
	eventually(t, "the change to the other table", func() bool {
		return attrS(f.item("public.other", intKey("id", 1)), "v") != ""
	})
	arrived := time.Since(began)
	eventually(t, "confirmed_flush_lsn past the TRUNCATE", func() bool {
		slot, err := pg.ReadSlot(f.ctx, f.src, f.cfg.Slot)
		return err == nil && slot.ConfirmedFlushLSN >= truncated
	})
	confirmed := time.Since(began)
	st := f.control("public.big")
	t.Logf("other table's change arrived after %s, the TRUNCATE was confirmed after %s; %d segments", arrived.Round(time.Millisecond), confirmed.Round(time.Millisecond), st.TruncateSegments)
	if st.TruncatingLSN == 0 {
		t.Fatalf("the TRUNCATE's tombstoning ended before it was acknowledged (%s): cannot tell a held stream from a free one", confirmed)
	}
	if st.TruncateSegments < 2 {
		t.Errorf("%d scan segments for %d items at 400 a segment", st.TruncateSegments, rows)
	}
	if ts := f.tableStatus("public.big"); ts.State != control.Truncating || ts.Consistent {
		t.Errorf("status while truncating: state %q consistent %v, want truncating and not consistent", ts.State, ts.Consistent)
	}

	// Stop the streamer once some tombstones are durable, mid-truncation.
	eventually(t, "some of the TRUNCATE's progress stored", func() bool {
		segs, err := f.env.Control.Segments(f.ctx, control.TruncateJob(st.TruncatingSeq), "public.big", st.TruncatingLSN, st.TruncateSegments)
		return err == nil && slices.ContainsFunc(segs, func(p control.SegmentProgress) bool { return p.Removed > 0 })
	})
	stop()
	left := f.liveItems(f.table("public.big").Target)
	if st := f.control("public.big"); st.TruncatingLSN == 0 || left <= 1 {
		t.Fatalf("the truncation ended before the streamer stopped (%d live items left): nothing to resume", left)
	}
	if ts := f.tableStatus("public.big"); ts.State != control.Truncating || ts.Consistent {
		t.Errorf("status of a paused truncation: state %q consistent %v, want truncating and not consistent", ts.State, ts.Consistent)
	}
	t.Logf("streamer stopped with %d live items left", left)

	f.startStreamer(nil)
	eventually(t, "the resumed truncation done", func() bool { return f.control("public.big").TruncatingLSN == 0 })
	f.waitCaughtUp()
	f.assertConverged("public.big", "public.other")
	if got := attrS(f.item("public.big", intKey("id", 1)), "v"); got != "after the truncate" {
		t.Errorf("row inserted after the TRUNCATE: v = %q", got)
	}
	eventually(t, "public.big consistent after the truncation", func() bool { return f.tableStatus("public.big").Consistent })
}

// control reads a table's state from the control table.
func (f *fixture) control(source string) control.TableState {
	f.t.Helper()
	st, _, err := f.env.Control.Table(f.ctx, source)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// tableStatus is a table's entry in the status report.
func (f *fixture) tableStatus(source string) pipeline.TableStatus {
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
	f.t.Fatalf("%s not in the status", source)
	return pipeline.TableStatus{}
}

// liveItems counts the items of a target table that are not tombstones.
func (f *fixture) liveItems(table string) int {
	f.t.Helper()
	n := 0
	p := dynamodb.NewScanPaginator(f.db, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(f.ctx)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, item := range page.Items {
			if _, deleted := item["__deleted"]; !deleted {
				n++
			}
		}
	}
	return n
}

// TestSecondTruncateSupersedes: a TRUNCATE while the removal of an earlier one still runs
// supersedes it (a higher fence); rows inserted between the two go, the row inserted
// after the second stays, and the table is consistent once the second's removal is done.
func TestSecondTruncateSupersedes(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE t (id int PRIMARY KEY, v text);
		INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 400) g;`, func(c *config.Config) { c.SweepSegmentItems = 100 })
	f.plan()
	f.startStreamer(nil)
	f.snapshot("public.t")
	f.waitCaughtUp()

	f.exec("TRUNCATE t")
	f.exec("INSERT INTO t VALUES (1001, 'between the truncates')")
	f.exec("BEGIN; INSERT INTO t VALUES (1002, 'before the second, same transaction'); TRUNCATE t; INSERT INTO t VALUES (1003, 'after both'); COMMIT")
	second := f.currentLSN()
	f.waitCaughtUp()
	eventually(t, "the second TRUNCATE's removal done", func() bool {
		st := f.control("public.t")
		return st.FenceLSN > 0 && st.TruncatingLSN == 0
	})
	if st := f.control("public.t"); pglogrepl.LSN(st.FenceLSN) > second {
		t.Errorf("fence %s after the second TRUNCATE (%s)", pglogrepl.LSN(st.FenceLSN), second)
	}
	f.assertConverged("public.t")
	if got := attrS(f.item("public.t", intKey("id", 1003)), "v"); got != "after both" {
		t.Errorf("row inserted after the second TRUNCATE: v = %q", got)
	}
	eventually(t, "public.t consistent", func() bool { return f.tableStatus("public.t").Consistent })
}
