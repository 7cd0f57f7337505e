// Package invoke starts a handler as a Lambda function, or, outside Lambda, runs it once
// on the JSON event given as the first argument (or on stdin) and prints the JSON result.
// The same binary thus serves Lambda, the local stand-in and an operator's shell.
package invoke

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-lambda-go/lambda"
)

// InLambda reports whether this process runs as a Lambda function (the runtime API is
// there), rather than once by hand.
func InLambda() bool { return os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" }

// Start never returns.
func Start[In, Out any](handler func(context.Context, In) (Out, error)) {
	if InLambda() {
		lambda.Start(handler)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, err := Once(ctx, handler, os.Args[1:], os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
	os.Exit(0)
}

// Once decodes the event (args[0], or stdin when it is "-"; no argument is the empty
// event), runs the handler and encodes its result.
func Once[In, Out any](ctx context.Context, handler func(context.Context, In) (Out, error), args []string, stdin io.Reader) ([]byte, error) {
	var raw []byte
	switch {
	case len(args) == 0:
	case args[0] != "-":
		raw = []byte(args[0])
	default:
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	var in In
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &in); err != nil {
			return nil, fmt.Errorf("event is not valid JSON for this handler: %w", err)
		}
	}
	out, err := handler(ctx, in)
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(out, "", "  ")
}
