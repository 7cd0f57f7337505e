package pipeline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/aws-sdk-go-v2/service/sfn/types"
)

// ExecutionStatus is the snapshot state machine's latest execution: what the Step
// Functions console shows first, so that a run that failed before any table was
// recorded (a plan refused: a misspelled table, one without a primary key) is as visible
// as a failed table.
type ExecutionStatus struct {
	StateMachineARN string `json:"state_machine_arn"`
	ARN             string `json:"arn,omitempty"`
	Name            string `json:"name,omitempty"`
	// Status is Step Functions' (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED), or
	// ExecutionNone when the state machine never ran.
	Status    string `json:"status"`
	StartedAt string `json:"started_at,omitempty"`
	StoppedAt string `json:"stopped_at,omitempty"`
	// State is the state a running execution is in, or the one a failed execution
	// failed in ("Plan", "Tables failed").
	State string `json:"state,omitempty"`
	// Error and Cause are the failure's (Cause is the message of a Lambda error, not its
	// JSON envelope).
	Error string `json:"error,omitempty"`
	Cause string `json:"cause,omitempty"`
	// ReadError says why the executions could not be read.
	ReadError string `json:"read_error,omitempty"`
}

// ExecutionNone is ExecutionStatus.Status of a state machine that never ran.
const ExecutionNone = "NONE"

// Failed reports whether the execution ended in failure (failed, timed out or aborted).
func (x *ExecutionStatus) Failed() bool {
	switch types.ExecutionStatus(x.Status) {
	case types.ExecutionStatusFailed, types.ExecutionStatusTimedOut, types.ExecutionStatusAborted:
		return true
	}
	return false
}

// LatestExecution reads the state machine's most recent execution, and for a failed or
// running one the state it failed in or is in, from its history. An error reading them
// is reported in ReadError: the rest of the status stands without it.
func LatestExecution(ctx context.Context, client *sfn.Client, stateMachineARN string) ExecutionStatus {
	x := ExecutionStatus{StateMachineARN: stateMachineARN}
	if err := x.read(ctx, client); err != nil {
		x.ReadError = err.Error()
	}
	return x
}

func (x *ExecutionStatus) read(ctx context.Context, client *sfn.Client) error {
	// Step Functions lists the most recent first; the first page holds the latest
	// whatever the order (sorted here, as not every implementation sorts).
	list, err := client.ListExecutions(ctx, &sfn.ListExecutionsInput{StateMachineArn: aws.String(x.StateMachineARN), MaxResults: 100})
	if err != nil {
		return fmt.Errorf("listing the executions of %s: %w", x.StateMachineARN, err)
	}
	if len(list.Executions) == 0 {
		x.Status = ExecutionNone
		return nil
	}
	latest := slices.MaxFunc(list.Executions, func(a, b types.ExecutionListItem) int {
		return aws.ToTime(a.StartDate).Compare(aws.ToTime(b.StartDate))
	})
	d, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: latest.ExecutionArn})
	if err != nil {
		return fmt.Errorf("describing execution %s: %w", aws.ToString(latest.ExecutionArn), err)
	}
	x.ARN, x.Name, x.Status = aws.ToString(d.ExecutionArn), aws.ToString(d.Name), string(d.Status)
	x.StartedAt = timeString(d.StartDate)
	x.StoppedAt = timeString(d.StopDate)
	x.Error, x.Cause = aws.ToString(d.Error), causeMessage(aws.ToString(d.Cause))
	if x.Status != string(types.ExecutionStatusRunning) && !x.Failed() {
		return nil
	}
	return x.readHistory(ctx, client)
}

// maxHistoryPages bounds the history read for the current state: the latest events come
// first, so the first page nearly always holds it.
const maxHistoryPages = 5

// readHistory finds the state the execution is in, or failed in (the last state
// entered), and for a failure without a cause in DescribeExecution, the failure's.
func (x *ExecutionStatus) readHistory(ctx context.Context, client *sfn.Client) error {
	var events []types.HistoryEvent
	p := sfn.NewGetExecutionHistoryPaginator(client, &sfn.GetExecutionHistoryInput{
		ExecutionArn: aws.String(x.ARN), ReverseOrder: true, MaxResults: 200})
	for page := 0; p.HasMorePages() && page < maxHistoryPages; page++ {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("reading the history of %s: %w", x.Name, err)
		}
		events = append(events, out.Events...)
		if entered(events) != "" && (!x.Failed() || x.Error != "") {
			break
		}
	}
	x.State = entered(events)
	if x.Failed() && x.Error == "" {
		for _, ev := range events {
			if d := ev.ExecutionFailedEventDetails; d != nil {
				x.Error, x.Cause = aws.ToString(d.Error), causeMessage(aws.ToString(d.Cause))
			}
		}
	}
	return nil
}

// entered is the name of the last state entered among events (in any order: they are
// sorted by id here, as not every implementation honours ReverseOrder).
func entered(events []types.HistoryEvent) string {
	last, name := int64(-1), ""
	for _, ev := range events {
		if d := ev.StateEnteredEventDetails; d != nil && ev.Id > last && strings.HasSuffix(string(ev.Type), "StateEntered") {
			last, name = ev.Id, aws.ToString(d.Name)
		}
	}
	return name
}

func timeString(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
