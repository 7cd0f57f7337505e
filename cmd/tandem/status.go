package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"tandem/shared/config"
	"tandem/shared/pipeline"
	"tandem/shared/statusview"
)

const statusSummary = `Shows, per table, the snapshot state, a progress bar with percent, rows copied of the
estimate, rows/s and time left, key ranges copied, whether it is consistent, its last
error and its dead letters; the streamer (up or down, owner, applied and confirmed LSN,
lag in bytes and seconds, retained WAL); and, where state_machine_arn is configured, the
state machine's latest execution with the state and reason it failed in. It reads the
control table, PostgreSQL's slot and Step Functions; it needs no Lambda. A value that
cannot be known (a table PostgreSQL has no row estimate for) reads "unknown" (null in
--json).

Exit codes: 0 the status was read and nothing failed; 1 the status was read and a
table's snapshot failed, a table is degraded by dead letters, or the state machine's
latest execution failed (a refused plan records no table: it counts); 3 there is nothing
to read (no control table, DynamoDB unreachable) or the configuration is invalid. A
streamer that is down is shown, not counted: it may be stopped on purpose. With --watch,
the exit code is that of the last read.

--json prints the same for scripts: the status Lambda's fields, plus "execution" (see
the README's "Reading its status"); with --watch, one JSON document per line per read.`

// runStatus is `tandem status`.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, cfgFile := newFlags("status", "", statusSummary, stderr)
	asJSON := fs.Bool("json", false, "print JSON for scripts (stable field names; unknown values are null)")
	watch := fs.Bool("watch", false, "refresh in place until Ctrl-C; rates are measured between reads")
	interval := fs.Duration("interval", 2*time.Second, "time between reads with --watch")
	if code, done := parseFlags(fs, cfgFile, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tandem status: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return exitUsage
	}
	if *interval <= 0 {
		fmt.Fprintln(stderr, "tandem status: --interval must be positive")
		return exitUsage
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(stderr, "tandem status: %s\n", oneLine(err))
		return exitCantRun
	}
	env, awsCfg, err := pipeline.NewStatusEnv(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "tandem status: %s\n", oneLine(err))
		return exitCantRun
	}
	if env.PG != nil {
		defer env.PG.Close()
	}
	reader := statusview.NewReader(env, awsCfg)
	if !*watch {
		out, err := reader.Read(ctx)
		return show(stdout, stderr, out, err, *asJSON, false)
	}
	rates := statusview.NewRates()
	code := exitOK
	for {
		out, err := reader.Read(ctx)
		if ctx.Err() != nil {
			return code
		}
		if err == nil {
			rates.Apply(&out, time.Now())
		}
		code = show(stdout, stderr, out, err, *asJSON, true)
		select {
		case <-ctx.Done():
			return code
		case <-time.After(*interval):
		}
	}
}

// show prints one read and returns its exit code. In place (--watch, text), the screen
// is redrawn from its top-left corner and what the previous read left below is cleared.
func show(stdout, stderr io.Writer, out pipeline.StatusOutput, err error, asJSON, inPlace bool) int {
	var nothingUp *statusview.NothingUpError
	code := exitOK
	switch {
	case errors.As(err, &nothingUp) && out.Execution != nil && out.Execution.Failed():
		// A plan that failed before creating the control table: what failed is the news.
		code = exitProblem
	case err != nil:
		if inPlace && !asJSON {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
			fmt.Fprintf(stdout, "tandem status at %s: %s (retrying every read)\n", time.Now().UTC().Format("15:04:05 UTC"), oneLine(err))
		} else {
			fmt.Fprintf(stderr, "tandem status: %s\n", oneLine(err))
		}
		return exitCantRun
	case len(statusview.Problems(out)) > 0:
		code = exitProblem
	}
	if asJSON {
		b, _ := json.Marshal(out)
		if !inPlace {
			var buf bytes.Buffer
			_ = json.Indent(&buf, b, "", "  ")
			b = buf.Bytes()
		}
		fmt.Fprintln(stdout, string(b))
		return code
	}
	var buf bytes.Buffer
	if err != nil {
		statusview.NothingUp(&buf, out, oneLine(err))
	} else {
		statusview.Text(&buf, out)
	}
	if inPlace {
		// Home, each line clearing the rest of the previous read's line, then the rest
		// of the screen: no flicker of a full clear.
		text := strings.ReplaceAll(strings.TrimRight(buf.String(), "\n"), "\n", "\x1b[K\n")
		fmt.Fprintf(stdout, "\x1b[H%s\x1b[K\n\x1b[J", text)
		return code
	}
	_, _ = stdout.Write(buf.Bytes())
	return code
}

// oneLine is an error's message on one line (an AWS error may span several).
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
