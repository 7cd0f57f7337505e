// Package statusview renders Tandem's status (pipeline.StatusOutput) for people: one
// line per table with a progress bar, rate and time left, what went wrong and why, the
// streamer and the state machine's latest execution. It also decides what counts as a
// problem for the tandem command's exit code, and measures rates between the reads of
// `tandem status --watch`.
package statusview

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"tandem/shared/control"
	"tandem/shared/human"
	"tandem/shared/pipeline"
)

// barWidth is the progress bar's width inside its brackets.
const barWidth = 20

// Text writes out for people. Unknown values (no row estimate, no rate yet) read
// "unknown", never a sentinel number.
func Text(w io.Writer, out pipeline.StatusOutput) {
	now := time.Now()
	if at, err := time.Parse(time.RFC3339, out.CheckedAt); err == nil {
		now = at
	}
	fmt.Fprintf(w, "Tandem status at %s, control table %s\n\n", now.UTC().Format("2006-01-02 15:04:05 UTC"), out.ControlTable)
	tables(w, out)
	problems(w, out)
	notes(w, out)
	streamer(w, out.Streamer, now)
	if out.Execution != nil {
		fmt.Fprintln(w)
		execution(w, *out.Execution, now)
	}
}

// notes says why a copied table is not consistent yet when nothing is wrong with it.
func notes(w io.Writer, out pipeline.StatusOutput) {
	var lines []string
	for _, t := range out.Tables {
		switch {
		case t.Consistent || t.Error != "" || t.Degraded != "":
		case t.State == control.Truncating:
			lines = append(lines, fmt.Sprintf("  %s: the items a TRUNCATE left are being removed; consistent once that is done", t.Table))
		case t.State == control.Done:
			lines = append(lines, fmt.Sprintf("  %s is copied; consistent once the streamer has applied past %s (it is at %s)",
				t.Table, t.ConsistentLSN, out.Streamer.AppliedLSN))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "Waiting")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
}

// NothingUp writes why there is no status to show (msg: a NothingUpError's), and the
// state machine's latest execution when it was read: a plan that failed before it
// created the control table is what the user needs to see.
func NothingUp(w io.Writer, out pipeline.StatusOutput, msg string) {
	fmt.Fprintln(w, msg)
	if out.Execution != nil {
		fmt.Fprintln(w)
		execution(w, *out.Execution, time.Now())
	}
}

func tables(w io.Writer, out pipeline.StatusOutput) {
	if len(out.Tables) == 0 {
		fmt.Fprintln(w, "No tables planned yet (the plan has not run, or it failed: see the state machine below).")
		fmt.Fprintln(w)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tSTATE\tPROGRESS\tROWS\tRATE\tLEFT\tRANGES\tCONSISTENT\tDEAD LETTERS")
	for _, t := range out.Tables {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%d\n", t.Table, t.State, progress(t), rows(t), rate(t), left(t),
			t.RangesDone, t.Ranges, yesNo(t.Consistent), t.DeadLetters)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
}

// progress is "[#######-------------]  35%", or the bar saying the estimate is unknown.
func progress(t pipeline.TableStatus) string {
	switch {
	case t.State == control.Failed || t.State == control.Removed:
		return "-"
	case t.Percent == nil:
		return "[" + center("estimate unknown", barWidth) + "]     "
	}
	filled := int(*t.Percent / 100 * barWidth)
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("#", filled), strings.Repeat("-", barWidth-filled), *t.Percent)
}

func center(s string, width int) string {
	pad := max(0, width-len(s))
	return strings.Repeat(" ", pad/2) + s + strings.Repeat(" ", pad-pad/2)
}

func rows(t pipeline.TableStatus) string {
	switch {
	case t.State == control.Done || t.State == control.Truncating:
		return human.Count(t.RowsCopied)
	case t.RowsEstimate == nil:
		return human.Count(t.RowsCopied) + " of unknown"
	}
	return human.Count(t.RowsCopied) + " of ~" + human.Count(*t.RowsEstimate)
}

func rate(t pipeline.TableStatus) string {
	if t.RowsPerSecond == nil {
		return "-"
	}
	return human.Rate(*t.RowsPerSecond) + "/s"
}

func left(t pipeline.TableStatus) string {
	switch t.State {
	case control.Running, control.Pending:
	default:
		return "-"
	}
	if t.SecondsLeft == nil {
		return "unknown"
	}
	return human.Duration(time.Duration(*t.SecondsLeft * float64(time.Second)))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// problems lists, per table, what is wrong and what to do, then the notes.
func problems(w io.Writer, out pipeline.StatusOutput) {
	var lines []string
	for _, f := range out.Failures {
		lines = append(lines, fmt.Sprintf("  %s failed: %s", f.Table, f.Error))
	}
	failed := map[string]bool{}
	for _, f := range out.Failures {
		failed[f.Table] = true
	}
	for _, t := range out.Tables {
		if t.Error != "" && !failed[t.Table] {
			lines = append(lines, fmt.Sprintf("  %s: %s", t.Table, t.Error))
		}
		if t.Degraded != "" {
			lines = append(lines, fmt.Sprintf("  %s degraded (not consistent until snapshotted again): %s", t.Table, t.Degraded))
		}
		if t.DeadLetters > 0 {
			lines = append(lines, fmt.Sprintf("  %s has %d dead %s: tandem deadletters %s", t.Table, t.DeadLetters,
				plural(t.DeadLetters, "letter", "letters"), t.Table))
		}
		if len(t.PreviousTargets) > 0 {
			lines = append(lines, fmt.Sprintf("  %s: previous targets left as they were, no longer updated: %s", t.Table,
				strings.Join(t.PreviousTargets, ", ")))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "Problems")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
}

func streamer(w io.Writer, s pipeline.StreamerStatus, now time.Time) {
	fmt.Fprintf(w, "Streamer: %s", s.State)
	var about []string
	if s.Why != "" {
		about = append(about, s.Why)
	}
	if s.Owner != "" {
		about = append(about, "owner "+s.Owner)
	}
	if s.LeaseOwner != "" && s.LeaseOwner != s.Owner {
		about = append(about, "lease held by "+s.LeaseOwner)
	}
	if s.CheckpointAge != nil {
		about = append(about, "checkpoint "+human.Duration(time.Duration(*s.CheckpointAge*float64(time.Second)).Round(time.Second))+" ago")
	}
	if s.SlotError == "" && !strings.Contains(s.Why, "slot "+s.Slot+" ") {
		active := "not consumed"
		if s.SlotActive {
			active = "active"
		}
		about = append(about, fmt.Sprintf("slot %s %s", s.Slot, active))
	}
	if len(about) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(about, "; "))
	}
	fmt.Fprintln(w)
	if s.CheckpointAge != nil {
		fmt.Fprintf(w, "  applied %s, confirmed %s, lag %s / %s, retained WAL %s, %s changes/s (%s applied)\n",
			s.AppliedLSN, s.ConfirmedLSN, human.Bytes(s.LagBytes), human.Duration(time.Duration(s.LagSeconds*float64(time.Second))),
			human.Bytes(s.RetainedWAL), human.Rate(s.ChangesPerSec), human.Count(s.Changes))
	} else if s.SlotError == "" {
		fmt.Fprintf(w, "  retained WAL %s\n", human.Bytes(s.RetainedWAL))
	}
}

func execution(w io.Writer, x pipeline.ExecutionStatus, now time.Time) {
	fmt.Fprint(w, "State machine: ")
	switch {
	case x.ReadError != "":
		fmt.Fprintf(w, "cannot read its executions: %s\n", x.ReadError)
		return
	case x.Status == pipeline.ExecutionNone:
		fmt.Fprintf(w, "no execution yet (%s)\n", x.StateMachineARN)
		return
	}
	fmt.Fprintf(w, "latest execution %s %s", x.Name, x.Status)
	if x.State != "" {
		if x.Failed() {
			fmt.Fprintf(w, " in %s", x.State)
		} else {
			fmt.Fprintf(w, ", in %s", x.State)
		}
	}
	if at, err := time.Parse(time.RFC3339, x.StartedAt); err == nil {
		fmt.Fprintf(w, " (started %s ago", human.Duration(now.Sub(at).Round(time.Second)))
		if stop, err := time.Parse(time.RFC3339, x.StoppedAt); err == nil {
			fmt.Fprintf(w, ", ran %s", human.Duration(stop.Sub(at)))
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	if x.Error != "" || x.Cause != "" {
		msg := x.Error
		if x.Cause != "" {
			msg += ": " + x.Cause
		}
		fmt.Fprintf(w, "  %s\n", msg)
	}
}

// Problems lists what makes `tandem status` exit 1 (exitProblem): a table whose snapshot
// failed, a table degraded by dead letters (the state machine fails for both), and a
// failed latest execution of the state machine (a refused plan records no table). A
// streamer that is down is shown but is not one: it may be stopped on purpose.
func Problems(out pipeline.StatusOutput) []string {
	var p []string
	for _, f := range out.Failures {
		p = append(p, fmt.Sprintf("table %s failed: %s", f.Table, f.Error))
	}
	for _, name := range out.DegradedTables {
		p = append(p, fmt.Sprintf("table %s is degraded by dead letters", name))
	}
	if x := out.Execution; x != nil && x.Failed() {
		p = append(p, fmt.Sprintf("the latest execution %s %s: %s: %s", x.Name, x.Status, x.Error, x.Cause))
	}
	return p
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
