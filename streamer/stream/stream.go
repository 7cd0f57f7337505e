// Package stream is the WAL streamer: it consumes the pgoutput replication slot, applies
// every change to DynamoDB under the precedence rules (concurrently across keys, in WAL
// order per key), and acknowledges to PostgreSQL only positions whose writes are durable.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/precedence"
)

// Streamer is one streamer process.
type Streamer struct {
	Env *pipeline.Env
	// Owner names this process in the lease and the checkpoint.
	Owner string
	// BeforeApply, when set, runs before each change's write; tests use it to force
	// interleavings with snapshots.
	BeforeApply func(ctx context.Context, table string, p precedence.Position)
	// Metrics receives CloudWatch embedded-metric-format records (nil: none).
	Metrics io.Writer

	tr        tracker
	snapshots sync.WaitGroup
	// shapeMu serialises schema-change handling between the Relation path and the
	// catalog watcher.
	shapeMu sync.Mutex
	metrics counters
	// started tracks tables whose in-process snapshot already runs.
	started sync.Map
	// truncations holds, per table, the TRUNCATE removal running in the background
	// (*truncation; counted in snapshots).
	truncations sync.Map
}

// permanentError wraps errors a reconnect cannot fix.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// classify makes a misconfiguration permanent; anything else (PostgreSQL restarting, a
// network blip) is retried by reconnecting.
func classify(err error) error {
	var m *pg.Misconfigured
	if errors.As(err, &m) {
		return permanentError{err}
	}
	return err
}

// Run streams until ctx is cancelled (SIGTERM) or a permanent error. Connection losses,
// PostgreSQL restarts included, reconnect with backoff and replay from the last
// acknowledged position, which the precedence rules make harmless. A DynamoDB outage at
// start, or one long enough for the lease to lapse, is waited out like a standby waits:
// only losing the lease to another streamer, or a misconfiguration, ends Run.
func (s *Streamer) Run(ctx context.Context) error {
	if err := s.untilAvailable(ctx, "creating the control table", func() error { return s.Env.Control.EnsureTable(ctx) }); err != nil {
		return err
	}
	for {
		if err := s.waitForLease(ctx); err != nil || ctx.Err() != nil {
			return err
		}
		err := s.lead(ctx)
		var lapsed *leaseLapsed
		if !errors.As(err, &lapsed) {
			return err
		}
		s.Env.Log.Warn("stopped consuming after the lease lapsed; re-acquiring it", "owner", s.Owner)
	}
}

// leaseLapsed means the lease could not be renewed within its TTL for a transient reason
// (DynamoDB unreachable): a successor may own it by now, so this process stops consuming,
// but it may take the lease again.
type leaseLapsed struct{ err error }

func (e *leaseLapsed) Error() string {
	return "streamer could not renew its lease in time: " + e.err.Error()
}
func (e *leaseLapsed) Unwrap() error { return e.err }

// lead consumes the slot while this process holds the lease.
func (s *Streamer) lead(ctx context.Context) error {
	log := s.Env.Log.With("owner", s.Owner)
	ctx, cancel := context.WithCancelCause(ctx)
	renewing := make(chan struct{})
	go func() { defer close(renewing); s.renewLease(ctx, cancel) }()
	defer func() {
		// Stop renewing and let in-process snapshots stop at their next chunk before the
		// lease goes, so a standby takes over at once.
		cancel(nil)
		<-renewing
		s.snapshots.Wait()
		// Bounded: during an outage the SDK's retries would hold up re-acquiring the lease.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer rcancel()
		_ = s.Env.Control.ReleaseLease(rctx, s.Owner)
	}()

	backoff := time.Second
	for {
		began := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
				return cause
			}
			log.Info("streamer stopped", "applied_lsn", s.tr.appliedLSN().String())
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return perm.error
		}
		if fault.IsFatal(err) {
			// A configuration error (e.g. a stale configuration) met while streaming: no
			// reconnect fixes it.
			return err
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second
		}
		log.Warn("replication session ended, reconnecting", "error", err.Error(), "in", backoff.String())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// untilAvailable runs f until it succeeds, waiting out transient errors (DynamoDB
// throttling, 5xx, an outage) with backoff and a log line; a fatal error is returned.
// It returns nil when ctx ends.
func (s *Streamer) untilAvailable(ctx context.Context, what string, f func() error) error {
	backoff := time.Second
	var lastLog time.Time
	for {
		err := f()
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if fault.Classify(err) != fault.Transient {
			return err
		}
		if time.Since(lastLog) > 30*time.Second {
			s.Env.Log.Warn("waiting for DynamoDB", "owner", s.Owner, "while", what, "error", err.Error(), "retry_in", backoff.String())
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// waitForLease blocks while another streamer holds the lease: only one process may
// consume the slot, and a second one started at the same time waits as a standby. While
// DynamoDB is unreachable it waits too.
func (s *Streamer) waitForLease(ctx context.Context) error {
	ttl := s.Env.Config.LeaseTTL.Duration
	var lastLog time.Time
	for {
		var held *control.ErrLeaseHeld
		err := s.untilAvailable(ctx, "acquiring the lease", func() error {
			err := s.Env.Control.AcquireLease(ctx, s.Owner, ttl)
			if errors.As(err, &held) {
				return nil // not an outage: wait below, as a standby
			}
			return err
		})
		if err != nil || held == nil {
			return err
		}
		if time.Since(lastLog) > time.Minute {
			s.Env.Log.Warn("waiting as standby", "owner", s.Owner, "reason", held.Error())
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(ttl / 3):
		}
	}
}

func (s *Streamer) renewLease(ctx context.Context, cancel context.CancelCauseFunc) {
	ttl := s.Env.Config.LeaseTTL.Duration
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Each renewal gets what is left of the TTL: the SDK's retries must not keep
			// this process consuming after a successor may have taken over.
			rctx, rcancel := context.WithDeadline(ctx, renewed.Add(ttl))
			err := s.Env.Control.AcquireLease(rctx, s.Owner, ttl)
			rcancel()
			var held *control.ErrLeaseHeld
			if errors.As(err, &held) {
				cancel(fmt.Errorf("streamer lost its lease: %w", err))
				return
			}
			switch {
			case err == nil:
				renewed = time.Now()
			case fault.IsFatal(err):
				cancel(err)
				return
			case time.Since(renewed) > ttl:
				// A successor may own the lease by now: stop consuming, and take it again
				// once DynamoDB answers.
				lapsed := &leaseLapsed{fmt.Errorf("no renewal for %s: %w", ttl, err)}
				s.Env.Log.Warn("lease lapsed while DynamoDB was unreachable; stopping consumption", "owner", s.Owner, "error", lapsed.Error())
				cancel(lapsed)
				return
			default:
				s.Env.Log.Warn("lease renewal failed", "error", err.Error())
			}
		}
	}
}

// session is one replication connection, from START_REPLICATION to its end.
func (s *Streamer) session(ctx context.Context) error {
	cfg := s.Env.Config
	if err := pg.CheckServer(ctx, s.Env.PG); err != nil {
		return classify(err)
	}
	recorded, err := s.Env.Control.Tables(ctx)
	if err != nil {
		return err
	}
	known := func(source string) bool {
		return slices.ContainsFunc(recorded, func(t control.TableState) bool { return t.Source == source })
	}
	// A configured table that never existed is a misspelling; one the control table knows
	// was dropped since, and must not stop the other tables.
	if err := s.Env.CheckConfiguredTables(ctx, known); err != nil {
		return classify(err)
	}
	if err := s.ensurePublication(ctx); err != nil {
		return classify(err)
	}
	sources, err := pg.PublicationTables(ctx, s.Env.PG, cfg.Publication)
	if err != nil {
		return classify(err)
	}
	replicated, err := s.refuseUnlogged(ctx, sources, recorded)
	if err != nil {
		return classify(err)
	}
	if err := s.Env.MarkRemoved(ctx, recorded, replicated); err != nil {
		return err
	}
	if _, _, err := s.Env.EnsureSlot(ctx, false); err != nil {
		return classify(err)
	}
	conn, err := pg.ConnectReplication(ctx, s.Env.Source)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	err = pglogrepl.StartReplication(ctx, conn, cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + cfg.Publication + "'"},
	})
	if err != nil {
		return fmt.Errorf("START_REPLICATION on slot %s: %w", cfg.Slot, err)
	}
	slot, err := pg.ReadSlot(ctx, s.Env.PG, cfg.Slot)
	if err != nil {
		return err
	}
	s.tr.reset(slot.ConfirmedFlushLSN)
	s.Env.Log.Info("streaming", "slot", cfg.Slot, "from_lsn", slot.ConfirmedFlushLSN.String())
	if err := s.resumeSnapshots(ctx); err != nil {
		return err
	}
	if err := s.resumeTruncations(ctx); err != nil {
		return err
	}

	// Writes must be able to finish after a SIGTERM, so they get their own context.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	ap := newApplier(workCtx, cfg.StreamWriters, cfg.MaxInFlight, &s.tr, s.Env.Log)
	sess := &session{Streamer: s, conn: conn, ap: ap, work: workCtx, rels: map[uint32]*relation{}}

	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	heartbeatDone := make(chan struct{})
	go func() { defer close(heartbeatDone); sess.heartbeat(hbCtx) }()
	watcherDone := make(chan struct{})
	go func() { defer close(watcherDone); sess.watchCatalog(hbCtx) }()

	err = sess.receive(ctx)

	// Let queued writes finish (bounded: ECS allows 30 s after SIGTERM), then
	// acknowledge what is durable.
	drained := make(chan struct{})
	go func() { _ = ap.drain(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(20 * time.Second):
	}
	stopHeartbeat()
	<-heartbeatDone
	<-watcherDone
	stopWork()
	ap.close()
	final, cancelFinal := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelFinal()
	_ = sess.sendStatus(final) // acknowledge what the drain made durable
	sess.report(final, true)
	return err
}

// ensurePublication creates the publication when Tandem never ran here (the streamer is
// deployed before the first snapshot run). Once a slot was recorded, a missing
// publication is an error: changes made while it was gone are not in the stream.
func (s *Streamer) ensurePublication(ctx context.Context) error {
	if _, recorded, err := s.Env.Control.Slot(ctx); err != nil || recorded {
		return err
	}
	return s.Env.EnsurePublication(ctx)
}

// replicated filters the publication's tables down to the configured ones.
func (s *Streamer) replicated(sources []ident.Table) []string {
	var out []string
	for _, id := range sources {
		if _, ok := s.Env.Config.TableFor(id); ok {
			out = append(out, id.String())
		}
	}
	return out
}

// session is the state of one replication connection.
type session struct {
	*Streamer
	conn   *pgconn.PgConn
	connMu sync.Mutex
	ap     *applier
	rels   map[uint32]*relation
	// work is the writes' context: it outlives a SIGTERM long enough to drain.
	work context.Context

	txn       *txn
	commitLSN pglogrepl.LSN
	seq       uint32

	serverLSN    atomic.Uint64
	confirmed    pglogrepl.LSN
	lastRetained time.Time
	retained     uint64
	// stale is set when the catalog watcher finds this process's configuration older
	// than the last plan's: the session ends with it (a fatal error).
	stale atomic.Pointer[error]
}

func (s *session) receive(ctx context.Context) error {
	for {
		if err := s.ap.failed(); err != nil {
			return err
		}
		if err := s.stale.Load(); err != nil {
			return *err
		}
		s.connMu.Lock()
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		raw, err := s.conn.ReceiveMessage(rctx)
		cancel()
		s.connMu.Unlock()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			return fmt.Errorf("receiving from PostgreSQL: %w", err)
		}
		switch msg := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication error from PostgreSQL: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			if err := s.copyData(ctx, msg.Data); err != nil {
				return err
			}
		}
	}
}

func (s *session) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return errors.New("replication stream: empty CopyData message")
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return err
		}
		s.noteServerLSN(pkm.ServerWALEnd)
		s.tr.idle(pkm.ServerWALEnd)
		if pkm.ReplyRequested {
			return s.sendStatus(ctx)
		}
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return err
		}
		s.noteServerLSN(xld.ServerWALEnd)
		m, err := parseWAL(xld.WALData)
		if err != nil {
			return err
		}
		return s.message(ctx, m)
	}
	return nil
}

func (s *session) noteServerLSN(lsn pglogrepl.LSN) {
	if uint64(lsn) > s.serverLSN.Load() {
		s.serverLSN.Store(uint64(lsn))
	}
}

// heartbeat acknowledges durable positions and publishes the checkpoint while the
// receive loop may be blocked (a full queue, a TRUNCATE barrier), so PostgreSQL never
// times the connection out.
func (s *session) heartbeat(ctx context.Context) {
	every(ctx, s.Env.Config.StatusInterval.Duration, func() {
		if err := s.sendStatus(ctx); err != nil && ctx.Err() == nil {
			s.Env.Log.Warn("standby status update failed", "error", err.Error())
		}
		s.report(ctx, false)
	})
}

// every runs f every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// sendStatus reports the durable position as written, flushed and applied: PostgreSQL
// may then recycle WAL before it, and nothing after it.
func (s *session) sendStatus(ctx context.Context) error {
	applied := s.tr.appliedLSN()
	s.connMu.Lock()
	defer s.connMu.Unlock()
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: applied, WALFlushPosition: applied, WALApplyPosition: applied,
	})
	if err == nil {
		s.confirmed = applied
	}
	return err
}
