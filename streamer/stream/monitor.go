package stream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"tandem/shared/control"
	"tandem/shared/pg"
)

// metrics counts what the streamer did since it started.
type metrics struct {
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

// report publishes the checkpoint (DESIGN §4) to the control table, flags tables that
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

// emitEMF writes one CloudWatch embedded-metric-format record; on stdout, the awslogs
// driver ships it and CloudWatch turns it into metrics without API calls.
func emitEMF(w io.Writer, slot string, cp control.Checkpoint) {
	type metric struct{ Name, Unit string }
	rec := map[string]any{
		"_aws": map[string]any{
			"Timestamp": time.Now().UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  "Tandem",
				"Dimensions": [][]string{{"Slot"}},
				"Metrics": []metric{{"ReplicationLagBytes", "Bytes"}, {"ReplicationLagSeconds", "Seconds"},
					{"RetainedWALBytes", "Bytes"}, {"ChangesPerSecond", "Count/Second"}, {"DeadLetters", "Count"}},
			}},
		},
		"Slot":                  slot,
		"ReplicationLagBytes":   cp.LagBytes,
		"ReplicationLagSeconds": cp.LagSeconds,
		"RetainedWALBytes":      cp.RetainedBytes,
		"ChangesPerSecond":      cp.ChangesPerSec,
		"DeadLetters":           cp.DeadLetters,
	}
	b, err := json.Marshal(rec)
	if err == nil {
		fmt.Fprintln(w, string(b))
	}
}
