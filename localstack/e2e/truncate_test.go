package e2e

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"tandem/shared/config"
	"tandem/shared/pg"
)

// TestTruncateDoesNotStallOtherTables: the tombstones of a TRUNCATE are written while the
// stream goes on, so a change to another table committed after it arrives long before
// they are done; the TRUNCATE itself is acknowledged only once they are all durable.
func TestTruncateDoesNotStallOtherTables(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE big (id int PRIMARY KEY, v text);
		CREATE TABLE other (id int PRIMARY KEY, v text);
		INSERT INTO big SELECT g, 'v' || g FROM generate_series(1, 3000) g;`, func(c *config.Config) { c.ChunkSize = 500 })
	f.plan()
	f.startStreamer(nil)
	f.snapshot("public.big")
	f.snapshot("public.other")
	f.waitCaughtUp()

	f.exec("TRUNCATE big")
	truncated := f.currentLSN()
	f.exec("INSERT INTO big VALUES (1, 'after the truncate')") // a later write the tombstones must not touch
	f.exec("INSERT INTO other VALUES (1, 'after the truncate')")
	began := time.Now()
	eventually(t, "the change to the other table", func() bool {
		return attrS(f.item("public.other", intKey("id", 1)), "v") != ""
	})
	arrived := time.Since(began)
	live := f.liveItems(f.table("public.big").Target)
	slot, err := pg.ReadSlot(f.ctx, f.src, f.cfg.Slot)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("other table's change arrived after %s, with %d live items of the truncated table left", arrived.Round(time.Millisecond), live)
	// Behind a blocking TRUNCATE the other change would arrive only after every tombstone,
	// leaving just the row inserted after it.
	if live <= 1 {
		t.Errorf("the other table's change arrived only after the truncate's %d tombstones were written: the stream stalled behind it", 3000)
	}
	if slot.ConfirmedFlushLSN >= truncated && live > 1 {
		t.Errorf("confirmed_flush_lsn %s passed the TRUNCATE at %s while %d of its items were still live", slot.ConfirmedFlushLSN, truncated, live)
	}
	f.waitCaughtUp()
	f.assertConverged("public.big", "public.other")
	if got := attrS(f.item("public.big", intKey("id", 1)), "v"); got != "after the truncate" {
		t.Errorf("row inserted after the TRUNCATE: v = %q", got)
	}
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
