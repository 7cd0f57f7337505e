package main

import (
	"context"
	"fmt"
	"io"
)

// runDeadLetters is a placeholder until the subcommand is written.
func runDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("deadletters", "", "Not written yet.", stderr)
	if code, done := parseFlags(fs, config, args, stdout); done {
		return code
	}
	fmt.Fprintln(stderr, "tandem deadletters: not implemented yet")
	return exitCantRun
}
