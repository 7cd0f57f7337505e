package main

import (
	"context"
	"fmt"
	"io"
)

// runCheck is a placeholder until the subcommand is written.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("check", "", "Not written yet.", stderr)
	if code, done := parseFlags(fs, config, args, stdout); done {
		return code
	}
	fmt.Fprintln(stderr, "tandem check: not implemented yet")
	return exitCantRun
}
