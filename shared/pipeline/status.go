package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"tandem/shared/control"
	"tandem/shared/ident"
	"tandem/shared/pg"
)

// StatusOutput is what an operator sees (README "Reading its status"): the status Lambda's output, the
// state machine's report and, with the state machine's latest execution added, what
// `tandem status --json` prints. Field names are stable for scripts; a value that is
// not known is null (never -1).
type StatusOutput struct {
	// CheckedAt is when this status was read (RFC 3339, UTC).
	CheckedAt string `json:"checked_at"`
	// ControlTable is the DynamoDB table it was read from.
	ControlTable string         `json:"control_table"`
	Streamer     StreamerStatus `json:"streamer"`
	// Tables are every planned table, by name.
	Tables []TableStatus `json:"tables"`
	// FailedTables lists the tables whose snapshot failed (of this run's, when the run's
	// results are given): the state machine ends failed when there is any.
	FailedTables []string `json:"failed_tables"`
	// Failures says why each of FailedTables failed.
	Failures []Failure `json:"failures"`
	// DegradedTables lists the tables whose target lacks rows or changes that were
	// dead-lettered (of this run's tables, when the run's results are given): not
	// consistent until snapshotted again.
	DegradedTables []string `json:"degraded_tables"`
	// DeadLetters counts the changes and rows Tandem could not apply (the control table's
	// "deadletter#" items), from the stream and the snapshots.
	DeadLetters int64 `json:"dead_letters"`
	// Summary is one line for people: which tables failed and why, or how far the tables
	// are. The state machine's failed execution carries it as its cause.
	Summary string `json:"summary"`
	// Execution is the state machine's latest execution, when one is configured and the
	// caller read it (the tandem command does; the status Lambda does not).
	Execution *ExecutionStatus `json:"execution,omitempty"`
}

// Failure is one failed table and why it failed.
type Failure struct {
	Table string `json:"table"`
	Error string `json:"error"`
}

// StreamerStatus is the streamer's last checkpoint and lease, plus the slot as
// PostgreSQL sees it.
type StreamerStatus struct {
	// State is StreamerUp, StreamerDown or StreamerNeverStarted; Why says why it is not up.
	State string `json:"state"`
	Up    bool   `json:"up"`
	Why   string `json:"why,omitempty"`
	// Owner is the streamer that wrote the last checkpoint; LeaseOwner holds the lease
	// until LeaseExpiresAt (a standby waits for it).
	Owner          string `json:"owner"`
	LeaseOwner     string `json:"lease_owner,omitempty"`
	LeaseExpiresAt string `json:"lease_expires_at,omitempty"`
	// AppliedLSN: every change committed before it is in DynamoDB. ConfirmedLSN: what
	// PostgreSQL was last told it may discard. PostgreSQL's form: 0/1D84268.
	AppliedLSN    string  `json:"applied_lsn"`
	ConfirmedLSN  string  `json:"confirmed_lsn"`
	LagBytes      uint64  `json:"lag_bytes"`
	LagSeconds    float64 `json:"lag_seconds"`
	RetainedWAL   uint64  `json:"retained_wal_bytes"`
	ChangesPerSec float64 `json:"changes_per_second"`
	Changes       int64   `json:"changes_applied"`
	// UpdatedAt is when the last checkpoint was written, CheckpointAge how long ago
	// (null: never).
	UpdatedAt     string   `json:"updated_at"`
	CheckpointAge *float64 `json:"checkpoint_age_seconds"`
	// Slot is the replication slot; SlotActive reports whether a process is consuming it
	// right now; SlotError says why it could not be read (PostgreSQL unreachable, the slot
	// missing or invalidated).
	Slot       string `json:"slot"`
	SlotActive bool   `json:"slot_active"`
	SlotError  string `json:"slot_error,omitempty"`
}

// Streamer states (StreamerStatus.State).
const (
	StreamerUp           = "up"
	StreamerDown         = "down"
	StreamerNeverStarted = "never started"
)

// TableStatus is one table's snapshot progress and consistency.
type TableStatus struct {
	Table  string `json:"table"`
	Target string `json:"target"`
	State  string `json:"state"`
	// RowsCopied against RowsEstimate (PostgreSQL's statistics; null when it has none,
	// as for a table never analysed). Percent, RowsPerSecond and SecondsLeft are null
	// when they cannot be known (no estimate, not started, no progress).
	RowsCopied    int64    `json:"rows_copied"`
	RowsEstimate  *int64   `json:"rows_estimate"`
	Percent       *float64 `json:"percent"`
	RowsPerSecond *float64 `json:"rows_per_second"`
	SecondsLeft   *float64 `json:"seconds_left"`
	Chunks        int64    `json:"chunks"`
	// Ranges is how many key ranges the snapshot is split into (0 before it starts),
	// RangesDone how many of them are copied.
	Ranges     int `json:"ranges"`
	RangesDone int `json:"ranges_done"`
	// StartedAt and FinishedAt bound the snapshot; LastProgressAt is its last stored chunk.
	StartedAt      string `json:"started_at,omitempty"`
	FinishedAt     string `json:"finished_at,omitempty"`
	LastProgressAt string `json:"last_progress_at,omitempty"`
	ConsistentLSN  string `json:"consistent_lsn,omitempty"`
	Consistent     bool   `json:"consistent"`
	Error          string `json:"error,omitempty"`
	// Degraded says why the target lacks a change (a dead letter): not consistent until
	// the table is snapshotted again.
	Degraded    string `json:"degraded,omitempty"`
	DeadLetters int    `json:"dead_letters"`
	// PreviousTargets are targets the table was replicated into before its target changed
	// in the configuration: left as they were, no longer updated.
	PreviousTargets []string `json:"previous_targets,omitempty"`
}

// StatusInput optionally carries a state machine run's per-table results (the Map's
// output, one per range): failed_tables then lists that run's failures rather than
// every failed table.
type StatusInput struct {
	Results []RunResult `json:"results,omitempty"`
}

// RunResult is one item of the Map's output: a range's end, or its table's failure
// (Error; and Failure, what the state machine caught, when the failure could not be
// recorded in the control table).
type RunResult struct {
	Table   string      `json:"table"`
	State   string      `json:"state"`
	Error   string      `json:"error,omitempty"`
	Failure *StateError `json:"failure,omitempty"`
}

// pgTimeout bounds each PostgreSQL read of the status: an unreachable database makes
// the status say so, not hang.
const pgTimeout = 5 * time.Second

// Status reads the control table and the slot.
func (e *Env) Status(ctx context.Context, in StatusInput) (StatusOutput, error) {
	now := time.Now()
	out := StatusOutput{CheckedAt: now.UTC().Format(time.RFC3339), ControlTable: e.Config.ControlTable,
		Tables: []TableStatus{}, FailedTables: []string{}, Failures: []Failure{}, DegradedTables: []string{}}
	inRun := map[string]bool{}
	for _, r := range in.Results {
		inRun[r.Table] = true
	}
	cp, err := e.Control.Checkpoint(ctx)
	if err != nil {
		return out, err
	}
	letters, err := e.Control.DeadLetters(ctx, "")
	if err != nil {
		return out, err
	}
	perTable := map[string]int{}
	for _, d := range letters {
		perTable[d.Table]++
	}
	out.DeadLetters = int64(len(letters))
	streamer, pgUp := e.streamerStatus(ctx, cp, now)
	out.Streamer = streamer
	tables, err := e.Control.Tables(ctx)
	if err != nil {
		return out, err
	}
	slices.SortFunc(tables, func(a, b control.TableState) int { return strings.Compare(a.Source, b.Source) })
	failedIn := map[string]string{}
	for _, t := range tables {
		ts := TableStatus{Table: t.Source, Target: t.Target, State: t.State, RowsCopied: t.RowsCopied,
			Chunks: t.Chunks, Consistent: t.IsConsistent(cp.AppliedLSN), Error: t.Error, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt,
			Degraded: t.Degraded, DeadLetters: perTable[t.Source], PreviousTargets: t.RetiredTargets}
		if t.RowsEstimate >= 0 {
			ts.RowsEstimate = &t.RowsEstimate
		}
		if t.State == control.Done {
			ts.ConsistentLSN = pglogrepl.LSN(t.ConsistentLSN).String()
		}
		if t.TruncatingLSN > 0 && t.State == control.Done {
			ts.State = control.Truncating
		}
		if t.SplitEpoch == t.Epoch {
			ts.Ranges = len(t.Ranges)
			if t.State == control.Done {
				ts.RangesDone = ts.Ranges
			} else if ranges, err := e.Control.Ranges(ctx, t); err == nil {
				ts.RowsCopied, ts.Chunks, ts.RangesDone = control.RangeProgress(ranges)
				ts.LastProgressAt = lastProgress(ranges)
			}
		}
		ts.progress(t, now)
		e.reconciled(ctx, t, &ts, pgUp)
		out.Tables = append(out.Tables, ts)
		if t.State == control.Failed {
			failedIn[t.Source] = t.Error
			if in.Results == nil {
				out.FailedTables = append(out.FailedTables, t.Source)
				out.Failures = append(out.Failures, Failure{Table: t.Source, Error: t.Error})
			}
		}
		if t.Degraded != "" && (in.Results == nil || inRun[t.Source]) {
			out.DegradedTables = append(out.DegradedTables, t.Source)
		}
	}
	for _, r := range in.Results {
		if r.State != control.Failed || slices.Contains(out.FailedTables, r.Table) {
			continue
		}
		reason, ok := failedIn[r.Table]
		if !ok || reason == "" {
			// Recording the failure in the control table failed too: the run's result is all
			// there is.
			reason = r.Error
			if f := r.Failure; f != nil {
				reason = f.Error + ": " + causeMessage(f.Cause)
			}
		}
		out.FailedTables = append(out.FailedTables, r.Table)
		out.Failures = append(out.Failures, Failure{Table: r.Table, Error: reason})
	}
	out.Summary = summary(out)
	return out, nil
}

// progress fills the table's percent, rate and time left from its counters and times:
// the rate is the rows copied over the time since the snapshot started (until it
// finished, once done).
func (ts *TableStatus) progress(t control.TableState, now time.Time) {
	done := t.State == control.Done
	est := Estimate{Copied: ts.RowsCopied, Total: t.RowsEstimate, Done: done}
	if t.State == control.Running || done {
		if began, err := time.Parse(time.RFC3339Nano, t.StartedAt); err == nil {
			end := now
			if finished, err := time.Parse(time.RFC3339Nano, t.FinishedAt); done && err == nil {
				end = finished
			}
			if secs := end.Sub(began).Seconds(); secs > 0 {
				est.Rate = float64(ts.RowsCopied) / secs
				ts.RowsPerSecond = &est.Rate
			}
		}
	}
	ts.SetEstimate(est)
}

// SetEstimate sets the table's percent, rate and time left from est (the tandem command
// does so again with the rate it measured between two reads).
func (ts *TableStatus) SetEstimate(est Estimate) {
	ts.Percent, ts.SecondsLeft = nil, nil
	if ts.State == control.Failed || ts.State == control.Removed {
		return
	}
	if pct, ok := est.Percent(); ok {
		ts.Percent = &pct
	}
	if left, ok := est.Left(); ok {
		secs := left.Seconds()
		ts.SecondsLeft = &secs
	}
}

// Estimate is a snapshot's progress against its row estimate.
type Estimate struct {
	Copied int64
	// Total is the estimate; negative when unknown.
	Total int64
	// Rate is rows per second (0: unknown).
	Rate float64
	Done bool
}

// Percent is how much of the estimate is copied. Statistics are approximate, so a
// running snapshot that passed its estimate shows 99%, not more.
func (e Estimate) Percent() (float64, bool) {
	switch {
	case e.Done:
		return 100, true
	case e.Total <= 0:
		return 0, false
	}
	return min(99, 100*float64(e.Copied)/float64(e.Total)), true
}

// Left is the time the rest of the estimate takes at Rate; unknown without an estimate,
// a rate, or once the estimate is passed.
func (e Estimate) Left() (time.Duration, bool) {
	switch {
	case e.Done:
		return 0, true
	case e.Total < 0 || e.Rate <= 0 || e.Copied >= e.Total:
		return 0, false
	}
	return time.Duration(float64(e.Total-e.Copied) / e.Rate * float64(time.Second)), true
}

// lastProgress is the time of the latest chunk stored by any of the ranges.
func lastProgress(ranges []control.RangeState) string {
	var last time.Time
	for _, r := range ranges {
		if at, err := time.Parse(time.RFC3339Nano, r.UpdatedAt); err == nil && at.After(last) {
			last = at
		}
	}
	if last.IsZero() {
		return ""
	}
	return last.UTC().Format(time.RFC3339Nano)
}

// streamerStatus reads the checkpoint, the lease and the slot. The streamer is up when it
// consumes the slot and checkpoints; without PostgreSQL (pgUp false), when it holds its
// lease and checkpoints.
func (e *Env) streamerStatus(ctx context.Context, cp control.Checkpoint, now time.Time) (s StreamerStatus, pgUp bool) {
	s = StreamerStatus{
		Owner: cp.Owner, AppliedLSN: pglogrepl.LSN(cp.AppliedLSN).String(), ConfirmedLSN: pglogrepl.LSN(cp.ConfirmedLSN).String(),
		LagBytes: cp.LagBytes, LagSeconds: cp.LagSeconds, RetainedWAL: cp.RetainedBytes, ChangesPerSec: cp.ChangesPerSec,
		Changes: cp.Changes, UpdatedAt: cp.UpdatedAt, Slot: e.Config.Slot,
	}
	lease, leased, err := e.Control.ReadLease(ctx)
	if err == nil && leased {
		s.LeaseOwner, s.LeaseExpiresAt = lease.Owner, lease.ExpiresAt.UTC().Format(time.RFC3339)
	}
	var age time.Duration
	checkpointed := false
	if at, err := time.Parse(time.RFC3339Nano, cp.UpdatedAt); err == nil {
		age, checkpointed = max(0, now.Sub(at)), true
		secs := age.Seconds()
		s.CheckpointAge = &secs
	}
	pgUp = e.PG != nil
	if pgUp {
		pctx, cancel := context.WithTimeout(ctx, pgTimeout)
		slot, err := pg.ReadSlot(pctx, e.PG, e.Config.Slot)
		cancel()
		switch {
		case err == nil || slot.Name != "":
			s.SlotActive = slot.Active
			s.RetainedWAL = slot.RetainedBytes()
			// Behind the server's WAL end by what is not applied yet; before the first
			// checkpoint, by what the slot holds (it starts where the stream starts).
			if from := max(pglogrepl.LSN(cp.AppliedLSN), slot.ConfirmedFlushLSN); slot.CurrentLSN > from {
				s.LagBytes = uint64(slot.CurrentLSN - from)
			}
			if err != nil {
				s.SlotError = err.Error()
			}
		default:
			s.SlotError = err.Error()
			// A missing slot is an answer; anything else means PostgreSQL did not give one.
			pgUp = errors.Is(err, pg.ErrSlotMissing)
		}
	} else {
		s.SlotError = "PostgreSQL is not connected"
		if e.PGError != nil {
			s.SlotError += ": " + e.PGError.Error()
		}
	}
	if checkpointed && age > time.Minute {
		// A checkpoint this old means no streamer is running: its lag is growing.
		s.LagSeconds = max(s.LagSeconds, age.Seconds())
	}
	stale := max(30*time.Second, 10*e.Config.StatusInterval.Duration)
	switch {
	case !checkpointed:
		s.State, s.Why = StreamerNeverStarted, "no streamer has checkpointed into this control table"
		if lease.Held(now) {
			s.Why += fmt.Sprintf(" (%s holds the lease: starting, or waiting for the slot)", lease.Owner)
		}
	case age > stale:
		s.State, s.Why = StreamerDown, fmt.Sprintf("no checkpoint for %s", age.Round(time.Second))
	case pgUp && s.SlotError == "" && !s.SlotActive:
		s.State, s.Why = StreamerDown, fmt.Sprintf("slot %s is not being consumed", e.Config.Slot)
	case !pgUp && !lease.Held(now):
		s.State, s.Why = StreamerDown, "its lease has expired"
	default:
		s.State, s.Up = StreamerUp, true
	}
	if !s.Up && s.SlotError != "" {
		s.Why += "; " + s.SlotError
	}
	return s, pgUp
}

// summary is StatusOutput.Summary.
func summary(out StatusOutput) string {
	const maxLen = 4000 // a Step Functions cause holds 32 KB; people read far less
	var b strings.Builder
	switch {
	case len(out.Failures) > 0:
		fmt.Fprintf(&b, "%d %s failed:", len(out.Failures), plural(len(out.Failures), "table", "tables"))
		for i, f := range out.Failures {
			if i > 0 {
				b.WriteString(";")
			}
			fmt.Fprintf(&b, " %s: %s", f.Table, f.Error)
		}
	case len(out.DegradedTables) > 0:
		fmt.Fprintf(&b, "%d %s degraded by dead letters (not consistent until snapshotted again):", len(out.DegradedTables),
			plural(len(out.DegradedTables), "table", "tables"))
		for i, name := range out.DegradedTables {
			if i > 0 {
				b.WriteString(";")
			}
			for _, t := range out.Tables {
				if t.Table == name {
					fmt.Fprintf(&b, " %s: %s", name, t.Degraded)
				}
			}
		}
	default:
		consistent, copying := 0, 0
		for _, t := range out.Tables {
			if t.Consistent {
				consistent++
			}
			if t.State == control.Running || t.State == control.Pending {
				copying++
			}
		}
		fmt.Fprintf(&b, "%d of %d %s consistent", consistent, len(out.Tables), plural(len(out.Tables), "table", "tables"))
		if copying > 0 {
			fmt.Fprintf(&b, ", %d snapshotting", copying)
		}
	}
	s := b.String()
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// reconciled makes a table's status reflect a configuration that plan has not reconciled
// yet: a table no longer configured is removed, and a changed target or key is not
// consistent, since what the configuration names was not filled (README "Bad input and faults"). A changed
// table definition is looked for only when PostgreSQL answers (pgUp).
func (e *Env) reconciled(ctx context.Context, st control.TableState, ts *TableStatus, pgUp bool) {
	if st.State == control.Removed {
		return
	}
	id, err := ident.Parse(st.Source)
	if err != nil {
		return
	}
	tc, ok := e.Config.TableFor(id)
	if !ok {
		ts.State, ts.Consistent = control.Removed, false
		ts.Error = "removed from the configured tables: its changes are no longer applied"
		ts.SetEstimate(Estimate{Total: -1})
		return
	}
	if tc.Target != st.Target {
		ts.Consistent = false
		ts.Error = fmt.Sprintf("the configuration replicates it into %s, which is not filled yet: run plan", tc.Target)
		return
	}
	if !pgUp {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	if t, err := e.DescribeTable(pctx, id); err == nil {
		if _, err := Drift(st, t); err != nil {
			ts.Consistent = false
			ts.Error = err.Error()
		}
	}
}
