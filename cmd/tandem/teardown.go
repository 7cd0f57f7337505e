package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"tandem/shared/config"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/teardown"
)

const teardownSummary = `Drops Tandem's replication slot (which holds WAL on the database until dropped) and its
publication; with --delete-tables, also deletes the DynamoDB target tables (those the
control table records, including targets replaced by a configuration change, and the
configured ones) and then the control table. It lists what it will remove, asks for
confirmation (y/N on stdin) unless --yes, then says what it removed and what was already
absent.

A publication created outside Tandem (the control table exists and has no record of Tandem
creating it) is kept: Tandem never alters a publication it did not create.

While a streamer is running (the slot is active), teardown refuses: stop the streamer
first. --force instead terminates the connection streaming from the slot
(pg_terminate_backend) and drops the slot; a streamer still running then stops with an
error, or, if its control table was deleted too, starts over with a new slot: stop it.

Exit status: 0 removed (or nothing left to remove), 1 refused (active slot) or not
confirmed, 2 usage, 3 cannot connect or a removal failed.`

func runTeardown(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, cfgFile := newFlags("teardown", "", teardownSummary, stderr)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	deleteTables := fs.Bool("delete-tables", false, "also delete the DynamoDB target tables and the control table (their data is lost)")
	force := fs.Bool("force", false, "terminate the connection using an active slot (a running streamer) instead of refusing")
	asJSON := fs.Bool("json", false, "print the outcome as JSON ({objects: [{kind, name, exists, keep, removed, note}]})")
	if code, done := parseFlags(fs, cfgFile, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tandem teardown: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *asJSON && !*yes {
		fmt.Fprintln(stderr, "tandem teardown: --json needs --yes (there is no one to confirm)")
		return exitUsage
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(stderr, "tandem teardown:", err)
		return exitCantRun
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "tandem teardown: aws config:", err)
		return exitCantRun
	}
	src, err := pipeline.SourceFor(ctx, cfg, awsCfg)
	if err != nil {
		fmt.Fprintln(stderr, "tandem teardown:", err)
		return exitCantRun
	}
	pool, err := pg.Open(ctx, src, 2)
	if err != nil {
		fmt.Fprintln(stderr, "tandem teardown:", err)
		return exitCantRun
	}
	defer pool.Close()
	// A client that gives up soon: without --delete-tables DynamoDB only says who created
	// the publication, and an unreachable one (a stand-in already stopped) must not hold
	// up dropping the slot for minutes.
	db := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = 3 })
	})
	o := teardown.Options{Config: cfg, PG: pool, DB: db, DeleteTables: *deleteTables, Force: *force}
	plan, err := teardown.Inspect(ctx, o)
	if errors.Is(err, teardown.ErrSlotActive) {
		fmt.Fprintln(stderr, "tandem teardown:", err)
		return exitProblem
	}
	if err != nil {
		fmt.Fprintln(stderr, "tandem teardown:", err)
		return exitCantRun
	}
	if !*yes {
		pending := false
		for _, obj := range plan.Objects {
			fmt.Fprintln(stdout, teardown.Describe(obj, false))
			pending = pending || (obj.Exists && !obj.Keep)
		}
		if !pending {
			fmt.Fprintln(stdout, "Nothing to remove.")
			return exitOK
		}
		fmt.Fprint(stdout, "Proceed? [y/N] ")
		answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			fmt.Fprintln(stdout, "Not confirmed: nothing was removed.")
			return exitProblem
		}
	}
	done, err := teardown.Run(ctx, o, plan)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"objects": done})
	} else {
		for _, obj := range done {
			fmt.Fprintln(stdout, teardown.Describe(obj, true))
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "tandem teardown:", err)
		if errors.Is(err, teardown.ErrSlotActive) {
			return exitProblem
		}
		return exitCantRun
	}
	return exitOK
}
