package e2e

import (
	"context"
	"testing"
	"time"

	"tandem/streamer/stream"
)

// TestTwoStreamers starts two streamers at once: only one consumes the slot, the other
// waits as a standby and takes over when the first stops, and nothing is lost.
func TestTwoStreamers(t *testing.T) {
	f := newFixture(t, itemsDDL, nil)
	f.plan()
	f.snapshot("public.items")

	run := func(owner string) (stop func(), done chan error) {
		ctx, cancel := context.WithCancel(f.ctx)
		done = make(chan error, 1)
		go func() { done <- (&stream.Streamer{Env: f.env, Owner: owner}).Run(ctx) }()
		return cancel, done
	}
	stopA, doneA := run("a")
	eventually(t, "a streamer owns the checkpoint", func() bool {
		cp, _ := f.env.Control.Checkpoint(f.ctx)
		return cp.Owner == "a"
	})
	stopB, doneB := run("b")
	defer func() { stopB(); <-doneB }()
	for i := range 20 {
		f.exec("UPDATE items SET v = $1 WHERE id = $2", "while two run", i+1)
		time.Sleep(50 * time.Millisecond)
		if cp, _ := f.env.Control.Checkpoint(f.ctx); cp.Owner != "a" {
			t.Fatalf("the standby %q took over while the leader was alive", cp.Owner)
		}
	}
	f.waitCaughtUp()

	stopA()
	if err := <-doneA; err != nil {
		t.Fatalf("leader: %v", err)
	}
	f.exec("UPDATE items SET v = 'after failover' WHERE id < 10")
	f.exec("DELETE FROM items WHERE id = 20")
	f.waitCaughtUp()
	if cp, _ := f.env.Control.Checkpoint(f.ctx); cp.Owner != "b" {
		t.Fatalf("checkpoint owner after failover = %q, want the standby", cp.Owner)
	}
	f.assertConverged("public.items")
}

// TestPostgresRestart restarts PostgreSQL under a running streamer and snapshot: the
// streamer reconnects and replays from its acknowledged position, and the table converges.
func TestPostgresRestart(t *testing.T) {
	f := newFixture(t, itemsDDL, nil)
	f.plan()
	f.startStreamer(nil)
	f.exec("UPDATE items SET v = 'before restart' WHERE id % 3 = 0")
	if err := env.PG.Restart(); err != nil {
		t.Fatal(err)
	}
	f.src.Reset() // the test's own connections died with the server
	f.exec("UPDATE items SET v = 'after restart' WHERE id % 4 = 0")
	f.exec("DELETE FROM items WHERE id % 5 = 0")
	f.snapshot("public.items")
	f.waitCaughtUp()
	f.assertConverged("public.items")
}
