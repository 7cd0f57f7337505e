package main

import (
	"context"
	"fmt"
	"io"
)

// runResnapshot is a placeholder until the subcommand is written.
func runResnapshot(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("resnapshot", "", "Not written yet.", stderr)
	if code, done := parseFlags(fs, config, args, stdout); done {
		return code
	}
	fmt.Fprintln(stderr, "tandem resnapshot: not implemented yet")
	return exitCantRun
}
