package pg_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"tandem/localstack/testenv"
	"tandem/shared/pg"
)

// rotating is Credentials that hands out one password until a login with it is refused,
// and then the next one: what a cached secret does after a rotation.
type rotating struct {
	mu        sync.Mutex
	passwords []string // passwords[0] is handed out
	refused   []string
}

func (r *rotating) Password(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.passwords[0], nil
}

func (r *rotating) Refused(pw string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused = append(r.refused, pw)
	if pw == r.passwords[0] && len(r.passwords) > 1 {
		r.passwords = r.passwords[1:]
	}
}

func (r *rotating) refusals() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.refused)
}

// TestRefusedLoginReported: every login the server refuses, of a running pool's new
// connection or of a replication connection, is reported to the Credentials with the
// password it used, so the next attempt can bring a new one; a pool then recovers after
// one refused connection, and ConnectReplication after one refused login.
func TestRefusedLoginReported(t *testing.T) {
	server, err := testenv.StartPostgres(testenv.PostgresOptions{HBA: []string{"host all rotated 127.0.0.1/32 scram-sha-256"}})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pg.Open(ctx, pg.Source{URL: server.URL}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	sql := func(q string) {
		t.Helper()
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	sql("CREATE ROLE rotated LOGIN REPLICATION PASSWORD 'first'")
	creds := &rotating{passwords: []string{"first", "second", "third"}}
	src := pg.Source{URL: fmt.Sprintf("postgres://rotated@127.0.0.1:%d/postgres?sslmode=disable", server.Port), Credentials: creds}
	pool, err := pg.Open(ctx, src, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	// Rotate, and end the pool's connection: its next one is refused once, then made
	// with the next password.
	sql("ALTER ROLE rotated PASSWORD 'second'")
	sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'rotated'")
	var failures []error
	for len(failures) < 5 {
		if _, err := pool.Exec(ctx, "SELECT 1"); err == nil {
			break
		} else {
			failures = append(failures, err)
		}
	}
	if got := creds.refusals(); !slices.Equal(got, []string{"first"}) || len(failures) > 2 {
		t.Fatalf("the running pool: refusals reported %q, queries failed %d times: %v", got, len(failures), failures)
	}
	t.Logf("the running pool recovered after: %v", failures)

	sql("ALTER ROLE rotated PASSWORD 'third'")
	conn, err := pg.ConnectReplication(ctx, src)
	if err != nil {
		t.Fatalf("replication connection after a rotation: %v", err)
	}
	conn.Close(ctx)
	if got := creds.refusals(); !slices.Equal(got, []string{"first", "second"}) {
		t.Fatalf("refusals reported %q, want first and second", got)
	}
}
