// Command finalize is the finalize Lambda handler (see shared/pipeline.Finalize for its input and output).
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
		fmt.Fprintln(os.Stderr, "finalize:", err)
		os.Exit(1)
	}
	invoke.Start(env.Finalize)
}
