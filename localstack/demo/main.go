// Command demo runs Tandem end to end on this machine: a throwaway PostgreSQL with a
// sample schema under a live write load, the moto DynamoDB endpoint, the plan, one
// snapshot per table in parallel (as the state machine's Map runs them) and the streamer
// binary, then validates DynamoDB against PostgreSQL and prints a report.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/localstack/testenv"
	"tandem/localstack/verify"
	"tandem/shared/config"
	"tandem/shared/ddb"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
)

const sampleSchema = `
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text, balance numeric(14,2),
                        vip boolean, created timestamptz DEFAULT now());
CREATE TABLE order_lines (order_id bigint, line int, sku text, qty int, price numeric(10,2),
                          PRIMARY KEY (order_id, line));
CREATE TABLE documents (id int PRIMARY KEY, title text, body text, meta jsonb, tags text[]);
ALTER TABLE documents ALTER body SET STORAGE EXTERNAL;
INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com', (g % 1000) * 1.25, g % 10 = 0,
       '2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, $ROWS) g;
INSERT INTO order_lines SELECT g / 4, g % 4, 'sku-' || (g % 97), g % 9 + 1, (g % 500) * 0.99
       FROM generate_series(1, $ROWS / 2) g;
INSERT INTO documents SELECT g, 'doc ' || g, repeat(md5(g::text), 200),
       jsonb_build_object('version', g, 'labels', jsonb_build_array('a', g)), ARRAY['x', NULL, 'z']
       FROM generate_series(1, 200) g;
ANALYZE;`

func main() {
	rows := flag.Int("rows", 3000, "rows in the large table")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *rows); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, rows int) error {
	began := time.Now()
	step("starting PostgreSQL 15 (wal_level=logical) and the moto DynamoDB endpoint")
	stack, err := testenv.Start()
	if err != nil {
		return err
	}
	defer stack.Stop()
	url, err := stack.PG.CreateDatabase("demo")
	if err != nil {
		return err
	}
	src, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer src.Close()
	if _, err := src.Exec(ctx, strings.ReplaceAll(sampleSchema, "$ROWS", fmt.Sprint(rows))); err != nil {
		return fmt.Errorf("sample schema: %w", err)
	}

	cfg := &config.Config{PostgresURL: url, ChunkSize: 500, TablePrefix: "demo_"}
	cfg.Defaults()
	awsCfg, err := stack.Moto.AWSConfig(ctx)
	if err != nil {
		return err
	}
	pool, err := pg.Open(ctx, url, 40)
	if err != nil {
		return err
	}
	defer pool.Close()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	env := pipeline.FromParts(cfg, pool, ddb.FromConfig(awsCfg), quiet)

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var load sync.WaitGroup
	var writes int64
	load.Go(func() { writes = writeLoad(loadCtx, src, rows) })

	step("plan: publication, slot (before any snapshot read), target tables")
	plan, err := env.Plan(ctx, pipeline.PlanInput{})
	if err != nil {
		return err
	}
	step("starting the streamer (the ECS service) while the snapshots run")
	streamer, err := startStreamer(ctx, stack, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = streamer.Process.Signal(syscall.SIGTERM); _ = streamer.Wait() }()

	step(fmt.Sprintf("snapshotting %d tables in parallel under a live write load", len(plan.Tables)))
	var snaps sync.WaitGroup
	errs := make(chan error, len(plan.Tables))
	for _, t := range plan.Tables {
		snaps.Go(func() {
			if _, err := env.Snapshot(ctx, pipeline.TableInput{Table: t.Table}); err != nil {
				errs <- err
			}
		})
	}
	done := make(chan struct{})
	go func() { snaps.Wait(); close(done) }()
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		printStatus(ctx, env)
	}
	close(errs)
	for err := range errs {
		return err
	}
	for _, t := range plan.Tables {
		if _, err := env.Finalize(ctx, pipeline.TableInput{Table: t.Table}); err != nil {
			return err
		}
	}
	snapshotsDone := time.Since(began)

	step("stopping the write load; waiting until every table is consistent")
	stopLoad()
	load.Wait()
	end, err := pg.CurrentLSN(ctx, pool)
	if err != nil {
		return err
	}
	for {
		st, err := env.Status(ctx, struct{}{})
		if err != nil {
			return err
		}
		all := true
		for _, t := range st.Tables {
			all = all && t.Consistent
		}
		if cp, _ := env.Control.Checkpoint(ctx); all && cp.AppliedLSN >= uint64(end) {
			break
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	consistent := time.Since(began)

	step("validating every DynamoDB table against PostgreSQL")
	ok := true
	total := 0
	for _, t := range plan.Tables {
		tbl, err := env.Describe(ctx, t.Table)
		if err != nil {
			return err
		}
		res, err := verify.Compare(ctx, pool, env.DB, tbl)
		if err != nil {
			return err
		}
		fmt.Println("  " + res.String())
		ok = ok && res.Equal()
		total += res.Rows
	}
	st, _ := env.Status(ctx, struct{}{})
	fmt.Printf("\nReport\n  tables: %d, rows: %d, writes during the run: %d\n  snapshots done after %s, all tables consistent after %s\n  final lag: %d bytes, %.1f s; retained WAL: %d bytes\n",
		len(plan.Tables), total, writes, snapshotsDone.Round(time.Millisecond), consistent.Round(time.Millisecond),
		st.Streamer.LagBytes, st.Streamer.LagSeconds, st.Streamer.RetainedWAL)
	if !ok {
		return fmt.Errorf("DynamoDB differs from PostgreSQL")
	}
	fmt.Println("  result: DynamoDB equals PostgreSQL")
	return nil
}

func step(s string) { fmt.Printf("==> %s\n", s) }

func startStreamer(ctx context.Context, stack *testenv.Env, cfg *config.Config) (*exec.Cmd, error) {
	bin, err := testenv.Binary("tandem/streamer")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(append(os.Environ(), stack.Moto.EnvVars()...), "TANDEM_PG_URL="+cfg.PostgresURL,
		"TANDEM_TABLE_PREFIX="+cfg.TablePrefix, "TANDEM_LEASE_TTL=6s")
	log, err := os.Create(os.TempDir() + "/tandem-demo-streamer.log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, cmd.Start()
}

func printStatus(ctx context.Context, env *pipeline.Env) {
	st, err := env.Status(ctx, struct{}{})
	if err != nil {
		return
	}
	var parts []string
	for _, t := range st.Tables {
		parts = append(parts, fmt.Sprintf("%s %s %d/%d", t.Table, t.State, t.RowsCopied, max(t.RowsEstimate, 0)))
	}
	fmt.Printf("  %s | streamer applied %s, lag %d bytes %.1fs\n", strings.Join(parts, " | "), st.Streamer.AppliedLSN, st.Streamer.LagBytes, st.Streamer.LagSeconds)
}

// writeLoad inserts, updates and deletes customers and order lines until ctx ends.
func writeLoad(ctx context.Context, pool *pgxpool.Pool, rows int) int64 {
	rng := rand.New(rand.NewPCG(1, 2))
	var n int64
	for ctx.Err() == nil {
		id := 1 + rng.IntN(rows*2)
		var err error
		switch rng.IntN(5) {
		case 0:
			_, err = pool.Exec(ctx, `INSERT INTO customers (id, name, balance) VALUES ($1, 'new ' || $1::text, 1) ON CONFLICT (id) DO UPDATE SET name = 'upserted'`, id)
		case 1:
			_, err = pool.Exec(ctx, `DELETE FROM customers WHERE id = $1`, id)
		case 2:
			_, err = pool.Exec(ctx, `UPDATE documents SET title = 'retitled ' || now() WHERE id = $1`, 1+id%200)
		default:
			_, err = pool.Exec(ctx, `UPDATE customers SET balance = balance + 1, vip = NOT coalesce(vip, false) WHERE id = $1`, id)
		}
		if err == nil {
			n++
		}
		time.Sleep(10 * time.Millisecond)
	}
	return n
}
