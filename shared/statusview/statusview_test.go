package statusview

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"tandem/shared/pipeline"
)

func ptr[T any](v T) *T { return &v }

// TestExecutionText: the latest execution as the status shows it, running, failed at
// plan, failed with tables, unreadable.
func TestExecutionText(t *testing.T) {
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		x    pipeline.ExecutionStatus
		want string
	}{
		{pipeline.ExecutionStatus{Name: "snapshot-2", Status: "RUNNING", State: "Ranges", StartedAt: "2024-05-01T09:58:30Z"},
			"State machine: latest execution snapshot-2 RUNNING, in Ranges (started 1m30s ago)\n"},
		{pipeline.ExecutionStatus{Name: "snapshot-1", Status: "FAILED", State: "Plan", StartedAt: "2024-05-01T09:00:00Z", StoppedAt: "2024-05-01T09:00:03Z",
			Error: "PermanentError", Cause: "table public.nope does not exist"},
			"State machine: latest execution snapshot-1 FAILED in Plan (started 1h00m ago, ran 3s)\n  PermanentError: table public.nope does not exist\n"},
		{pipeline.ExecutionStatus{Name: "run", Status: "FAILED", State: "Tables failed", Error: "TablesFailed", Cause: "1 table failed: public.a: boom"},
			"State machine: latest execution run FAILED in Tables failed\n  TablesFailed: 1 table failed: public.a: boom\n"},
		{pipeline.ExecutionStatus{StateMachineARN: "arn:sm", Status: pipeline.ExecutionNone}, "State machine: no execution yet (arn:sm)\n"},
		{pipeline.ExecutionStatus{ReadError: "AccessDenied"}, "State machine: cannot read its executions: AccessDenied\n"},
	} {
		var b bytes.Buffer
		execution(&b, c.x, now)
		if b.String() != c.want {
			t.Errorf("got %q\nwant %q", b.String(), c.want)
		}
	}
}

// TestProblems: failed and degraded tables and a failed latest execution count; a
// running execution or a down streamer do not.
func TestProblems(t *testing.T) {
	out := pipeline.StatusOutput{Streamer: pipeline.StreamerStatus{State: pipeline.StreamerDown},
		Execution: &pipeline.ExecutionStatus{Status: "RUNNING"}}
	if p := Problems(out); len(p) != 0 {
		t.Errorf("problems %q, want none", p)
	}
	out.Failures = []pipeline.Failure{{Table: "public.a", Error: "boom"}}
	out.DegradedTables = []string{"public.b"}
	out.Execution = &pipeline.ExecutionStatus{Name: "x", Status: "TIMED_OUT"}
	if p := Problems(out); len(p) != 3 || p[0] != "table public.a failed: boom" {
		t.Errorf("problems %q, want three", p)
	}
}

// TestRates: --watch measures the rate between reads, and a table snapshotted again
// from the start begins a new measure.
func TestRates(t *testing.T) {
	r := NewRates()
	now := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	read := func(after time.Duration, rows int64) pipeline.TableStatus {
		now = now.Add(after)
		out := pipeline.StatusOutput{Tables: []pipeline.TableStatus{{Table: "public.t", State: "running", RowsCopied: rows,
			RowsEstimate: ptr(int64(1000)), RowsPerSecond: ptr(1.0)}}}
		r.Apply(&out, now)
		return out.Tables[0]
	}
	read(0, 100)
	if ts := read(time.Second, 150); *ts.RowsPerSecond != 1 {
		t.Errorf("after 1s: rate %v, want the read's own until 2s are measured", *ts.RowsPerSecond)
	}
	ts := read(3*time.Second, 500)
	if *ts.RowsPerSecond != 100 || ts.SecondsLeft == nil || *ts.SecondsLeft != 5 || *ts.Percent != 50 {
		t.Errorf("after 4s: rate %v, left %v, percent %v; want 100/s, 5s, 50%%", *ts.RowsPerSecond, ts.SecondsLeft, *ts.Percent)
	}
	if ts := read(3*time.Second, 10); *ts.RowsPerSecond != 1 {
		t.Errorf("after a restart: rate %v, want a new measure", *ts.RowsPerSecond)
	}
}

// TestTableText: the bar, percent, "unknown" for what is not known, yes/no.
func TestTableText(t *testing.T) {
	out := pipeline.StatusOutput{CheckedAt: "2024-05-01T10:00:00Z", ControlTable: "ctl", Tables: []pipeline.TableStatus{
		{Table: "public.a", State: "running", RowsCopied: 1234, RowsEstimate: ptr(int64(4936)), Percent: ptr(25.0),
			RowsPerSecond: ptr(123.4), SecondsLeft: ptr(30.0), Ranges: 4, RangesDone: 1},
		{Table: "public.b", State: "pending", Ranges: 0},
		{Table: "public.c", State: "done", RowsCopied: 10, Percent: ptr(100.0), Ranges: 1, RangesDone: 1, Consistent: true},
	}, Streamer: pipeline.StreamerStatus{State: "up", Up: true, Slot: "tandem", SlotActive: true, CheckpointAge: ptr(1.2),
		AppliedLSN: "0/1D84268", ConfirmedLSN: "0/1D84200", LagBytes: 2048, LagSeconds: 0.25, RetainedWAL: 16 << 20, ChangesPerSec: 12}}
	var b bytes.Buffer
	Text(&b, out)
	for _, want := range []string{
		"public.a  running  [#####---------------]  25%  1,234 of ~4,936  123/s  30s      1/4",
		"public.b  pending  [  estimate unknown  ]       0 of unknown     -      unknown  0/0     no",
		"public.c  done     [####################] 100%  10               -      -        1/1     yes",
		"Streamer: up (checkpoint 1s ago; slot tandem active)",
		"applied 0/1D84268, confirmed 0/1D84200, lag 2.0 KiB / 250ms, retained WAL 16.0 MiB, 12 changes/s (0 applied)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, b.String())
		}
	}
}
