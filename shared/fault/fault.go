// Package fault classifies every error Tandem meets, in one place, into what to do with
// it (README "Bad input and faults"):
//
//   - Transient: throttling, 5xx, timeouts, lost connections, a restarting PostgreSQL. Retry
//     with backoff, for as long as it takes, and acknowledge nothing after it meanwhile.
//   - Poison: a change or row that can never be applied as it is (a value DynamoDB will
//     not accept, a key over its limits). Dead-letter it, mark its table degraded, go on.
//   - Fatal: the configuration or the server setup is wrong (wal_level, privileges, a
//     lost slot, a table that does not exist). No retry helps: stop and say the fix.
//
// Anything not recognised is Transient: retrying a change is never wrong, skipping one is.
package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5/pgconn"
)

// Class is what to do with an error.
type Class int

// The classes, from the mildest.
const (
	None Class = iota
	Transient
	Poison
	Fatal
)

func (c Class) String() string {
	return [...]string{"none", "transient", "poison", "fatal"}[c]
}

// PoisonError is a change or row that can never be applied as it is. Its message names the
// table, the key and (when one is to blame) the column.
type PoisonError struct {
	Table  string // qualified source table
	Key    string // the row's key, "id=7" (empty when not known yet)
	Column string // the column at fault, if any
	Reason string
	Err    error // underlying error, if any
}

func (e *PoisonError) Error() string {
	var b strings.Builder
	b.WriteString("table ")
	b.WriteString(e.Table)
	if e.Key != "" {
		b.WriteString(" key ")
		b.WriteString(clip(e.Key))
	}
	if e.Column != "" {
		b.WriteString(" column ")
		b.WriteString(e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

func (e *PoisonError) Unwrap() error { return e.Err }

// maxKeyInMessage bounds how much of a key a message quotes: a key can be kilobytes long
// (that may be why it is poison), and messages end up in logs and dead letters.
const maxKeyInMessage = 200

func clip(s string) string {
	if len(s) <= maxKeyInMessage {
		return s
	}
	return s[:maxKeyInMessage] + fmt.Sprintf("... (%d bytes)", len(s))
}

// Poisonf is a PoisonError whose table and key are filled in by the caller that knows them
// (WithRow); mapping code knows only the value.
func Poisonf(format string, args ...any) error {
	return &PoisonError{Reason: fmt.Sprintf(format, args...)}
}

// WithRow names the table, key and column of a poison error that lacks them, and turns a
// DynamoDB validation error into a PoisonError. Other errors are returned unchanged.
func WithRow(err error, table, key, column string) error {
	if err == nil {
		return nil
	}
	var p *PoisonError
	if errors.As(err, &p) {
		q := *p
		if q.Table == "" {
			q.Table = table
		}
		if q.Key == "" {
			q.Key = key
		}
		if q.Column == "" {
			q.Column = column
		}
		return &q
	}
	if Classify(err) == Poison {
		return &PoisonError{Table: table, Key: key, Column: column, Reason: err.Error(), Err: err}
	}
	return err
}

// FatalError is a misconfiguration no retry can fix; the message says what to change.
type FatalError struct{ msg string }

func (e *FatalError) Error() string { return e.msg }

// Fatalf formats a FatalError.
func Fatalf(format string, args ...any) error { return &FatalError{msg: fmt.Sprintf(format, args...)} }

// Classify says what to do with err.
func Classify(err error) Class {
	if err == nil {
		return None
	}
	var poison *PoisonError
	var fatal *FatalError
	switch {
	case errors.As(err, &fatal):
		return Fatal
	case errors.As(err, &poison):
		return Poison
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Transient
	}
	if c, ok := classifyPostgres(err); ok {
		return c
	}
	if c, ok := classifyDynamoDB(err); ok {
		return c
	}
	return Transient
}

// classifyDynamoDB sorts DynamoDB's API errors. A ValidationException is DynamoDB saying
// the request itself can never succeed: an item or key over a limit, an empty key, too
// deep a document, too long an expression.
func classifyDynamoDB(err error) (Class, bool) {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return 0, false
	}
	switch api.ErrorCode() {
	case "ValidationException", "SerializationException":
		return Poison, true
	case "ConditionalCheckFailedException":
		// Callers handle a refused condition themselves (a write that lost); one that
		// reaches here can never pass by retrying.
		return Poison, true
	case "ResourceNotFoundException":
		// The target table is gone (deleted behind Tandem's back): its changes cannot land.
		return Poison, true
	}
	return Transient, true
}

// classifyPostgres sorts PostgreSQL errors by SQLSTATE class, and network failures.
func classifyPostgres(err error) (Class, bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code := pgErr.Code
		switch {
		case strings.HasPrefix(code, "08"), // connection exception
			strings.HasPrefix(code, "53"), // insufficient resources
			strings.HasPrefix(code, "57"), // operator intervention: shutdown, cancel, terminated backend
			strings.HasPrefix(code, "58"), // system error
			strings.HasPrefix(code, "40"), // serialization failure, deadlock
			code == "55P03",               // lock not available
			code == "55006",               // object in use (e.g. the slot, while a predecessor lets go)
			code == "XX000":               // internal error: often transient (e.g. a replica catching up)
			return Transient, true
		case strings.HasPrefix(code, "28"), // invalid authorization
			code == "42501": // insufficient privilege
			// A rotated secret or a missing grant on a read: the operator fixes it and we
			// go on. (Publication DDL, which needs ownership no retry brings, has its 42501
			// made fatal where it is issued: pg's privilegeError.)
			return Transient, true
		case code == "42710": // duplicate object: created concurrently by another process
			return Transient, true
		case strings.HasPrefix(code, "22"), // data exception: a value the statement cannot take
			strings.HasPrefix(code, "42"), // the table, a column or a cast is gone or changed (a re-read after DDL)
			code == "0A000":               // feature not supported
			return Poison, true
		}
		return Transient, true
	}
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return Transient, true
	}
	return 0, false
}

// IsPoison reports whether err is a change or row that can never be applied.
func IsPoison(err error) bool { return Classify(err) == Poison }

// IsFatal reports whether err is a misconfiguration.
func IsFatal(err error) bool { return Classify(err) == Fatal }
