// Command tandem operates a Tandem deployment: pre-flight checks, status, validation of
// DynamoDB against PostgreSQL, re-snapshots, dead letters and teardown. It reads the same
// configuration as the Lambda handlers and the streamer (TANDEM_* variables, or the JSON
// file given by --config) and talks to PostgreSQL, DynamoDB and, where deployed, Step
// Functions directly: it needs no Lambda.
//
// Exit codes, for scripts: 0 success; 1 the command ran and found a problem (a blocker, a
// difference, a failed table, dead letters); 2 a usage error; 3 the command could not do
// its work (no or an invalid configuration, nothing deployed, a database it needs
// unreachable). check reports an unreachable PostgreSQL or DynamoDB as a finding (1), and
// status shows an unreachable PostgreSQL and exits 3 only when it cannot read the
// control table.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK       = 0
	exitProblem  = 1
	exitUsage    = 2
	exitCantRun  = 3
	programName  = "tandem"
	usageCommand = "Run 'tandem COMMAND --help' for a command's flags."
)

// command is one subcommand: run parses its own flags from args.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = []command{
	{"check", "pre-flight checks of the database and DynamoDB before anything is created", runCheck},
	{"status", "per-table progress, consistency, dead letters, the streamer and the state machine", runStatus},
	{"verify", "compare DynamoDB with PostgreSQL and print every difference", runVerify},
	{"resnapshot", "re-snapshot some tables (or rows of one) while streaming goes on", runResnapshot},
	{"deadletters", "list, retry or clear the changes Tandem could not apply", runDeadLetters},
	{"teardown", "drop Tandem's slot and publication, optionally its DynamoDB tables", runTeardown},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n", programName, args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s COMMAND [flags]\n\nCommands:\n", programName)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n%s\nConfiguration: TANDEM_* variables or --config FILE (the settings of the Lambda handlers and the streamer).\n", usageCommand)
}

// newFlags is a subcommand's flag set with the flags every subcommand has (--config);
// parse it with parseFlags. argsUsage names the positional arguments.
func newFlags(name, argsUsage, summary string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(programName+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s %s [flags] %s\n\n%s\n\nFlags:\n", programName, name, argsUsage, summary)
		fs.PrintDefaults()
	}
	config := fs.String("config", os.Getenv("TANDEM_CONFIG_FILE"), "Tandem's JSON configuration `file` (TANDEM_* variables apply on top)")
	return fs, config
}

// parseFlags parses args; done reports that the command must end at once with code: a
// usage error (the message on stderr), or --help (the usage on stdout).
func parseFlags(fs *flag.FlagSet, config *string, args []string, stdout io.Writer) (code int, done bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK, true
		}
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage, true
	}
	if *config != "" {
		// The shared loader (config.Load) reads the file named here.
		os.Setenv("TANDEM_CONFIG_FILE", *config)
	}
	return exitOK, false
}
