package stream

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"tandem/shared/fault"
)

// applier runs writes concurrently across keys but in WAL order per key: every change of
// a key goes to the same worker queue. Queues are bounded, so a huge transaction applies
// as it streams instead of piling up in memory.
//
// A write is retried until it succeeds or is known to be poison (shared/fault): a
// transient failure (throttling, an outage, PostgreSQL restarting under a re-read) holds
// the position back, however long, and a poison change becomes a dead letter so that it
// cannot hold back the stream for every other row and table.
type applier struct {
	queues   []chan job
	tr       *tracker
	log      *slog.Logger
	inFlight sync.WaitGroup
	workers  sync.WaitGroup

	mu  sync.Mutex
	err error
}

type job struct {
	key string
	txn *txn
	run func(context.Context) error
	// deadLetter records the change when run fails with a poison error.
	deadLetter func(ctx context.Context, cause error) error
}

func newApplier(ctx context.Context, workers, maxInFlight int, tr *tracker, log *slog.Logger) *applier {
	a := &applier{tr: tr, log: log, queues: make([]chan job, workers)}
	depth := max(1, maxInFlight/workers)
	for i := range a.queues {
		a.queues[i] = make(chan job, depth)
		a.workers.Add(1)
		go a.work(ctx, a.queues[i])
	}
	return a
}

// submit queues a change, blocking while its worker is full. It fails once any write has
// failed: nothing after a lost write may be acknowledged.
func (a *applier) submit(ctx context.Context, j job) error {
	if err := a.failed(); err != nil {
		return err
	}
	h := fnv.New32a()
	h.Write([]byte(j.key))
	a.tr.add(j.txn)
	a.inFlight.Add(1)
	select {
	case a.queues[h.Sum32()%uint32(len(a.queues))] <- j:
		return nil
	case <-ctx.Done():
		a.inFlight.Done()
		return ctx.Err()
	}
}

func (a *applier) work(ctx context.Context, q chan job) {
	defer a.workers.Done()
	for j := range q {
		if a.failed() == nil {
			if err := a.apply(ctx, j); err != nil {
				a.fail(fmt.Errorf("applying change of %s: %w", j.key, err))
			} else {
				a.tr.done(j.txn)
			}
		}
		a.inFlight.Done()
	}
}

// maxBackoff caps the wait between attempts of a write that keeps failing transiently.
const maxBackoff = 30 * time.Second

// apply runs one change to its end: written, lost to a newer write, or dead-lettered. It
// returns an error only when the session is stopping (ctx) or on a fatal error.
func (a *applier) apply(ctx context.Context, j job) error {
	run, what := j.run, "write"
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := run(ctx)
		class := fault.Classify(err)
		switch {
		case class == fault.None:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case class == fault.Poison && what == "write" && j.deadLetter != nil:
			cause := err
			run, what = func(ctx context.Context) error { return j.deadLetter(ctx, cause) }, "dead letter"
			attempt, backoff = 0, 100*time.Millisecond
			continue
		case class == fault.Poison:
			// Even the dead letter cannot be stored: say so loudly rather than stall.
			a.log.Error("change dropped: its dead letter cannot be stored either", "route", j.key, "error", err.Error())
			return nil
		case class == fault.Fatal:
			return err
		}
		if attempt == 1 || attempt%10 == 0 {
			a.log.Warn("write failed, retrying (nothing after it is acknowledged meanwhile)",
				"what", what, "route", j.key, "attempt", attempt, "error", err.Error(), "in", backoff.String())
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// drain waits until every queued change is written: the barrier before a TRUNCATE or a
// schema change, and before a reconnect.
func (a *applier) drain() error {
	a.inFlight.Wait()
	return a.failed()
}

func (a *applier) close() {
	for _, q := range a.queues {
		close(q)
	}
	a.workers.Wait()
}

func (a *applier) fail(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
}

func (a *applier) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}
