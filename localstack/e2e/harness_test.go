package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/localstack/testenv"
	"tandem/localstack/verify"
	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/ddb"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/precedence"
	"tandem/shared/schema"
	"tandem/streamer/stream"
)

var (
	env      *testenv.Env
	fixtures atomic.Int64
)

func TestMain(m *testing.M) {
	var err error
	env, err = testenv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cannot start the test stack:", err)
		os.Exit(1)
	}
	code := m.Run()
	env.Stop()
	os.Exit(code)
}

// fixture is one test's world: its own database, slot, control table and target tables.
type fixture struct {
	t    testing.TB
	ctx  context.Context
	name string
	url  string
	cfg  *config.Config
	env  *pipeline.Env
	// src is a plain pool for the test's own SQL (workload, checks).
	src *pgxpool.Pool
	db  *dynamodb.Client
}

func newFixture(t testing.TB, ddl string, configure func(*config.Config)) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	name := fmt.Sprintf("f%d", fixtures.Add(1))
	url, err := env.PG.CreateDatabase(name)
	if err != nil {
		t.Fatalf("creating database: %v", err)
	}
	src, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	if ddl != "" {
		if _, err := src.Exec(ctx, ddl); err != nil {
			t.Fatalf("schema: %v", err)
		}
	}
	cfg := &config.Config{
		PostgresURL: url, Slot: "tandem_" + name, ControlTable: name + "_control", TablePrefix: name + "_",
		ChunkSize: 20, SnapshotWriters: 8, StreamWriters: 16,
		StatusInterval:  config.Duration{Duration: 200 * time.Millisecond},
		LeaseTTL:        config.Duration{Duration: 3 * time.Second},
		CatalogInterval: config.Duration{Duration: 500 * time.Millisecond},
	}
	if configure != nil {
		configure(cfg)
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	awsCfg, err := env.Moto.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := ddb.FromConfig(awsCfg)
	pool, err := pg.Open(ctx, pg.Source{URL: url}, 24)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	// Slots are cluster-wide and hold WAL: drop this test's slot last.
	t.Cleanup(func() {
		for range 50 {
			_, err := src.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", cfg.Slot)
			if err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	return &fixture{t: t, ctx: ctx, name: name, url: url, cfg: cfg, src: src, db: db,
		env: pipeline.FromParts(cfg, pool, db, testLogger())}
}

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("TANDEM_TEST_LOG") == "info" {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.src.Exec(f.ctx, sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

func (f *fixture) plan() pipeline.PlanOutput {
	f.t.Helper()
	out, err := f.env.Plan(f.ctx, pipeline.PlanInput{})
	if err != nil {
		f.t.Fatalf("plan: %v", err)
	}
	return out
}

// startStreamer runs a streamer in this process until the returned stop is called.
func (f *fixture) startStreamer(hook func(context.Context, string, precedence.Position)) (stop func()) {
	ctx, cancel := context.WithCancel(f.ctx)
	s := &stream.Streamer{Env: f.env, Owner: "test-" + f.name, BeforeApply: hook}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("streamer: %v", err)
			}
		})
	}
	f.t.Cleanup(stop)
	return stop
}

func (f *fixture) table(source string) *schema.Table {
	f.t.Helper()
	t, err := f.env.Describe(f.ctx, source)
	if err != nil {
		f.t.Fatal(err)
	}
	return t
}

// snapshot copies one table to the end.
func (f *fixture) snapshot(source string) {
	f.t.Helper()
	res, err := f.env.Copier().Run(f.ctx, f.table(source), time.Time{})
	if err != nil {
		f.t.Fatalf("snapshot of %s: %v", source, err)
	}
	if !res.Done {
		f.t.Fatalf("snapshot of %s not done: %+v", source, res)
	}
}

func (f *fixture) currentLSN() pglogrepl.LSN {
	f.t.Helper()
	lsn, err := pg.CurrentLSN(f.ctx, f.src)
	if err != nil {
		f.t.Fatal(err)
	}
	return lsn
}

// waitApplied waits until the streamer's checkpoint says everything up to lsn is durable.
func (f *fixture) waitApplied(lsn pglogrepl.LSN) {
	f.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		cp, err := f.env.Control.Checkpoint(f.ctx)
		if err != nil {
			f.t.Fatal(err)
		}
		if cp.AppliedLSN >= uint64(lsn) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("streamer did not apply up to %s within 90s (applied %s)", lsn, pglogrepl.LSN(cp.AppliedLSN))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCaughtUp waits until the streamer applied past pg_current_wal_lsn().
func (f *fixture) waitCaughtUp() { f.t.Helper(); f.waitApplied(f.currentLSN()) }

// assertConverged checks DynamoDB equals PostgreSQL for each table: every live row,
// every attribute, and no extra live item.
func (f *fixture) assertConverged(sources ...string) {
	f.t.Helper()
	for _, source := range sources {
		if diff := f.diff(source); diff != "" {
			f.t.Errorf("%s: DynamoDB differs from PostgreSQL:\n%s", source, diff)
		}
	}
}

func (f *fixture) diff(source string) string {
	res, err := verify.Compare(f.ctx, f.env.PG, f.db, f.table(source))
	if err != nil {
		f.t.Fatal(err)
	}
	if res.Equal() {
		return ""
	}
	return res.String()
}

func (f *fixture) scan(table string) []map[string]types.AttributeValue {
	f.t.Helper()
	var items []map[string]types.AttributeValue
	p := dynamodb.NewScanPaginator(f.db, &dynamodb.ScanInput{TableName: &table, ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(f.ctx)
		if err != nil {
			f.t.Fatalf("scanning %s: %v", table, err)
		}
		items = append(items, page.Items...)
	}
	return items
}

// item reads one target item by key values (as attributes).
func (f *fixture) item(source string, key map[string]types.AttributeValue) map[string]types.AttributeValue {
	f.t.Helper()
	out, err := f.db.GetItem(f.ctx, &dynamodb.GetItemInput{TableName: aws.String(f.table(source).Target), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		f.t.Fatal(err)
	}
	return out.Item
}

func intKey(name string, v int) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{name: &types.AttributeValueMemberN{Value: fmt.Sprint(v)}}
}

// gate blocks streamed writes while closed: tests use it to make a snapshot write land
// before an older stream write.
type gate struct {
	mu     sync.Mutex
	open   chan struct{}
	closed bool
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) hook(ctx context.Context, _ string, _ precedence.Position) {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		close(g.open)
		g.closed = true
	}
}

var errTimeout = errors.New("timeout")

// eventually polls cond until it holds or 60 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, errTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// progress is a table's snapshot progress: its state, and the rows and chunks its ranges
// copied, with the cursor of its first range.
func (f *fixture) progress(source string) (st control.TableState, rows, chunks int64, cursor []string) {
	f.t.Helper()
	st, _, err := f.env.Control.Table(f.ctx, source)
	if err != nil {
		f.t.Fatalf("reading the control table: %v", err)
	}
	if st.State == control.Done || st.SplitEpoch != st.Epoch {
		return st, st.RowsCopied, st.Chunks, nil
	}
	ranges, err := f.env.Control.Ranges(f.ctx, st)
	if err != nil {
		f.t.Fatalf("reading the ranges of %s: %v", source, err)
	}
	rows, chunks, _ = control.RangeProgress(ranges)
	return st, rows, chunks, ranges[0].Cursor
}
