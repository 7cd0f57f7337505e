// Command status reports per-table snapshot progress and the streamer's lag (see
// shared/pipeline.Status); run it with no event, or deploy it as a Lambda.
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
		fmt.Fprintln(os.Stderr, "status:", err)
		os.Exit(1)
	}
	invoke.Start(env.Status)
}
