// Command demo runs Tandem end to end on this machine: a throwaway PostgreSQL with a
// sample schema under a live write load, the local AWS stand-in with template.yaml
// deployed into it, the streamer run from its ECS task definition, and an execution of
// the snapshot state machine; then it validates DynamoDB against PostgreSQL and prints a
// report.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	awsv2 "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/localstack/standin"
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
	step("starting PostgreSQL 15 (wal_level=logical) with a sample schema")
	pgc, err := testenv.StartPostgres(testenv.PostgresOptions{})
	if err != nil {
		return err
	}
	defer pgc.Stop()
	url, err := pgc.CreateDatabase("demo")
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
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var load sync.WaitGroup
	var writes int64
	load.Go(func() { writes = writeLoad(loadCtx, src, rows) })

	step("starting the local AWS stand-in (moto + Lambda runtime gateway) on " + standinAddr())
	aws, err := standin.Start(standin.Options{Addr: standinAddr()})
	if err != nil {
		return err
	}
	defer aws.Stop()
	step("deploying template.yaml (SAM transform, CloudFormation) into it")
	root, err := standin.ModuleRoot()
	if err != nil {
		return err
	}
	stack, err := aws.Deploy(ctx, standin.DeployOptions{Stack: "tandem-demo", Template: filepath.Join(root, "template.yaml"),
		PostgresURL: url, Params: map[string]string{"ChunkSize": "500", "TablePrefix": "demo-",
			// Small ranges, so that even the sample tables are copied by several workers each.
			"RangeRows": "1000", "MaxConcurrency": "6"}})
	if err != nil {
		return err
	}
	step("starting the streamer with its ECS task definition's environment")
	streamer, err := aws.StartStreamer(ctx, stack)
	if err != nil {
		return err
	}
	defer streamer.Stop()

	step("starting the snapshot state machine while the write load runs")
	arn, err := aws.StartExecution(ctx, stack, "demo", "{}")
	if err != nil {
		return err
	}
	pool, err := pg.Open(ctx, pg.Source{URL: url}, 8)
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg := &config.Config{PostgresURL: url, ControlTable: stack.Outputs["ControlTableName"], TablePrefix: "demo-"}
	cfg.Defaults()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	env := pipeline.FromParts(cfg, pool, ddb.FromConfig(aws.AWSConfig()), quiet)
	states := sfn.NewFromConfig(aws.AWSConfig())
	var exec *sfn.DescribeExecutionOutput
	for {
		if exec, err = states.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: &arn}); err != nil {
			return err
		}
		printStatus(ctx, env, string(exec.Status))
		if exec.Status != sfntypes.ExecutionStatusRunning {
			break
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if exec.Status != sfntypes.ExecutionStatusSucceeded {
		return fmt.Errorf("execution %s: %s: %s", exec.Status, awsv2.ToString(exec.Error), awsv2.ToString(exec.Cause))
	}
	snapshotsDone := time.Since(began)

	step("stopping the write load; waiting until every table is consistent")
	stopLoad()
	load.Wait()
	end, err := pg.CurrentLSN(ctx, pool)
	if err != nil {
		return err
	}
	timeout := time.After(5 * time.Minute)
	for {
		st, err := env.Status(ctx, pipeline.StatusInput{})
		if err != nil {
			return err
		}
		all := len(st.Tables) > 0
		for _, t := range st.Tables {
			all = all && t.Consistent
		}
		if cp, _ := env.Control.Checkpoint(ctx); all && cp.AppliedLSN >= uint64(end) {
			break
		}
		select {
		case <-time.After(500 * time.Millisecond):
		case <-streamer.Done():
			return fmt.Errorf("the streamer exited; its log:\n%s", logTail(streamer.Log))
		case <-timeout:
			return fmt.Errorf("tables not consistent within 5 minutes; the streamer's log:\n%s", logTail(streamer.Log))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	consistent := time.Since(began)

	step("validating every DynamoDB table against PostgreSQL")
	st, err := env.Status(ctx, pipeline.StatusInput{})
	if err != nil {
		return err
	}
	ok, total := true, 0
	for _, t := range st.Tables {
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
	st, _ = env.Status(ctx, pipeline.StatusInput{})
	fmt.Printf("\nReport\n  tables: %d, rows: %d, writes during the run: %d\n  execution %s after %s, all tables consistent after %s\n  final lag: %d bytes, %.1f s; retained WAL: %d bytes\n",
		len(st.Tables), total, writes, exec.Status, snapshotsDone.Round(time.Millisecond), consistent.Round(time.Millisecond),
		st.Streamer.LagBytes, st.Streamer.LagSeconds, st.Streamer.RetainedWAL)
	if !ok {
		return fmt.Errorf("DynamoDB differs from PostgreSQL")
	}
	fmt.Println("  result: DynamoDB equals PostgreSQL")
	return nil
}

// standinAddr is LocalStack's port unless something already listens there.
func standinAddr() string {
	if ln, err := net.Listen("tcp", "127.0.0.1:4566"); err == nil {
		ln.Close()
		return "127.0.0.1:4566"
	}
	return "127.0.0.1:0"
}

func step(s string) { fmt.Printf("==> %s\n", s) }

func printStatus(ctx context.Context, env *pipeline.Env, execution string) {
	st, err := env.Status(ctx, pipeline.StatusInput{})
	if err != nil {
		return
	}
	var parts []string
	for _, t := range st.Tables {
		part := fmt.Sprintf("%s %s %d/%d", t.Table, t.State, t.RowsCopied, max(estimate(t), 0))
		if t.Ranges > 1 {
			part += fmt.Sprintf(" (%d/%d ranges)", t.RangesDone, t.Ranges)
		}
		parts = append(parts, part)
	}
	fmt.Printf("  execution %s | %s | streamer applied %s, lag %d bytes %.1fs\n", execution, strings.Join(parts, " | "), st.Streamer.AppliedLSN, st.Streamer.LagBytes, st.Streamer.LagSeconds)
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

// estimate is the table's row estimate, -1 when PostgreSQL has none.
func estimate(t pipeline.TableStatus) int64 {
	if t.RowsEstimate == nil {
		return -1
	}
	return *t.RowsEstimate
}

// logTail is the end of a log of the stand-in's directory, quoted in an error because
// the stand-in removes its temporary directory, logs included, when the demo returns.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}
