package stream

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"
)

// applier runs writes concurrently across keys but in WAL order per key: every change of
// a key goes to the same worker queue. Queues are bounded, so a huge transaction applies
// as it streams instead of piling up in memory.
type applier struct {
	queues   []chan job
	tr       *tracker
	inFlight sync.WaitGroup
	workers  sync.WaitGroup

	mu  sync.Mutex
	err error
}

type job struct {
	key string
	txn *txn
	run func(context.Context) error
}

func newApplier(ctx context.Context, workers, maxInFlight int, tr *tracker) *applier {
	a := &applier{tr: tr, queues: make([]chan job, workers)}
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
			if err := retry(ctx, j.run); err != nil {
				a.fail(fmt.Errorf("applying change of %s: %w", j.key, err))
			} else {
				a.tr.done(j.txn)
			}
		}
		a.inFlight.Done()
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

// retry re-runs a write that failed for a reason other than DynamoDB throttling (which
// the SDK retries itself), e.g. PostgreSQL restarting under a TOAST re-read.
func retry(ctx context.Context, f func(context.Context) error) error {
	backoff := 200 * time.Millisecond
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		if err = f(ctx); err == nil || ctx.Err() != nil {
			return err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 10*time.Second)
	}
	return err
}
