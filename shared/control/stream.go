package control

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"

	"tandem/shared/ddb"
)

const (
	checkpointID = "stream#checkpoint"
	leaseID      = "stream#lease"
	slotID       = "stream#slot"
)

// Checkpoint is what the streamer reports about itself (README "Reading its status").
type Checkpoint struct {
	ID    string `dynamodbav:"id"`
	Owner string `dynamodbav:"owner"`
	// AppliedLSN: every change committed before it is durable in DynamoDB.
	AppliedLSN uint64 `dynamodbav:"applied_lsn"`
	// ConfirmedLSN: the flush LSN last sent to PostgreSQL.
	ConfirmedLSN uint64 `dynamodbav:"confirmed_lsn"`
	// ServerLSN: the server's WAL end as last reported by it.
	ServerLSN     uint64  `dynamodbav:"server_lsn"`
	LagBytes      uint64  `dynamodbav:"lag_bytes"`
	LagSeconds    float64 `dynamodbav:"lag_seconds"`
	RetainedBytes uint64  `dynamodbav:"retained_wal_bytes"`
	ChangesPerSec float64 `dynamodbav:"changes_per_second"`
	Changes       int64   `dynamodbav:"changes_applied"`
	Lost          int64   `dynamodbav:"writes_lost_to_precedence"`
	DeadLetters   int64   `dynamodbav:"dead_letters"`
	UpdatedAt     string  `dynamodbav:"updated_at"`
}

// SaveCheckpoint stores the streamer's progress.
func (s *Store) SaveCheckpoint(ctx context.Context, c Checkpoint) error {
	c.ID = checkpointID
	c.UpdatedAt = s.now()
	_, err := s.put(ctx, c, nil)
	return err
}

// Checkpoint reads the streamer's progress (zero when it never ran).
func (s *Store) Checkpoint(ctx context.Context) (Checkpoint, error) {
	var c Checkpoint
	_, err := s.get(ctx, checkpointID, &c)
	return c, err
}

type lease struct {
	ID        string `dynamodbav:"id"`
	Owner     string `dynamodbav:"owner"`
	ExpiresAt int64  `dynamodbav:"expires_at"`
}

// ErrLeaseHeld means another streamer owns the slot.
type ErrLeaseHeld struct {
	Owner   string
	Expires time.Time
}

func (e *ErrLeaseHeld) Error() string {
	return fmt.Sprintf("another streamer (%s) holds the lease until %s: only one streamer may consume the slot", e.Owner, e.Expires.UTC().Format(time.RFC3339))
}

// AcquireLease takes or renews the streamer lease for ttl. It fails with *ErrLeaseHeld
// while another owner's lease is unexpired.
func (s *Store) AcquireLease(ctx context.Context, owner string, ttl time.Duration) error {
	now := s.Now()
	cond := expression.AttributeNotExists(ddb.Name("id")).
		Or(ddb.Name("owner").Equal(expression.Value(owner))).
		Or(ddb.Name("expires_at").LessThan(expression.Value(now.Unix())))
	ok, err := s.put(ctx, lease{ID: leaseID, Owner: owner, ExpiresAt: now.Add(ttl).Unix()}, &cond)
	if err != nil || ok {
		return err
	}
	var cur lease
	if _, err := s.get(ctx, leaseID, &cur); err != nil {
		return err
	}
	return &ErrLeaseHeld{Owner: cur.Owner, Expires: time.Unix(cur.ExpiresAt, 0)}
}

// ReleaseLease gives the lease up so a successor need not wait for it to expire.
func (s *Store) ReleaseLease(ctx context.Context, owner string) error {
	upd := expression.Set(ddb.Name("expires_at"), expression.Value(0))
	_, err := s.update(ctx, leaseID, upd, condPtr(ddb.Name("owner").Equal(expression.Value(owner))))
	return err
}

// SlotRecord remembers the slot's start LSN A (README "The contract").
type SlotRecord struct {
	ID       string `dynamodbav:"id"`
	Slot     string `dynamodbav:"slot"`
	StartLSN uint64 `dynamodbav:"start_lsn"`
	Created  string `dynamodbav:"created_at"`
}

// RecordSlot stores A the first time the slot is created.
func (s *Store) RecordSlot(ctx context.Context, slot string, start uint64) error {
	_, err := s.put(ctx, SlotRecord{ID: slotID, Slot: slot, StartLSN: start, Created: s.now()}, nil)
	return err
}

// Slot reads the slot record; found is false before the first plan.
func (s *Store) Slot(ctx context.Context) (r SlotRecord, found bool, err error) {
	found, err = s.get(ctx, slotID, &r)
	return r, found, err
}
