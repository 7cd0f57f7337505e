package statusview

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"tandem/shared/pipeline"
)

// NothingUpError means there is nothing to show the status of: the control table does
// not exist, or DynamoDB does not answer. Its message is one line, for people.
type NothingUpError struct{ Msg string }

func (e *NothingUpError) Error() string { return e.Msg }

// readTimeout bounds one read of the status: an endpoint that does not answer is said
// so, not waited for.
const readTimeout = 30 * time.Second

// Reader reads the status the tandem command shows: the control table and the slot
// (pipeline.Env.Status), and the state machine's latest execution where one is
// configured.
type Reader struct {
	Env *pipeline.Env
	// SFN reads the state machine's executions (nil: none configured).
	SFN *sfn.Client
	// Endpoint names where DynamoDB is reached, for messages ("DynamoDB at URL").
	Endpoint string
}

// NewReader reads env's status, and the state machine's executions when one is
// configured.
func NewReader(env *pipeline.Env, awsCfg aws.Config) *Reader {
	r := &Reader{Env: env, Endpoint: endpoint(awsCfg)}
	if env.Config.StateMachineARN != "" {
		r.SFN = sfn.NewFromConfig(awsCfg)
	}
	return r
}

// Read reads the status once. Without a control table the output still carries the
// latest execution (a plan that failed before creating it) and the error is a
// *NothingUpError.
func (r *Reader) Read(ctx context.Context) (pipeline.StatusOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	out, err := r.Env.Status(ctx, pipeline.StatusInput{})
	if r.SFN != nil {
		x := pipeline.LatestExecution(ctx, r.SFN, r.Env.Config.StateMachineARN)
		out.Execution = &x
	}
	if err == nil {
		return out, nil
	}
	var missing *types.ResourceNotFoundException
	var op *net.OpError
	switch {
	case errors.As(err, &missing):
		err = &NothingUpError{fmt.Sprintf("control table %s does not exist (%s): nothing has been planned into it (start Tandem: make up, or run the plan function)",
			r.Env.Config.ControlTable, r.Endpoint)}
	case errors.As(err, &op):
		err = &NothingUpError{fmt.Sprintf("%s does not answer (%v): is Tandem up?", r.Endpoint, op.Err)}
	case errors.Is(err, context.DeadlineExceeded):
		err = &NothingUpError{fmt.Sprintf("%s did not answer within %s: is Tandem up?", r.Endpoint, readTimeout)}
	}
	out.Summary = err.Error()
	out.Streamer.State, out.Streamer.Why = "unknown", "the control table could not be read"
	return out, err
}

// endpoint names where DynamoDB is reached: the configured endpoint, or the region.
func endpoint(cfg aws.Config) string {
	for _, v := range []string{os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), aws.ToString(cfg.BaseEndpoint), os.Getenv("AWS_ENDPOINT_URL")} {
		if v != "" {
			return "DynamoDB at " + v
		}
	}
	if cfg.Region != "" {
		return "DynamoDB in " + cfg.Region
	}
	return "DynamoDB (no region configured: AWS_REGION)"
}
