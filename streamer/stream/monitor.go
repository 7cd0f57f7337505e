package stream

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"tandem/shared/control"
	"tandem/shared/metrics"
	"tandem/shared/pg"
)

// counters count what the streamer did since it started.
type counters struct {
	changes     atomic.Int64
	deadLetters atomic.Int64
	lastChanges int64
	lastAt      time.Time
	lastEMF     time.Time
}

func (s *session) counted(run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		err := run(ctx)
		if err == nil {
			s.metrics.changes.Add(1)
		}
		return err
	}
}

// report publishes the checkpoint (README "Reading its status") to the control table, flags tables that
// became consistent, and emits CloudWatch metrics.
func (s *session) report(ctx context.Context, final bool) {
	now := time.Now()
	applied := uint64(s.tr.appliedLSN())
	s.connMu.Lock()
	confirmed := uint64(s.confirmed)
	s.connMu.Unlock()
	server := s.serverLSN.Load()
	if now.Sub(s.lastRetained) > 10*time.Second || final {
		if slot, err := pg.ReadSlot(ctx, s.Env.PG, s.Env.Config.Slot); err == nil {
			s.retained = slot.RetainedBytes()
			s.noteServerLSN(slot.CurrentLSN)
			server = s.serverLSN.Load()
		}
		s.lastRetained = now
	}
	changes := s.metrics.changes.Load()
	rate := 0.0
	if !s.metrics.lastAt.IsZero() {
		rate = float64(changes-s.metrics.lastChanges) / now.Sub(s.metrics.lastAt).Seconds()
	}
	s.metrics.lastChanges, s.metrics.lastAt = changes, now
	cp := control.Checkpoint{
		Owner: s.Owner, AppliedLSN: applied, ConfirmedLSN: confirmed, ServerLSN: server,
		LagSeconds: s.tr.lagSeconds(now), RetainedBytes: s.retained, ChangesPerSec: rate,
		Changes: changes, Lost: s.Env.Writer.Lost.Load(), DeadLetters: s.metrics.deadLetters.Load(),
	}
	if server > applied {
		cp.LagBytes = server - applied
	}
	if err := s.Env.Control.SaveCheckpoint(ctx, cp); err != nil && ctx.Err() == nil {
		s.Env.Log.Warn("saving checkpoint failed", "error", err.Error())
	}
	if err := s.Env.Control.MarkConsistent(ctx, applied); err != nil && ctx.Err() == nil {
		s.Env.Log.Warn("marking consistent tables failed", "error", err.Error())
	}
	if now.Sub(s.metrics.lastEMF) >= 10*time.Second || final {
		s.metrics.lastEMF = now
		if s.Metrics != nil {
			emitEMF(s.Metrics, s.Env.Config.Slot, cp)
		}
	}
}

func emitEMF(w io.Writer, slot string, cp control.Checkpoint) {
	_ = metrics.Emit(w, map[string]string{"Slot": slot},
		metrics.Metric{Name: "ReplicationLagBytes", Unit: "Bytes", Value: float64(cp.LagBytes)},
		metrics.Metric{Name: "ReplicationLagSeconds", Unit: "Seconds", Value: cp.LagSeconds},
		metrics.Metric{Name: "RetainedWALBytes", Unit: "Bytes", Value: float64(cp.RetainedBytes)},
		metrics.Metric{Name: "ChangesPerSecond", Unit: "Count/Second", Value: cp.ChangesPerSec},
		metrics.Metric{Name: "DeadLetters", Unit: "Count", Value: float64(cp.DeadLetters)})
}
