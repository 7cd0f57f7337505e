package stream

import (
	"testing"
	"time"
)

func TestTrackerAdvancesOnlyPastDurableTransactions(t *testing.T) {
	var tr tracker
	a, b := tr.begin(time.Now()), tr.begin(time.Now())
	tr.add(a)
	tr.add(b)
	tr.commit(a, 100)
	tr.commit(b, 200)
	tr.done(b)
	if got := tr.appliedLSN(); got != 0 {
		t.Fatalf("applied %d before the older transaction finished", got)
	}
	tr.idle(500)
	if got := tr.appliedLSN(); got != 0 {
		t.Fatalf("idle moved applied to %d with transactions in flight", got)
	}
	tr.done(a)
	if got := tr.appliedLSN(); got != 200 {
		t.Fatalf("applied = %d, want 200", got)
	}
	tr.idle(500)
	if got := tr.appliedLSN(); got != 500 {
		t.Fatalf("idle: applied = %d, want 500", got)
	}
	c := tr.begin(time.Now())
	tr.add(c)
	tr.done(c)
	if got := tr.appliedLSN(); got != 500 {
		t.Fatalf("uncommitted transaction moved applied to %d", got)
	}
}
