package main

import (
	"context"
	"fmt"
	"io"
)

// runVerify is a placeholder until the subcommand is written.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("verify", "", "Not written yet.", stderr)
	if code, done := parseFlags(fs, config, args, stdout); done {
		return code
	}
	fmt.Fprintln(stderr, "tandem verify: not implemented yet")
	return exitCantRun
}
