// Command snapshot is the snapshot Lambda handler (see shared/pipeline.Snapshot for its input and output).
package main

import (
	"context"
	"fmt"
	"os"

	"tandem/shared/invoke"
	"tandem/shared/pipeline"
)

func main() {
	env, err := pipeline.NewEnv(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "snapshot:", err)
		os.Exit(1)
	}
	invoke.Start(env.Snapshot)
}
