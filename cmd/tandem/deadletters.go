package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"tandem/shared/control"
	"tandem/shared/pipeline"
)

const deadLettersSummary = `Lists the dead letters: changes and rows Tandem could not apply because DynamoDB can
never accept them (an item over 400 KB, a key over DynamoDB's limits, an unmappable
value). Each is shown with its table, key, LSN, source (snapshot or stream), reason and
time; the stream and the snapshot went on without it, and its table is marked degraded
(not consistent). Without TABLE, every table's.

--retry re-applies each dead letter's row as it is now, typically after the row was fixed
in PostgreSQL: the row is read again by key under a share lock (FOR SHARE, waiting at
most 5 s for a transaction changing it), the WAL position is read after the lock, and the
row is written as a stream change at that position while the lock is held. Every change
to the row before that position is in what was read; every later one commits after the
lock is released, at a later position, so the stream's own writes still win over the
retry, and the retry replaces the stale item an earlier change left (a snapshot-style
write could not). A row that no longer exists is not written: its DELETE is the
stream's to apply. A letter that succeeds is removed; one that fails again stays, with
the reason. A letter naming no row (a whole table skipped, a DELETE without a key)
cannot be retried: re-snapshot its table. Once a table has no dead letter left, its
degraded mark is cleared (unless a new dead letter marked it meanwhile), and the
streamer marks it consistent again by the usual rule.

--clear removes the dead letters without applying them (asks first, or --yes). Their
tables stay degraded: DynamoDB still lacks those changes until the table is
re-snapshotted (tandem resnapshot TABLE), which also removes its dead letters.

Exit status: 0 no dead letter (listing), every retry succeeded, or the letters were
cleared; 1 dead letters exist (listing), a retry failed, or clearing was not confirmed;
3 it could not run.`

// deadLetterJSON is one dead letter in --json.
type deadLetterJSON struct {
	Table   string `json:"table"`
	Key     string `json:"key"`
	Column  string `json:"column,omitempty"`
	LSN     string `json:"lsn"`
	Source  string `json:"source"`
	Reason  string `json:"reason"`
	At      string `json:"at"`
	Outcome string `json:"outcome,omitempty"`
	Error   string `json:"error,omitempty"`
}

func letterJSON(d control.DeadLetter) deadLetterJSON {
	return deadLetterJSON{Table: d.Table, Key: d.Key, Column: d.Column, LSN: lsnText(d.LSN), Source: d.Source, Reason: d.Reason, At: d.At}
}

func runDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("deadletters", "[TABLE]", deadLettersSummary, stderr)
	retry := fs.Bool("retry", false, "re-apply each dead letter's current row and remove those that succeed")
	clear := fs.Bool("clear", false, "remove the dead letters without applying them")
	yes := fs.Bool("yes", false, "with --clear: do not ask")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	positional, code, done := opsParse(fs, config, args, stdout)
	if done {
		return code
	}
	tables, err := opsTables(positional)
	if err == nil && len(tables) > 1 {
		err = fmt.Errorf("name at most one table")
	}
	if err == nil && *retry && *clear {
		err = fmt.Errorf("--retry and --clear exclude each other")
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem deadletters: %v (see tandem deadletters --help)\n", err)
		return exitUsage
	}
	table := ""
	if len(tables) == 1 {
		table = tables[0]
	}
	env, ok := opsEnv(ctx, "deadletters", stderr)
	if !ok {
		return exitCantRun
	}
	defer env.PG.Close()
	switch {
	case *retry:
		return retryDeadLetters(ctx, env, table, *asJSON, stdout, stderr)
	case *clear:
		return clearDeadLetters(ctx, env, table, *yes, *asJSON, stdout, stderr)
	}
	letters, err := listDeadLetters(ctx, env, table)
	if err != nil {
		fmt.Fprintf(stderr, "tandem deadletters: %s\n", opsRedact(err.Error()))
		return exitCantRun
	}
	if *asJSON {
		out := make([]deadLetterJSON, len(letters))
		for i, d := range letters {
			out[i] = letterJSON(d)
		}
		opsJSON(stdout, map[string]any{"dead_letters": out})
	} else {
		printDeadLetters(stdout, letters)
	}
	if len(letters) > 0 {
		return exitProblem
	}
	return exitOK
}

// listDeadLetters reads the dead letters in table, key and LSN order.
func listDeadLetters(ctx context.Context, env *pipeline.Env, table string) ([]control.DeadLetter, error) {
	letters, err := env.Control.DeadLetters(ctx, table)
	sort.Slice(letters, func(i, j int) bool {
		a, b := letters[i], letters[j]
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		if a.LSN != b.LSN {
			return a.LSN < b.LSN
		}
		return a.Key < b.Key
	})
	return letters, err
}

func printDeadLetters(w io.Writer, letters []control.DeadLetter) {
	if len(letters) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tKEY\tLSN\tSOURCE\tTIME\tREASON")
	per := map[string]int{}
	var order []string
	for _, d := range letters {
		if per[d.Table] == 0 {
			order = append(order, d.Table)
		}
		per[d.Table]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Table, opsClip(d.Key, 60), lsnText(d.LSN), d.Source, d.At, opsOneLine(d.Reason))
	}
	tw.Flush()
	parts := make([]string, len(order))
	for i, t := range order {
		parts[i] = fmt.Sprintf("%s: %d", t, per[t])
	}
	fmt.Fprintf(w, "%d dead letters (%s); tandem deadletters --retry re-applies them once the rows are fixed\n", len(letters), strings.Join(parts, ", "))
}

func retryDeadLetters(ctx context.Context, env *pipeline.Env, table string, asJSON bool, stdout, stderr io.Writer) int {
	results, cleared, err := env.RetryDeadLetters(ctx, table)
	if err != nil && results == nil {
		fmt.Fprintf(stderr, "tandem deadletters: %s\n", opsRedact(err.Error()))
		return exitCantRun
	}
	code := exitOK
	out := make([]deadLetterJSON, 0, len(results))
	for _, r := range results {
		j := letterJSON(r.Letter)
		j.Outcome = r.Outcome
		if r.Err != nil {
			j.Outcome, j.Error = "failed", opsRedact(r.Err.Error())
			code = exitProblem
		}
		out = append(out, j)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem deadletters: %s\n", opsRedact(err.Error()))
		code = exitCantRun
	}
	if asJSON {
		opsJSON(stdout, map[string]any{"retried": out, "degraded_cleared": append([]string{}, cleared...)})
		return code
	}
	if len(results) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
	}
	for _, j := range out {
		what := map[string]string{
			pipeline.RetryWritten:    "written (the row as it is now), dead letter removed",
			pipeline.RetrySuperseded: "already superseded by a later streamed change, dead letter removed",
			pipeline.RetryGone:       "the row no longer exists (the stream applies its DELETE), dead letter removed",
		}[j.Outcome]
		if j.Error != "" {
			what = "failed again, kept: " + opsOneLine(j.Error)
		}
		fmt.Fprintf(stdout, "%s %s (LSN %s): %s\n", j.Table, j.Key, j.LSN, what)
	}
	for _, t := range cleared {
		fmt.Fprintf(stdout, "%s: no dead letter left, degraded mark cleared\n", t)
	}
	return code
}

func clearDeadLetters(ctx context.Context, env *pipeline.Env, table string, yes, asJSON bool, stdout, stderr io.Writer) int {
	letters, err := listDeadLetters(ctx, env, table)
	if err != nil {
		fmt.Fprintf(stderr, "tandem deadletters: %s\n", opsRedact(err.Error()))
		return exitCantRun
	}
	if len(letters) == 0 {
		if asJSON {
			opsJSON(stdout, map[string]any{"cleared": []deadLetterJSON{}})
		} else {
			fmt.Fprintln(stdout, "no dead letters")
		}
		return exitOK
	}
	if !yes {
		printDeadLetters(stderr, letters)
		fmt.Fprintf(stderr, "Remove these %d dead letters without applying them? Their tables stay degraded until re-snapshotted. [y/N] ", len(letters))
		answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(stderr, "\nnothing removed (use --yes to skip the question)")
			return exitProblem
		}
	}
	out := make([]deadLetterJSON, 0, len(letters))
	degraded := map[string]bool{}
	for _, d := range letters {
		if err := env.Control.RemoveDeadLetter(ctx, d.ID); err != nil {
			fmt.Fprintf(stderr, "tandem deadletters: %s\n", opsRedact(err.Error()))
			return exitCantRun
		}
		out = append(out, letterJSON(d))
		if st, found, err := env.Control.Table(ctx, d.Table); err == nil && found && st.Degraded != "" {
			degraded[d.Table] = true
		}
	}
	if asJSON {
		opsJSON(stdout, map[string]any{"cleared": out})
		return exitOK
	}
	fmt.Fprintf(stdout, "%d dead letters removed\n", len(out))
	names := make([]string, 0, len(degraded))
	for t := range degraded {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		fmt.Fprintf(stdout, "%s stays degraded (not consistent): DynamoDB still lacks those changes; tandem resnapshot %s copies it again\n", t, t)
	}
	return exitOK
}

func opsJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func opsOneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func opsClip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
