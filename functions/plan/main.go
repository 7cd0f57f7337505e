// Command plan is the plan Lambda handler (see shared/pipeline.Plan for its input and output).
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
		fmt.Fprintln(os.Stderr, "plan:", err)
		os.Exit(1)
	}
	invoke.Start(env.Plan)
}
