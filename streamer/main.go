// Command streamer is the long-lived WAL streamer (the ECS service): it consumes the
// replication slot and applies every change to DynamoDB until SIGTERM.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"tandem/shared/pipeline"
	"tandem/streamer/stream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := pipeline.NewEnv(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "streamer:", err)
		os.Exit(1)
	}
	host, _ := os.Hostname()
	s := &stream.Streamer{Env: env, Owner: fmt.Sprintf("%s/%d", host, os.Getpid()), Metrics: os.Stdout}
	if err := s.Run(ctx); err != nil {
		env.Log.Error("streamer failed", "error", err.Error())
		os.Exit(1)
	}
}
