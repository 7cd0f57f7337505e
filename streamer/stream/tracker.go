package stream

import (
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
)

// tracker knows which WAL positions are durable: a transaction counts as applied once
// every change of it and of every earlier transaction is written (README "The contract"). Only
// transactions in flight are held, never their rows.
type tracker struct {
	mu      sync.Mutex
	txns    []*txn // in commit order, oldest first
	applied pglogrepl.LSN
}

type txn struct {
	began     time.Time
	pending   int
	committed bool
	end       pglogrepl.LSN
}

func (t *tracker) begin(committed time.Time) *txn {
	x := &txn{began: committed}
	t.mu.Lock()
	t.txns = append(t.txns, x)
	t.mu.Unlock()
	return x
}

func (t *tracker) add(x *txn) {
	t.mu.Lock()
	x.pending++
	t.mu.Unlock()
}

func (t *tracker) done(x *txn) {
	t.mu.Lock()
	x.pending--
	t.advance()
	t.mu.Unlock()
}

func (t *tracker) commit(x *txn, end pglogrepl.LSN) {
	t.mu.Lock()
	x.committed, x.end = true, end
	t.advance()
	t.mu.Unlock()
}

// idle moves the applied LSN to the server's WAL end when nothing is in flight: every
// transaction committed before it was already sent to us and applied.
func (t *tracker) idle(walEnd pglogrepl.LSN) {
	t.mu.Lock()
	if len(t.txns) == 0 && walEnd > t.applied {
		t.applied = walEnd
	}
	t.mu.Unlock()
}

func (t *tracker) advance() {
	for len(t.txns) > 0 && t.txns[0].committed && t.txns[0].pending == 0 {
		if t.txns[0].end > t.applied {
			t.applied = t.txns[0].end
		}
		t.txns[0] = nil
		t.txns = t.txns[1:]
	}
}

// lagSeconds is how long ago the oldest transaction not yet durable committed on the primary.
func (t *tracker) lagSeconds(now time.Time) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.txns) == 0 {
		return 0
	}
	return now.Sub(t.txns[0].began).Seconds()
}

// appliedLSN is the position up to which everything is durable.
func (t *tracker) appliedLSN() pglogrepl.LSN {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applied
}

// reset forgets transactions in flight, after a reconnect replays them.
func (t *tracker) reset(applied pglogrepl.LSN) {
	t.mu.Lock()
	t.txns = nil
	if applied > t.applied {
		t.applied = applied
	}
	t.mu.Unlock()
}
