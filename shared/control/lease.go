package control

import (
	"context"
	"time"
)

// Lease is the streamer lease as the control table holds it: who consumes the slot and
// until when the lease protects it (a released lease has expired).
type Lease struct {
	Owner     string
	ExpiresAt time.Time
}

// Held reports whether the lease was unexpired at now.
func (l Lease) Held(now time.Time) bool { return l.Owner != "" && now.Before(l.ExpiresAt) }

// ReadLease reads the streamer lease; found is false when no streamer ever took it.
func (s *Store) ReadLease(ctx context.Context) (l Lease, found bool, err error) {
	var cur lease
	if found, err = s.get(ctx, leaseID, &cur); err != nil || !found {
		return Lease{}, found, err
	}
	return Lease{Owner: cur.Owner, ExpiresAt: time.Unix(cur.ExpiresAt, 0)}, true, nil
}
