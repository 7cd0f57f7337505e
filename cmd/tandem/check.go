package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"tandem/shared/config"
	"tandem/shared/preflight"
)

const checkSummary = `Pre-flight checks of the configured database and DynamoDB, before anything is created.
Nothing is changed. One line per finding: OK, WARN (works, but look) or FAIL (a blocker:
plan would refuse it, or Tandem could not run), each naming what it checked.

Checked: the connection and whether it is encrypted (TLS, sslmode); wal_level; the
REPLICATION privilege (or rds_replication); max_replication_slots and max_wal_senders
headroom (Tandem's own slot, if it exists, counts as available); Tandem's slot if it
exists; the publication; each configured table (or, with none configured, each table the
publication covers or FOR ALL TABLES would): it exists, is not a partitioned parent, has
a usable key (primary key or key_columns) covered by its replica identity, no DEFERRABLE
primary key as its identity, no column named with the reserved "__" prefix, key types
DynamoDB accepts; DynamoDB is reachable, and each existing target table's key schema
matches the table's key. For a deployment of template.yaml (--deployment, or
state_machine_arn set), each target is named with table_prefix: the stack's roles may
write no other table.

Exit status: 0 no blocker (warnings allowed), 1 at least one blocker (an unreachable
PostgreSQL or DynamoDB included), 2 usage, 3 the configuration cannot be loaded.`

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, cfgFile := newFlags("check", "", checkSummary, stderr)
	asJSON := fs.Bool("json", false, "print the findings as JSON ({findings: [{level, subject, message}], blockers, warnings})")
	noDynamoDB := fs.Bool("no-dynamodb", false, "check as against an empty DynamoDB, without calling it (make up checks before it starts its DynamoDB)")
	deployment := fs.Bool("deployment", false, "check the configuration as template.yaml deploys it with its default parameters (make up does): table_prefix defaults to "+config.DeployedTablePrefix+", and a target outside the prefix is a blocker")
	if code, done := parseFlags(fs, cfgFile, args, stdout); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tandem check: unexpected argument %q (the tables to check are the configured ones)\n", fs.Arg(0))
		return exitUsage
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(stderr, "tandem check:", err)
		return exitCantRun
	}
	if *deployment {
		cfg.DeploymentDefaults()
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "tandem check: aws config:", err)
		return exitCantRun
	}
	// A configuration naming a state machine is a deployed stack's.
	report := preflight.Run(ctx, preflight.Options{Config: cfg, AWS: awsCfg, NoDynamoDB: *noDynamoDB,
		Deployment: *deployment || cfg.StateMachineARN != ""})
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(report)
	} else {
		for _, f := range report.Findings {
			fmt.Fprintf(stdout, "%-4s %s: %s\n", f.Level, f.Subject, f.Message)
		}
		switch {
		case report.Blockers > 0:
			fmt.Fprintf(stdout, "\n%d blocker(s), %d warning(s): fix the FAIL lines before deploying.\n", report.Blockers, report.Warnings)
		default:
			fmt.Fprintf(stdout, "\nNo blockers (%d warning(s)).\n", report.Warnings)
		}
	}
	if report.Blockers > 0 {
		return exitProblem
	}
	return exitOK
}
