package main

import (
	"context"
	"fmt"
	"io"
)

// runStatus is a placeholder until the subcommand is written.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("status", "", "Not written yet.", stderr)
	if code, done := parseFlags(fs, config, args, stdout); done {
		return code
	}
	fmt.Fprintln(stderr, "tandem status: not implemented yet")
	return exitCantRun
}
