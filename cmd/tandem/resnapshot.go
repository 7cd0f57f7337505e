package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
)

const resnapshotSummary = `Re-snapshots the named tables while streaming goes on, without touching any other
table (their state and their items stay exactly as they are).

A re-snapshot is a new snapshot epoch of each named table: every row is copied again, in
key ranges, and the items no row rewrote (rows deleted since) are swept. It may replace
any item written before the slot's confirmed position (so it repairs items damaged
behind Tandem's back), while every change streamed after that still wins over it and a
deleted row is never resurrected. The table is consistent again once the streamer has
applied past its new consistency point. Its dead letters are removed: every row is
written again, and a row DynamoDB still cannot hold becomes a new dead letter.

--where SQL re-copies only the rows matching a boolean SQL expression on the table
(a repair of a subset; the table must have been copied whole before). The same rules
apply: streamed changes still win, deletes are not resurrected. A filtered re-snapshot
cannot sweep extra items (a filter on rows says nothing of items without a row): run a
full re-snapshot for that. The table's degraded mark and dead letters stay. The filter
is checked before anything starts: no ';', no comments, no '$', balanced parentheses,
and PostgreSQL must accept SELECT 1 FROM table WHERE (SQL) LIMIT 0.

Where state_machine_arn is configured, an execution of the state machine is started whose
plan re-plans only the named tables; the command waits for it (progress on stderr)
unless --no-wait. Otherwise (or with --in-process) the plan, the copy of every range
and the finalize run in this process, progress on stderr.

Exit status: 0 every table re-snapshotted; 1 a table failed (or the execution did);
2 a usage error (unknown table, a refused --where); 3 it could not run.`

func runResnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("resnapshot", "TABLE...", resnapshotSummary, stderr)
	where := fs.String("where", "", "re-copy only the rows matching this boolean `SQL` expression")
	noWait := fs.Bool("no-wait", false, "with a state machine: start the execution and return")
	inProcess := fs.Bool("in-process", false, "run here even where a state machine is configured")
	interval := fs.Duration("progress", 2*time.Second, "how often progress is printed on stderr")
	positional, code, done := opsParse(fs, config, args, stdout)
	if done {
		return code
	}
	tables, err := opsTables(positional)
	if err == nil && len(tables) == 0 {
		err = fmt.Errorf("name at least one table")
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem resnapshot: %v (see tandem resnapshot --help)\n", err)
		return exitUsage
	}
	env, ok := opsEnv(ctx, "resnapshot", stderr)
	if !ok {
		return exitCantRun
	}
	defer env.PG.Close()
	in := pipeline.PlanInput{Tables: tables, Where: strings.TrimSpace(*where)}

	// What the plan would refuse is said before anything starts.
	before := map[string]int64{}
	for _, name := range tables {
		if id, _ := ident.Parse(name); !configured(env, id) {
			fmt.Fprintf(stderr, "tandem resnapshot: table %s is not in the configured tables\n", name)
			return exitUsage
		}
		t, err := env.Describe(ctx, name)
		if err == nil && in.Where != "" {
			err = pg.CheckFilter(ctx, env.PG, t, in.Where)
		}
		if err != nil {
			fmt.Fprintf(stderr, "tandem resnapshot: %s\n", opsRedact(err.Error()))
			if fault.Classify(err) == fault.Fatal || errors.Is(err, pg.ErrNoTable) {
				return exitUsage
			}
			return exitCantRun
		}
		st, _, err := env.Control.Table(ctx, name)
		if err != nil {
			fmt.Fprintf(stderr, "tandem resnapshot: %s\n", opsRedact(err.Error()))
			return exitCantRun
		}
		before[name] = st.Epoch
	}
	if env.Config.StateMachineARN != "" && !*inProcess {
		return resnapshotExecution(ctx, env, in, before, !*noWait, *interval, stdout, stderr)
	}
	return resnapshotHere(ctx, env, in, *interval, stdout, stderr)
}

func configured(env *pipeline.Env, id ident.Table) bool {
	_, ok := env.Config.TableFor(id)
	return ok
}

// resnapshotHere runs the pieces in this process.
func resnapshotHere(ctx context.Context, env *pipeline.Env, in pipeline.PlanInput, interval time.Duration, stdout, stderr io.Writer) int {
	last := map[string]string{}
	results, err := env.Resnapshot(ctx, in, interval, func(p []pipeline.TableProgress) { printResnapshotProgress(stderr, p, last) })
	if results == nil && err != nil {
		fmt.Fprintf(stderr, "tandem resnapshot: %s\n", opsRedact(err.Error()))
		if fault.Classify(err) == fault.Fatal {
			return exitProblem
		}
		return exitCantRun
	}
	code := exitOK
	for _, r := range results {
		if r.Error != "" || r.State != control.Done {
			code = exitProblem
		}
		printResnapshotResult(stdout, env, r, in.Where)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem resnapshot: %s\n", opsRedact(err.Error()))
		code = max(code, exitProblem)
	}
	return code
}

// printResult says how one table's re-snapshot ended.
func printResnapshotResult(w io.Writer, env *pipeline.Env, r pipeline.FinalizeOutput, where string) {
	if r.Error != "" || r.State != control.Done {
		reason := r.Error
		if reason == "" {
			reason = "its snapshot is " + r.State
		}
		fmt.Fprintf(w, "%s: re-snapshot failed: %s\n", r.Table, reason)
		return
	}
	rows := int64(0)
	if p, err := env.Progress(context.Background(), []string{r.Table}); err == nil && len(p) == 1 {
		rows = p[0].RowsCopied
	}
	what := fmt.Sprintf("%d rows copied again, %d stale items swept", rows, r.Swept)
	if r.Swept < 0 {
		what = fmt.Sprintf("%d rows copied again, stale items swept", rows)
	}
	if where != "" {
		what = fmt.Sprintf("%d rows matching the filter copied again (nothing swept: filtered)", rows)
	}
	consistent := "consistent"
	if !r.Consistent {
		consistent = fmt.Sprintf("consistent once the streamer has applied up to %s", r.ConsistentLSN)
	}
	fmt.Fprintf(w, "%s: re-snapshotted: %s; %s\n", r.Table, what, consistent)
}

// printProgress prints each table's progress line when it changed.
func printResnapshotProgress(w io.Writer, progress []pipeline.TableProgress, last map[string]string) {
	for _, p := range progress {
		line := fmt.Sprintf("%s: %s, %d rows copied", p.Table, p.State, p.RowsCopied)
		if p.RowsEstimate > 0 {
			line = fmt.Sprintf("%s: %s, %d of about %d rows copied (%d%%)", p.Table, p.State, p.RowsCopied, p.RowsEstimate,
				min(100, 100*p.RowsCopied/p.RowsEstimate))
		}
		if p.Ranges > 0 {
			line += fmt.Sprintf(", %d/%d ranges done", p.RangesDone, p.Ranges)
		}
		if p.Error != "" {
			line += ": " + p.Error
		}
		if last[p.Table] != line {
			fmt.Fprintln(w, line)
			last[p.Table] = line
		}
	}
}

// resnapshotExecution starts the state machine with the plan's input naming the tables,
// and waits for it unless told not to.
func resnapshotExecution(ctx context.Context, env *pipeline.Env, in pipeline.PlanInput, before map[string]int64, wait bool, interval time.Duration, stdout, stderr io.Writer) int {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "tandem resnapshot: aws config: %v\n", err)
		return exitCantRun
	}
	states := sfn.NewFromConfig(awsCfg)
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // a filter's < and > stay readable in the console
	_ = enc.Encode(in)
	input := strings.TrimSpace(buf.String())
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := fmt.Sprintf("resnapshot-%s-%s", time.Now().UTC().Format("20060102T150405"), hex.EncodeToString(suffix))
	started, err := states.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(env.Config.StateMachineARN), Name: aws.String(name), Input: aws.String(input),
	})
	if err != nil {
		fmt.Fprintf(stderr, "tandem resnapshot: starting the state machine %s: %v\n", env.Config.StateMachineARN, err)
		return exitCantRun
	}
	arn := aws.ToString(started.ExecutionArn)
	fmt.Fprintf(stdout, "started execution %s (input %s)\n", arn, input)
	if !wait {
		return exitOK
	}
	last := map[string]string{}
	var exec *sfn.DescribeExecutionOutput
	for {
		if exec, err = states.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)}); err != nil {
			fmt.Fprintf(stderr, "tandem resnapshot: reading execution %s: %v\n", arn, err)
			return exitCantRun
		}
		if p, err := env.Progress(ctx, in.Tables); err == nil {
			printResnapshotProgress(stderr, p, last)
		}
		if exec.Status != sfntypes.ExecutionStatusRunning && exec.Status != sfntypes.ExecutionStatusPendingRedrive {
			break
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "tandem resnapshot: stopped waiting; execution %s goes on\n", arn)
			return exitCantRun
		case <-time.After(interval):
		}
	}
	if exec.Status != sfntypes.ExecutionStatusSucceeded {
		fmt.Fprintf(stdout, "execution %s: %s: %s %s\n", arn, exec.Status, aws.ToString(exec.Error), aws.ToString(exec.Cause))
		return exitProblem
	}
	code := exitOK
	for _, name := range in.Tables {
		st, _, err := env.Control.Table(ctx, name)
		if err != nil {
			fmt.Fprintf(stderr, "tandem resnapshot: %s\n", opsRedact(err.Error()))
			return exitCantRun
		}
		switch {
		case st.Epoch == before[name]:
			fmt.Fprintf(stdout, "%s: the execution succeeded but did not re-plan the table (epoch still %d): is %s Tandem's state machine?\n", name, st.Epoch, env.Config.StateMachineARN)
			code = exitProblem
		default:
			cp, _ := env.Control.Checkpoint(ctx)
			printResnapshotResult(stdout, env, pipeline.FinalizeOutput{Table: name, State: st.State, Error: st.Error, Swept: -1,
				ConsistentLSN: lsnText(st.ConsistentLSN), Consistent: st.IsConsistent(cp.AppliedLSN)}, in.Where)
			if st.State != control.Done || st.Error != "" {
				code = exitProblem
			}
		}
	}
	return code
}
