package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pglogrepl"

	"tandem/localstack/testenv"
	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/ddb"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/schema"
	"tandem/streamer/stream"
)

// faultPlan is how hard a fault run hits Tandem.
type faultPlan struct {
	rates testenv.FaultRates
	// outages is how many total DynamoDB outages happen, each lasting outage.
	outages int
	outage  time.Duration
	// terminations is how many times every Tandem backend in PostgreSQL is terminated
	// (pg_terminate_backend) during the run.
	terminations int
	// killStreamer runs the real streamer binary and SIGKILLs it at every outage.
	killStreamer bool
	rows         int
	// pace is the pause between two steps of each of the two workload workers.
	pace time.Duration
}

// moderateFaults is the make-test run: moderate rates and one 20 s outage.
var moderateFaults = faultPlan{
	rates: testenv.FaultRates{Throttle: 0.10, ServerError: 0.03, Drop: 0.05, Reset: 0.01,
		Latency: 0.01, LatencySpike: 2 * time.Second},
	outages: 1, outage: 20 * time.Second, terminations: 2, rows: 60, pace: 300 * time.Millisecond,
}

// soakFaults is make soak: higher rates, longer and more outages, SIGKILLs.
var soakFaults = faultPlan{
	rates: testenv.FaultRates{Throttle: 0.15, ServerError: 0.05, Drop: 0.08, Reset: 0.02,
		Latency: 0.02, LatencySpike: 2 * time.Second},
	outages: 3, outage: 60 * time.Second, terminations: 6, killStreamer: true, rows: 300, pace: 100 * time.Millisecond,
}

const markersDDL = `CREATE TABLE markers (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());`

// TestConvergenceThroughFaults runs the randomized workload while every table is
// snapshotted and streamed through a proxy that throttles, fails, resets, delays and drops
// DynamoDB responses after the write, with a total outage mid-run and PostgreSQL backends
// terminated under the copier and the streamer. It asserts that
//   - every table converges;
//   - the slot's confirmed_flush_lsn never passes a change that is not in DynamoDB yet
//     (sampled all along, against marker rows whose commit LSN the test knows);
//   - the snapshot's progress counters (chunks, rows_copied) equal what was read, although
//     responses to those very writes were dropped and retried;
//   - the streamer and the copiers waited the outage out instead of failing.
//
// TANDEM_SOAK=1 (make soak) runs it harder and longer, with SIGKILLs of the streamer.
func TestConvergenceThroughFaults(t *testing.T) {
	plan := moderateFaults
	if os.Getenv("TANDEM_SOAK") != "" {
		plan = soakFaults
	}
	for _, seed := range seeds(t, 1) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runThroughFaults(t, seed, plan) })
	}
}

func runThroughFaults(t *testing.T, seed uint64, plan faultPlan) {
	began := time.Now()
	f := newFixture(t, mixedSchema+markersDDL, func(c *config.Config) {
		// Longer than a renewal under these fault rates, shorter than the outage: the
		// lease lapses during the outage and the streamer must take it again.
		c.LeaseTTL = config.Duration{Duration: 8 * time.Second}
	})
	proxy, err := testenv.StartFaultProxy(env.Moto.Endpoint, seed, plan.rates)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	// Tandem talks to DynamoDB through the proxy; the test's own checks (f.env, f.db)
	// do not.
	pool, err := pg.Open(f.ctx, pg.Source{URL: f.url}, 24)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	penv := pipeline.FromParts(f.cfg, pool, ddb.FromConfig(proxy.AWSConfig()), testLogger())
	tables := append(append([]string{}, mixedTables...), "public.markers")

	if err := newWorkload(seed, f.src, plan.rows).seedRows(f.ctx, plan.rows); err != nil {
		t.Fatal(err)
	}
	if _, err := penv.Plan(f.ctx, pipeline.PlanInput{}); err != nil {
		t.Fatalf("plan through the faults: %v", err)
	}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()

	// The streamer: in-process, or the real binary SIGKILLed at every outage (soak).
	var streamerErr atomic.Value
	streamerDone := make(chan struct{})
	var restartStreamer func()
	if plan.killStreamer {
		var mu sync.Mutex
		var cmd *exec.Cmd
		var out *bytes.Buffer
		start := func() {
			mu.Lock()
			defer mu.Unlock()
			cmd, out = f.processVia(proxy, "tandem/streamer")
		}
		start()
		restartStreamer = func() {
			mu.Lock()
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != -1 {
				t.Errorf("streamer had exited by itself (status %d) before it was killed:\n%s", code, out)
			}
			mu.Unlock()
			start()
		}
		defer func() {
			mu.Lock()
			defer mu.Unlock()
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Errorf("streamer after SIGTERM: %v\n%s", err, out)
			}
		}()
	} else {
		sctx, stop := context.WithCancel(f.ctx)
		go func() {
			defer close(streamerDone)
			if err := (&stream.Streamer{Env: penv, Owner: "faults-" + f.name}).Run(sctx); err != nil {
				streamerErr.Store(err)
			}
		}()
		defer func() {
			stop()
			<-streamerDone
			if err, _ := streamerErr.Load().(error); err != nil {
				t.Errorf("streamer: %v", err)
			}
		}()
	}

	// Markers: rows whose commit LSN is bounded above by pg_current_wal_lsn() read right
	// after the commit. Once confirmed_flush_lsn reaches that bound, the row must be in
	// DynamoDB.
	type marker struct {
		id  int
		lsn pglogrepl.LSN
	}
	var markersMu sync.Mutex
	var markers []marker
	markerTarget := f.table("public.markers").Target
	var bg sync.WaitGroup
	markersCtx, stopMarkers := context.WithCancel(ctx)
	defer stopMarkers()
	bg.Go(func() {
		ctx := markersCtx
		for i := 1; ctx.Err() == nil; i++ {
			if _, err := f.src.Exec(ctx, "INSERT INTO markers (id) VALUES ($1)", i); err != nil {
				return
			}
			lsn, err := pg.CurrentLSN(ctx, f.src)
			if err != nil {
				return
			}
			markersMu.Lock()
			markers = append(markers, marker{i, lsn})
			markersMu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	})
	var samples, checked, violations atomic.Int64
	var firstViolation atomic.Value
	sample := func(ctx context.Context) {
		var text string
		if err := f.src.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn::text, '0/0') FROM pg_replication_slots WHERE slot_name = $1", f.cfg.Slot).Scan(&text); err != nil {
			return
		}
		confirmed, err := pglogrepl.ParseLSN(text)
		if err != nil {
			t.Errorf("confirmed_flush_lsn %q: %v", text, err)
			return
		}
		samples.Add(1)
		markersMu.Lock()
		due := append([]marker{}, markers...)
		markersMu.Unlock()
		for _, m := range due[checked.Load():] {
			if m.lsn > confirmed {
				break
			}
			out, err := f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &markerTarget, Key: intKey("id", m.id), ConsistentRead: aws.Bool(true)})
			if err != nil {
				return
			}
			if out.Item == nil {
				violations.Add(1)
				firstViolation.CompareAndSwap(nil, fmt.Sprintf("marker %d committed by %s is not in DynamoDB, yet confirmed_flush_lsn is %s", m.id, m.lsn, confirmed))
			}
			checked.Add(1)
		}
	}
	bg.Go(func() {
		for ctx.Err() == nil {
			sample(ctx)
			time.Sleep(100 * time.Millisecond)
		}
	})

	// Progress, for a run that is slow to tell why.
	bg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(15 * time.Second):
			}
			var states []string
			for _, source := range tables {
				st, _, _ := f.env.Control.Table(f.ctx, source)
				ranges, _ := f.env.Control.Ranges(f.ctx, st)
				_, chunks, _ := control.RangeProgress(ranges)
				states = append(states, fmt.Sprintf("%s=%s/%d", source, st.State, max(st.Chunks, chunks)))
			}
			cp, _ := f.env.Control.Checkpoint(f.ctx)
			lsn, _ := pg.CurrentLSN(f.ctx, f.src)
			t.Logf("%s: applied %s of %s, %v; %s", time.Since(began).Round(time.Second), pglogrepl.LSN(cp.AppliedLSN), lsn, states, proxy.Counts())
		}
	})

	// Snapshots through the proxy, recording each chunk read from the stored cursor so the
	// counters can be checked against what was actually read.
	type read struct {
		rows int
		last string
	}
	var readsMu sync.Mutex
	reads := map[string]map[string]read{}
	var chunksRead atomic.Int64
	outageNow := make(chan struct{})
	var outageOnce sync.Once
	var snapshots sync.WaitGroup
	for _, source := range tables {
		reads[source] = map[string]read{}
		c := penv.Copier()
		c.AfterRead = func(_ context.Context, _ *schema.Table, ch *pg.Chunk) {
			st, _, err := f.env.Control.Table(f.ctx, source)
			if err != nil {
				t.Errorf("reading the control table directly: %v", err)
			}
			r, err := f.env.Control.Range(f.ctx, st, 0)
			if err != nil {
				t.Errorf("reading the control table directly: %v", err)
			}
			readsMu.Lock()
			reads[source][strings.Join(r.Cursor, "\x00")] = read{len(ch.Rows), strings.Join(ch.LastKey, "\x00")}
			readsMu.Unlock()
			if chunksRead.Add(1) == 8 {
				outageOnce.Do(func() { close(outageNow) }) // the outage hits snapshots mid-table
			}
			if source != "public.markers" { // markers grow all along: that copier must outpace them
				time.Sleep(100 * time.Millisecond)
			}
		}
		tbl := f.table(source)
		snapshots.Go(func() {
			res, err := c.Run(ctx, tbl, time.Time{})
			if err != nil || !res.Done {
				t.Errorf("snapshot of %s through the faults: %+v %v", source, res, err)
			}
		})
	}

	// PostgreSQL backends of Tandem (copier, streamer queries; not the replication
	// connection) terminated now and then.
	var terminated atomic.Int64
	terminate := func() {
		var n int64
		_ = f.src.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = $1 AND application_name = 'tandem' AND backend_type = 'client backend'`, f.name).Scan(&n)
		terminated.Add(n)
	}

	// The workload runs, paced, until the outages are over; the outages start once
	// snapshots are under way.
	var opsMu sync.Mutex
	ops := map[string]int{}
	var outagesOver atomic.Bool
	var workers sync.WaitGroup
	for i := range 2 {
		w := newWorkload(seed*1000+uint64(i)+1, f.src, plan.rows)
		workers.Go(func() {
			defer func() {
				opsMu.Lock()
				for k, v := range w.ops {
					ops[k] += v
				}
				opsMu.Unlock()
			}()
			for !outagesOver.Load() && ctx.Err() == nil {
				if err := w.step(ctx); err != nil && ctx.Err() == nil && !retryable(err) {
					t.Errorf("workload (seed %d): %v", seed, err)
					return
				}
				time.Sleep(plan.pace)
			}
		})
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	bg.Go(func() {
		rng := rand.New(rand.NewPCG(seed, 5))
		for range plan.terminations {
			select {
			case <-time.After(time.Duration(2000+rng.IntN(3000)) * time.Millisecond):
			case <-ctx.Done():
				return
			}
			terminate()
		}
	})
	select {
	case <-outageNow:
	case <-time.After(30 * time.Second):
	}
	var outageTotal time.Duration
	for i := range plan.outages {
		if i > 0 {
			time.Sleep(time.Duration(5+rng.IntN(10)) * time.Second)
		}
		proxy.SetOutage(true)
		at := time.Now()
		if restartStreamer != nil {
			restartStreamer() // a streamer that starts during the outage must wait
		}
		time.Sleep(time.Until(at.Add(plan.outage)))
		proxy.SetOutage(false)
		outageTotal += time.Since(at)
		if restartStreamer != nil && rng.IntN(2) == 0 {
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			restartStreamer()
		}
	}
	outageEnded := time.Now()
	terminate()
	f.exec("TRUNCATE order_lines")
	outagesOver.Store(true)
	workers.Wait()
	stopMarkers() // so that the markers' snapshot can finish
	snapshots.Wait()
	workEnded := time.Now()

	// Convergence, with the faults still on.
	target := f.currentLSN()
	deadline := time.Now().Add(4 * time.Minute)
	for {
		cp, err := f.env.Control.Checkpoint(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.AppliedLSN >= uint64(target) {
			break
		}
		select {
		case <-streamerDone:
			t.Fatalf("the streamer stopped: %v", streamerErr.Load())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("streamer did not apply up to %s within 4 min through the faults (applied %s)", target, pglogrepl.LSN(cp.AppliedLSN))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The TRUNCATE's removal runs in the background: order_lines is consistent only once
	// it is done (it shows truncating until then).
	waitedFrom := time.Now()
	for f.control("public.order_lines").TruncatingLSN != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the TRUNCATE of order_lines was not removed within 4 min through the faults")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the TRUNCATE's removal ended %s after the stream caught up", time.Since(waitedFrom).Round(time.Millisecond))
	caughtUp := time.Now()
	cancel()
	bg.Wait()
	sample(f.ctx) // once more, now that everything is applied
	f.assertConverged(tables...)

	if n := violations.Load(); n > 0 {
		t.Errorf("confirmed_flush_lsn passed %d changes not yet in DynamoDB; first: %v", n, firstViolation.Load())
	}
	if checked.Load() == 0 {
		t.Errorf("no marker was ever checked against confirmed_flush_lsn (%d samples)", samples.Load())
	}

	// Progress counters against what was read: follow the chain of chunks from the first
	// key, each read from the cursor the previous one stored.
	for _, source := range tables {
		if source == "public.order_lines" {
			continue // truncated: its snapshot was fenced and completed by the TRUNCATE
		}
		st, _, err := f.env.Control.Table(f.ctx, source)
		if err != nil {
			t.Fatal(err)
		}
		var chunks, rows int64
		for cur, seen := "", map[string]bool{}; !seen[cur]; {
			seen[cur] = true
			r, ok := reads[source][cur]
			if !ok {
				break
			}
			chunks++
			rows += int64(r.rows)
			cur = r.last
		}
		if st.Chunks != chunks || st.RowsCopied != rows {
			t.Errorf("%s: control table says %d chunks and %d rows copied; %d chunks and %d rows were read", source, st.Chunks, st.RowsCopied, chunks, rows)
		}
	}

	t.Logf("seed %d: injected %s", seed, proxy.Counts())
	t.Logf("seed %d: %d outage(s) totalling %s, %d PostgreSQL backends terminated, streamer killed: %v; operations %v",
		seed, plan.outages, outageTotal.Round(time.Millisecond), terminated.Load(), plan.killStreamer, ops)
	t.Logf("seed %d: caught up %s after the workload and snapshots ended (%s after the last outage), whole run %s; %d confirmed_flush_lsn samples, %d markers checked durable",
		seed, caughtUp.Sub(workEnded).Round(time.Millisecond), caughtUp.Sub(outageEnded).Round(time.Millisecond),
		time.Since(began).Round(time.Millisecond), samples.Load(), checked.Load())
}

// processVia starts a binary of this module like process does, talking to DynamoDB
// through the proxy.
func (f *fixture) processVia(p *testenv.FaultProxy, pkg string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	f.t.Helper()
	bin, err := testenv.Binary(pkg)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(f.processEnv(), p.EnvVars()...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, &out
}

// TestStreamerStartsDuringOutage starts a streamer while DynamoDB answers nothing but
// 503: it waits (it used to exit with status 1 from EnsureTable), and once DynamoDB is
// back it takes the lease and applies what was committed meanwhile. A second outage,
// longer than the lease, makes the running streamer stop consuming and take the lease
// again rather than exit. The client gives up after two attempts, so the outages outlast
// the SDK's retries within seconds instead of minutes.
func TestStreamerStartsDuringOutage(t *testing.T) {
	f := newFixture(t, itemsDDL, nil)
	f.plan()
	f.snapshot("public.items")
	proxy, err := testenv.StartFaultProxy(env.Moto.Endpoint, 1, testenv.FaultRates{})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	impatient := dynamodb.NewFromConfig(proxy.AWSConfig(), func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = 2; so.RateLimiter = ratelimit.None })
	})
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, os.Stderr), &slog.HandlerOptions{Level: slog.LevelWarn}))
	penv := pipeline.FromParts(f.cfg, f.env.PG, impatient, log)

	proxy.SetOutage(true)
	ctx, stop := context.WithCancel(f.ctx)
	exited := make(chan error, 1)
	go func() { exited <- (&stream.Streamer{Env: penv, Owner: "outage"}).Run(ctx) }()
	f.exec("UPDATE items SET v = 'during the outage' WHERE id % 2 = 0")
	f.exec("DELETE FROM items WHERE id % 7 = 0")
	select {
	case err := <-exited:
		t.Fatalf("the streamer exited during the outage at start: %v", err)
	case <-time.After(8 * time.Second):
	}
	if !strings.Contains(logs.String(), "waiting for DynamoDB") {
		t.Errorf("the streamer did not say it was waiting for DynamoDB:\n%s", logs.String())
	}
	proxy.SetOutage(false)
	f.waitCaughtUp()
	f.assertConverged("public.items")

	// Longer than the lease TTL (3 s): the lease lapses while running.
	proxy.SetOutage(true)
	f.exec("UPDATE items SET v = 'during the second outage' WHERE id % 3 = 0")
	eventually(t, "the lease lapses during the outage", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("the streamer exited when its lease lapsed during an outage: %v", err)
		default:
		}
		return strings.Contains(logs.String(), "lease lapsed")
	})
	time.Sleep(2 * f.cfg.LeaseTTL.Duration)
	proxy.SetOutage(false)
	f.exec("INSERT INTO items VALUES (1000, 'after the outages')")
	f.waitCaughtUp()
	f.assertConverged("public.items")
	stop()
	if err := <-exited; err != nil {
		t.Errorf("streamer: %v", err)
	}
	t.Logf("streamer waited out two outages (%d requests refused) and converged", proxy.Counts().Outage)
}

// syncBuffer is a bytes.Buffer safe for a logger and a test reading it concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProgressNotDoubleCounted records chunks through a proxy that drops half of the
// responses after the write happened, so the SDK retries writes that already landed: the
// counters must still be exactly what was recorded (with ADD they were double-counted),
// and a repeated FinishSnapshot must not read as a fence.
func TestProgressNotDoubleCounted(t *testing.T) {
	f := newFixture(t, itemsDDL, nil)
	f.plan()
	proxy, err := testenv.StartFaultProxy(env.Moto.Endpoint, 7, testenv.FaultRates{Drop: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	via := control.New(ddb.FromConfig(proxy.AWSConfig()), f.cfg.ControlTable)
	// Re-planned, so that the split below is the table's (plan split it already).
	planned, _, _ := f.env.Control.Table(f.ctx, "public.items")
	if _, err := f.env.Control.Plan(f.ctx, "public.items", control.PlanOptions{Target: planned.Target, KeyColumns: planned.KeyColumns, Reset: true}); err != nil {
		t.Fatal(err)
	}
	st, err := f.env.Control.StartSnapshot(f.ctx, "public.items")
	if err != nil {
		t.Fatal(err)
	}
	if st, err = via.SetSplit(f.ctx, "public.items", st.Epoch, []pg.Range{{Hi: []string{"500"}}, {Lo: []string{"500"}}}, 1000); err != nil {
		t.Fatalf("splitting: %v", err)
	}
	var rows int64
	for index := range 2 {
		r, err := via.Range(f.ctx, st, index)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			n := 10 + i
			if err := via.RecordRangeChunk(f.ctx, r, []string{fmt.Sprint(100*(i+1) + 500*index)}, n, uint64(1000+i)); err != nil {
				t.Fatalf("range %d chunk %d: %v", index, i, err)
			}
			r.Chunks++
			r.RowsCopied += int64(n)
			rows += int64(n)
		}
		for range 2 { // the second: a retry after a lost response
			if err := via.FinishRange(f.ctx, r); err != nil {
				t.Fatalf("finishing range %d: %v", index, err)
			}
		}
	}
	ranges, err := f.env.Control.Ranges(f.ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if copied, chunks, done := control.RangeProgress(ranges); copied != rows || chunks != 10 || done != 2 {
		t.Errorf("ranges say %d rows in %d chunks, %d of 2 done; recorded %d rows in 10 chunks, both done", copied, chunks, done, rows)
	}
	for range 2 {
		if err := via.FinishSnapshot(f.ctx, "public.items", st.Epoch, 5000, rows, 10); err != nil {
			t.Fatalf("finishing (again: a retry after a lost response): %v", err)
		}
	}
	got, _, err := f.env.Control.Table(f.ctx, "public.items")
	if err != nil {
		t.Fatal(err)
	}
	if got.Chunks != 10 || got.RowsCopied != rows || got.State != control.Done || got.ConsistentLSN != 5000 {
		t.Errorf("control table says %d chunks, %d rows, %s at %d; recorded 10 chunks, %d rows, done at 5000", got.Chunks, got.RowsCopied, got.State, got.ConsistentLSN, rows)
	}
	if n := proxy.Counts(); n.Dropped == 0 {
		t.Fatalf("no response was dropped: %v", n)
	} else {
		t.Logf("%v; counters exact", n)
	}
}

// TestSnapshotOutageNearDeadline runs the copier as the Lambda would, with a deadline,
// while DynamoDB is down: it retries until the deadline nears and then returns its
// progress without an error (so the state machine invokes it again instead of failing the
// table); once DynamoDB is back the next invocation finishes the table.
func TestSnapshotOutageNearDeadline(t *testing.T) {
	f := newFixture(t, itemsDDL, nil)
	f.plan()
	proxy, err := testenv.StartFaultProxy(env.Moto.Endpoint, 3, testenv.FaultRates{})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	penv := pipeline.FromParts(f.cfg, f.env.PG, ddb.FromConfig(proxy.AWSConfig()), testLogger())
	tbl := f.table("public.items")
	proxy.SetOutage(true)
	deadline := time.Now().Add(25 * time.Second)
	res, err := penv.Copier().Run(f.ctx, tbl, deadline)
	if err != nil || res.Done {
		t.Fatalf("during the outage the copier returned %+v, %v; want its progress and no error", res, err)
	}
	if time.Now().After(deadline) {
		t.Fatalf("the copier returned after its deadline")
	}
	proxy.SetOutage(false)
	res, err = penv.Copier().Run(f.ctx, tbl, time.Now().Add(2*time.Minute))
	if err != nil || !res.Done {
		t.Fatalf("after the outage: %+v, %v", res, err)
	}
	t.Logf("progress returned during the outage, done after it: %+v (%d requests refused)", res, proxy.Counts().Outage)
}
