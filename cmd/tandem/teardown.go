package main

import (
	"context"
	"fmt"
	"io"
)

// runTeardown is a placeholder until the subcommand is written.
func runTeardown(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("teardown", "", "Not written yet.", stderr)
	if code, done := parseFlags(fs, config, args, stdout); done {
		return code
	}
	fmt.Fprintln(stderr, "tandem teardown: not implemented yet")
	return exitCantRun
}
