package e2e

import (
	"testing"
	"time"

	"tandem/shared/config"
)

// TestFinalizeInSegmentsResumes: finalize splits the sweep in parallel-scan segments
// sized from the table; every invocation stops at its deadline with the segment's
// progress stored in the control table, the next one resumes there, and once every
// segment is done the table is finalized with exactly the stale tombstones removed.
func TestFinalizeInSegmentsResumes(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE items (id int PRIMARY KEY, v text);
		INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 60) g;`, func(c *config.Config) { c.SweepSegmentItems = 20 })
	f.plan()
	f.startStreamer(nil)
	f.snapshot("public.items")
	f.exec("DELETE FROM items WHERE id % 2 = 0") // 30 tombstones, committed before finalize
	f.waitCaughtUp()
	f.env.Writer.PageLimit = 4 // several pages per segment, so an invocation stops mid-segment

	plan, err := f.env.FinalizeSegments(f.ctx, "public.items")
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Segments) != 3 {
		t.Fatalf("%d segments for 60 items at 20 a segment, want 3", len(plan.Segments))
	}
	// Resuming from scratch (a retried Finalize state) returns the same sweep.
	if again, err := f.env.FinalizeSegments(f.ctx, "public.items"); err != nil || again.Segments[0].Generation != plan.Segments[0].Generation {
		t.Fatalf("a repeated Finalize started a new sweep: %+v %v", again, err)
	}
	swept, invocations := 0, 0
	for _, seg := range plan.Segments {
		for {
			invocations++
			// A deadline already past: each invocation sweeps one page and stops.
			out, err := f.env.SweepSegment(f.ctx, seg, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			swept += out.Swept
			if out.Done {
				break
			}
			if invocations > 100 {
				t.Fatal("segments never done")
			}
		}
	}
	if invocations <= len(plan.Segments) {
		t.Errorf("%d invocations for %d segments: none was interrupted and resumed", invocations, len(plan.Segments))
	}
	out, err := f.env.FinishFinalize(f.ctx, "public.items")
	if err != nil {
		t.Fatal(err)
	}
	st := f.control("public.items")
	if swept != 30 || out.Swept != 30 || st.FinalizedEpoch != st.Epoch {
		t.Errorf("swept %d (reported %d), finalized epoch %d of %d; want the 30 tombstones swept and the table finalized", swept, out.Swept, st.FinalizedEpoch, st.Epoch)
	}
	if n := len(f.scan(f.table("public.items").Target)); n != 30 {
		t.Errorf("%d items left, want the 30 live rows and no tombstone", n)
	}
	f.assertConverged("public.items")
	t.Logf("finalized in %d segments over %d invocations, %d swept", len(plan.Segments), invocations, swept)
}
