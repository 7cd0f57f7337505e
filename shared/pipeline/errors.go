package pipeline

import (
	"errors"

	"tandem/shared/fault"
	"tandem/shared/snapshot"
)

// The error types a handler returns. Lambda reports an error's type name as its
// errorType, and the state machine's Retry and Catch match on it: a TransientError is
// retried with backoff, a PermanentError fails the table at once (README "Bad input and faults").
type (
	TransientError struct{ Err error }
	PermanentError struct{ Err error }
)

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }
func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// classify types a handler error for the state machine: misconfiguration and tables or
// values that cannot be replicated are permanent; the rest (connections, throttling
// beyond the SDK's retries, a PostgreSQL restart) is worth retrying.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var f *snapshot.FailedError
	if errors.As(err, &f) {
		return &PermanentError{Err: err}
	}
	switch fault.Classify(err) {
	case fault.Fatal, fault.Poison:
		return &PermanentError{Err: err}
	}
	return &TransientError{Err: err}
}
