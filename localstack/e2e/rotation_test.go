package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go/middleware"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/localstack/testenv"
	"tandem/localstack/verify"
	"tandem/shared/config"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/schema"
	"tandem/streamer/stream"
)

// refusedLogin is what PostgreSQL logs for each login it refuses for a wrong password.
const refusedLogin = `password authentication failed for user "rotated"`

// rotation is a PostgreSQL whose role "rotated" logs in by password (scram-sha-256), the
// database secret in moto holding that password, and a count of the secret's reads.
type rotation struct {
	t      *testing.T
	ctx    context.Context
	server *testenv.Postgres
	// admin is the test's own connection (trust, as postgres): it never reads the secret.
	admin  *pgxpool.Pool
	sm     *secretsmanager.Client
	arn    string
	awsCfg aws.Config // counts GetSecretValue calls in reads
	reads  struct {
		sync.Mutex
		at []time.Time
	}
}

func newRotation(t *testing.T, ctx context.Context, password string) *rotation {
	t.Helper()
	server, err := testenv.StartPostgres(testenv.PostgresOptions{HBA: []string{"host all rotated 127.0.0.1/32 scram-sha-256"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Stop() })
	r := &rotation{t: t, ctx: ctx, server: server}
	if r.admin, err = pg.Open(ctx, pg.Source{URL: server.URL}, 4); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.admin.Close)
	r.sql("CREATE ROLE rotated LOGIN SUPERUSER PASSWORD '" + password + "'")
	if r.awsCfg, err = env.Moto.AWSConfig(ctx); err != nil {
		t.Fatal(err)
	}
	r.awsCfg.APIOptions = append(r.awsCfg.APIOptions, func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("countSecretReads",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				if _, ok := in.Parameters.(*secretsmanager.GetSecretValueInput); ok {
					r.reads.Lock()
					r.reads.at = append(r.reads.at, time.Now())
					r.reads.Unlock()
				}
				return next.HandleInitialize(ctx, in)
			}), middleware.Before)
	})
	r.sm = secretsmanager.NewFromConfig(r.awsCfg)
	name := fmt.Sprintf("rotation-%d", time.Now().UnixNano())
	created, err := r.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &name, SecretString: r.secretValue(password)})
	if err != nil {
		t.Fatal(err)
	}
	r.arn = aws.ToString(created.ARN)
	return r
}

func (r *rotation) secretValue(password string) *string {
	b, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": r.server.Port, "username": "rotated", "password": password, "dbname": "postgres"})
	return aws.String(string(b))
}

func (r *rotation) sql(q string) {
	r.t.Helper()
	if _, err := r.admin.Exec(r.ctx, q); err != nil {
		r.t.Fatalf("%s: %v", q, err)
	}
}

// rotate changes the role's password, then the secret, as a rotation Lambda does.
func (r *rotation) rotate(password string) {
	r.t.Helper()
	r.sql("ALTER ROLE rotated PASSWORD '" + password + "'")
	if _, err := r.sm.PutSecretValue(r.ctx, &secretsmanager.PutSecretValueInput{SecretId: &r.arn, SecretString: r.secretValue(password)}); err != nil {
		r.t.Fatal(err)
	}
}

// refusals counts the logins PostgreSQL refused so far.
func (r *rotation) refusals() int {
	r.t.Helper()
	n, err := r.server.CountInLog(refusedLogin)
	if err != nil {
		r.t.Fatal(err)
	}
	return n
}

// secretReads returns when the secret was read, oldest first.
func (r *rotation) secretReads() []time.Time {
	r.reads.Lock()
	defer r.reads.Unlock()
	return append([]time.Time(nil), r.reads.at...)
}

// TestSecretRotation: the database password is rotated (the role's password changed, the
// secret updated) while Tandem runs. A replication connection (a reconnecting streamer),
// a new pool (a restarted handler) and a running pool's next connection each cost
// exactly one refused login, each the first thing to connect after its rotation: the
// refusal has the secret read again. A role whose password changed without the secret
// fails, after reading it again, without showing a password.
func TestSecretRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := newRotation(t, ctx, "first-Pa55word")
	cfg := &config.Config{PostgresSecretARN: r.arn, PostgresSSLMode: "disable"}
	src, err := pipeline.SourceFor(ctx, cfg, r.awsCfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(src.URL, "first-Pa55word") {
		t.Fatalf("the source's URL holds the password: %s", src.URL)
	}
	pool, err := pg.Open(ctx, src, 2)
	if err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	defer pool.Close()

	step := func(what, password string, connect func() error) {
		t.Helper()
		r.rotate(password)
		before, reads := r.refusals(), len(r.secretReads())
		if err := connect(); err != nil {
			t.Fatalf("%s after a rotation: %v", what, err)
		}
		if n := r.refusals() - before; n != 1 {
			t.Fatalf("%s: %d logins refused after the rotation, want 1 (the cached password; then the secret read again)", what, n)
		}
		if n := len(r.secretReads()) - reads; n != 1 {
			t.Fatalf("%s: the secret was read %d times after the rotation, want 1", what, n)
		}
	}
	step("a replication connection", "second-Pa55word", func() error {
		conn, err := pg.ConnectReplication(ctx, src)
		if err == nil {
			conn.Close(ctx)
		}
		return err
	})
	step("a new pool", "third-Pa55word", func() error {
		p, err := pg.Open(ctx, src, 2)
		if err == nil {
			p.Close()
		}
		return err
	})
	step("the running pool", "fourth-Pa55word", func() error {
		pool.Reset() // its connections, logged in with the first password, end
		// Its first new connection is refused, and the query that waited for it fails: a
		// caller's retry (a snapshot's, a streamer's session) gets the next connection.
		if _, err := pool.Exec(ctx, "SELECT 1"); !pg.IsAuthFailure(err) {
			return fmt.Errorf("the first query after the rotation: %v, want the refused login", err)
		}
		_, err := pool.Exec(ctx, "SELECT 1")
		return err
	})

	// The role's password changed and the secret not: the error says so after the
	// secret was read again, and never shows a password.
	r.sql("ALTER ROLE rotated PASSWORD 'fifth-Pa55word'")
	_, err = pg.Open(ctx, src, 1)
	if err == nil {
		t.Fatal("connected with a wrong password")
	}
	if !pg.IsAuthFailure(err) || strings.Contains(err.Error(), "Pa55word") {
		t.Fatalf("error: %v", err)
	}
	t.Logf("wrong password: %v", err)
}

// TestSecretRotationWhileRunning rotates the password in the middle of a snapshot while
// the streamer streams a concurrent workload, and ends every connection of the role
// (pg_terminate_backend): the snapshot (through its retries) and the streamer (through
// its reconnects) go on by themselves, with nothing else reading the secret first. The
// secret must be read again on the first refusal, long before the cached password would
// have aged out (a minute after it was read), the refused logins are bounded by the
// connection attempts under way (the pool's size and the replication connection), and
// DynamoDB converges.
func TestSecretRotationWhileRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newRotation(t, ctx, "first-Pa55word")
	r.sql("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 600) g")
	name := fmt.Sprintf("f%d", fixtures.Add(1))
	cfg := &config.Config{
		PostgresSecretARN: r.arn, PostgresSSLMode: "disable", Slot: "tandem_" + name, ControlTable: name + "_control", TablePrefix: name + "_",
		ChunkSize: 20, SnapshotWriters: 2, StreamWriters: 4,
		StatusInterval:  config.Duration{Duration: 200 * time.Millisecond},
		LeaseTTL:        config.Duration{Duration: 3 * time.Second},
		CatalogInterval: config.Duration{Duration: 500 * time.Millisecond},
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	penv, err := pipeline.Connect(ctx, cfg, r.awsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer penv.PG.Close()
	penv.Log = testLogger()
	maxConns := int(penv.PG.Config().MaxConns)
	if _, err := penv.Plan(ctx, pipeline.PlanInput{}); err != nil {
		t.Fatalf("plan: %v", err)
	}
	table, err := penv.Describe(ctx, "public.items")
	if err != nil {
		t.Fatal(err)
	}

	streamCtx, stopStreamer := context.WithCancel(ctx)
	streamed := make(chan error, 1)
	go func() {
		streamed <- (&stream.Streamer{Env: penv, Owner: "test-" + name}).Run(streamCtx)
	}()
	defer func() {
		stopStreamer()
		if err := <-streamed; err != nil {
			t.Errorf("streamer: %v", err)
		}
	}()

	// A workload through the test's own connection, before, during and after the rotation.
	var updates atomic.Int64
	workCtx, stopWork := context.WithCancel(ctx)
	var work sync.WaitGroup
	work.Go(func() {
		for i := 0; workCtx.Err() == nil; i++ {
			if _, err := r.admin.Exec(workCtx, "UPDATE items SET v = v || '.' WHERE id = $1", 1+(i*37)%600); err == nil {
				updates.Add(1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	defer func() { stopWork(); work.Wait() }()

	// The snapshot stops after its third chunk until the rotation is done.
	mid, rotated := make(chan struct{}), make(chan struct{})
	var chunks atomic.Int32
	copier := penv.Copier()
	copier.AfterRead = func(ctx context.Context, _ *schema.Table, _ *pg.Chunk) {
		if chunks.Add(1) == 3 {
			close(mid)
			select {
			case <-rotated:
			case <-ctx.Done():
			}
		}
	}
	snapshotted := make(chan error, 1)
	go func() {
		res, err := copier.Run(ctx, table, time.Time{})
		if err == nil && !res.Done {
			err = fmt.Errorf("not done: %+v", res)
		}
		snapshotted <- err
	}()
	select {
	case <-mid:
	case err := <-snapshotted:
		t.Fatalf("the snapshot ended before its third chunk: %v", err)
	case <-ctx.Done():
		t.Fatal("the snapshot did not reach its third chunk")
	}

	refusedBefore, readsBefore := r.refusals(), r.secretReads()
	lastRead := readsBefore[len(readsBefore)-1]
	r.rotate("second-Pa55word")
	r.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'rotated'")
	rotatedAt := time.Now()
	close(rotated)

	if err := <-snapshotted; err != nil {
		t.Fatalf("the snapshot after the rotation: %v", err)
	}
	stopWork()
	work.Wait()
	var lsn string
	if err := r.admin.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	target, _ := pglogrepl.ParseLSN(lsn)
	for {
		cp, err := penv.Control.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.AppliedLSN >= uint64(target) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the streamer did not apply up to %s after the rotation (applied %s)", target, pglogrepl.LSN(cp.AppliedLSN))
		}
		time.Sleep(50 * time.Millisecond)
	}
	recovered := time.Since(rotatedAt)
	res, err := verify.Compare(ctx, r.admin, penv.DB, table)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Equal() {
		t.Errorf("DynamoDB differs from PostgreSQL after the rotation:\n%s", res)
	}

	refused := r.refusals() - refusedBefore
	var readsAfter []time.Time
	for _, at := range r.secretReads() {
		if at.After(rotatedAt) {
			readsAfter = append(readsAfter, at)
		}
	}
	t.Logf("after the rotation: %d logins refused, the secret read %d times (first %s after the rotation; the previous read %s before it), %d updates, caught up in %s",
		refused, len(readsAfter), firstAfter(readsAfter, rotatedAt), rotatedAt.Sub(lastRead).Round(time.Millisecond), updates.Load(), recovered.Round(time.Millisecond))
	if refused == 0 {
		t.Fatal("no login was refused: the rotation was not exercised")
	}
	if refused > maxConns+1 {
		t.Errorf("%d logins refused after the rotation, more than the %d connection attempts that can be under way (the pool's %d, the replication connection)", refused, maxConns+1, maxConns)
	}
	// Without a refusal marking the password stale, nothing reads the secret until the
	// cached password is a minute old.
	if len(readsAfter) == 0 || readsAfter[0].Sub(lastRead) >= 50*time.Second {
		t.Errorf("the secret was not read again soon after the first refusal: reads after the rotation %v, the previous one at %v", readsAfter, lastRead)
	}
}

func firstAfter(reads []time.Time, t time.Time) string {
	if len(reads) == 0 {
		return "never"
	}
	return reads[0].Sub(t).Round(time.Millisecond).String()
}
