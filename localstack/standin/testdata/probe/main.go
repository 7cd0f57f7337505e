// Command probe is a Lambda function for the gateway's tests: it echoes, fails or sleeps
// as its event says.
package main

import (
	"context"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

type event struct {
	Echo  string `json:"echo"`
	Fail  bool   `json:"fail"`
	Sleep int    `json:"sleep_ms"`
}

type ProbeError struct{ msg string }

func (e *ProbeError) Error() string { return e.msg }

func main() {
	if os.Getenv("PROBE_CRASH_AT_INIT") != "" {
		os.Exit(3) // a function whose init fails, e.g. it cannot reach its database
	}
	lambda.Start(func(ctx context.Context, e event) (map[string]string, error) {
		time.Sleep(time.Duration(e.Sleep) * time.Millisecond)
		if e.Fail {
			return nil, &ProbeError{"asked to fail"}
		}
		return map[string]string{"echo": e.Echo, "env": os.Getenv("PROBE_SETTING")}, nil
	})
}
