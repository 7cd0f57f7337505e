package pipeline

import (
	"context"
	"fmt"
	"strings"

	"tandem/shared/control"
	"tandem/shared/pg"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// Outcomes of a retried dead letter.
const (
	// RetryWritten: the row, read again, was written.
	RetryWritten = "written"
	// RetrySuperseded: the stream had written the key at a later position already.
	RetrySuperseded = "superseded"
	// RetryGone: the row no longer exists; the stream applies (or applied) its DELETE.
	RetryGone = "gone"
)

// retryLockTimeout bounds how long a retry waits for a transaction changing the row.
const retryLockTimeout = "5s"

// RetryDeadLetter re-applies one dead letter's row as it is now (README "Bad input and faults"). The row
// is read again by key under a share lock, the WAL position P read after the lock, and
// the row written as a stream change at P while the lock is held: every change to the
// row committed before P is in what was read, and every later one commits after the
// lock is released, at a position after P, so it still wins (README "The contract"), whether the
// streamer applied it already (then the write at P loses, RetrySuperseded) or not yet.
// A snapshot write at the read's LSN would not do: it can never replace the stale item
// an earlier stream change left. A row that no longer exists is not written (RetryGone):
// its DELETE comes after the dead letter in the WAL and is the stream's to apply.
//
// A letter without a key (a whole table skipped, or a DELETE the WAL gave no key for)
// cannot be retried by key: the error says to re-snapshot the table. A row DynamoDB still
// cannot hold fails again with the reason (a fault.PoisonError).
func (e *Env) RetryDeadLetter(ctx context.Context, d control.DeadLetter) (string, error) {
	t, err := e.Describe(ctx, d.Table)
	if err != nil {
		return "", err
	}
	key, err := ParseKeyString(t, d.Key)
	if err != nil {
		return "", fmt.Errorf("%w: re-snapshot the table instead (tandem resnapshot %s)", err, d.Table)
	}
	row, err := pg.ReadRowLocked(ctx, e.PG, t, key, retryLockTimeout)
	if err != nil {
		return "", err
	}
	defer row.Release(context.WithoutCancel(ctx)) //nolint:errcheck // a read lock: ending it either way releases it
	if !row.Found {
		return RetryGone, nil
	}
	item, err := t.Item(row.Row)
	if err != nil {
		return "", err
	}
	applied, err := e.Writer.Stream(ctx, t, item, precedence.Position{LSN: uint64(row.LSN)})
	if err != nil {
		return "", err
	}
	if err := row.Release(ctx); err != nil {
		return "", fmt.Errorf("postgres: releasing the row lock on %s (%s): %w", d.Table, d.Key, err)
	}
	if !applied {
		return RetrySuperseded, nil
	}
	return RetryWritten, nil
}

// ParseKeyString reads back a key rendered by schema.Table.KeyString ("id=7",
// "a=1,b=x"): the text of each key column in key order. A value holding ",<next key
// column>=" makes the rendering ambiguous, and a NULL key column (rendered NULL) names
// no row: both are refused, as is a key of no row at all ("*", "?").
func ParseKeyString(t *schema.Table, s string) ([]string, error) {
	if s == "*" || s == "?" || s == "" {
		return nil, fmt.Errorf("the dead letter names no row (key %q)", s)
	}
	out := make([]string, len(t.Key))
	rest := s
	for i, ci := range t.Key {
		prefix := t.Columns[ci].Name + "="
		if !strings.HasPrefix(rest, prefix) {
			return nil, fmt.Errorf("key %q of %s does not name key column %q where expected", s, t.Source(), t.Columns[ci].Name)
		}
		rest = rest[len(prefix):]
		if i == len(t.Key)-1 {
			out[i] = rest
			break
		}
		sep := "," + t.Columns[t.Key[i+1]].Name + "="
		n := strings.Count(rest, sep)
		if n == 0 {
			return nil, fmt.Errorf("key %q of %s lacks key column %q", s, t.Source(), t.Columns[t.Key[i+1]].Name)
		}
		if n > 1 {
			return nil, fmt.Errorf("key %q of %s is ambiguous: a value contains %q", s, t.Source(), sep)
		}
		j := strings.Index(rest, sep)
		out[i], rest = rest[:j], rest[j+1:]
	}
	for i, v := range out {
		if v == "NULL" {
			return nil, fmt.Errorf("key %q of %s has key column %q NULL (or the text NULL): it names no row DynamoDB can hold", s, t.Source(), t.Columns[t.Key[i]].Name)
		}
	}
	return out, nil
}

// RetryResult is one dead letter's retry.
type RetryResult struct {
	Letter  control.DeadLetter
	Outcome string
	Err     error
}

// RetryDeadLetters retries the dead letters of table (all: "") and removes each that
// succeeds. A table left with no dead letter naming a row has its degraded mark cleared
// (control.ClearDegraded: unless a new dead letter marked it meanwhile); cleared lists
// those tables.
func (e *Env) RetryDeadLetters(ctx context.Context, table string) (results []RetryResult, cleared []string, err error) {
	letters, err := e.Control.DeadLetters(ctx, table)
	if err != nil {
		return nil, nil, err
	}
	marks := map[string]string{}
	var order []string
	for _, d := range letters {
		if _, ok := marks[d.Table]; ok {
			continue
		}
		st, _, err := e.Control.Table(ctx, d.Table)
		if err != nil {
			return nil, nil, err
		}
		marks[d.Table] = st.Degraded
		order = append(order, d.Table)
	}
	for _, d := range letters {
		outcome, err := e.RetryDeadLetter(ctx, d)
		if err == nil {
			err = e.Control.RemoveDeadLetter(ctx, d.ID)
		}
		if ctx.Err() != nil {
			return results, nil, ctx.Err()
		}
		results = append(results, RetryResult{Letter: d, Outcome: outcome, Err: err})
	}
	for _, source := range order {
		left, err := e.Control.DeadLetters(ctx, source)
		if err != nil {
			return results, cleared, err
		}
		keyed := 0
		for _, d := range left {
			if d.Key != "*" {
				keyed++
			}
		}
		if keyed > 0 || marks[source] == "" {
			continue
		}
		ok, err := e.Control.ClearDegraded(ctx, source, marks[source])
		if err != nil {
			return results, cleared, err
		}
		if ok {
			cleared = append(cleared, source)
		}
	}
	return results, cleared, nil
}
