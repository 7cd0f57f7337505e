package main

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/ddb"
	"tandem/shared/pipeline"
	"tandem/shared/precedence"
)

// writeEfficiency: snapshot rows/s and streamed changes/s of Tandem's real code paths
// (snapshot.Copier through pipeline.Env; the streamer decoding pgoutput) against the raw
// conditional-PutItem ceiling at the same concurrency, measured right before each; and
// the process CPU per row/change against the CPU per raw PutItem.
func (b *bench) writeEfficiency() error {
	// Snapshot.
	w, err := b.newWorld(tableDDL("bulk", b.sz.snapshotRows), nil)
	if err != nil {
		return err
	}
	defer w.close()
	if _, err := w.env.Plan(b.ctx, planInput()); err != nil {
		return err
	}
	b.note("planned %d rows", b.sz.snapshotRows)
	// The reference writes as many items as the snapshot: an endpoint slows as its
	// table grows, so a shorter reference would flatter it.
	rawRate, rawCPU, err := b.rawCeiling(concurrency, b.sz.snapshotRows)
	if err != nil {
		return fmt.Errorf("raw ceiling: %w", err)
	}
	b.info(fmt.Sprintf("raw conditional PutItem ceiling, %d in flight", concurrency), rawRate, "puts/s")
	wall, cpu, err := measure(func() error { return w.snapshotAll("public.bulk") })
	if err != nil {
		return err
	}
	rows := float64(b.sz.snapshotRows)
	b.ratio(fmt.Sprintf("snapshot rows/s vs raw ceiling (%d rows, 1 worker)", b.sz.snapshotRows), rows/wall.Seconds(), rawRate, "/s", true, 0.85)
	b.ratio("CPU per snapshot row vs per raw PutItem", us(cpu)/rows, us(rawCPU), "µs", false, 1.3)

	// Stream: the changes are committed while no streamer runs, then one streamer applies
	// them all; its time and CPU are the streamer's alone.
	b.note("snapshot measured")
	w2, err := b.newWorld("CREATE TABLE events (id bigint PRIMARY KEY, n int NOT NULL, payload text NOT NULL)", nil)
	if err != nil {
		return err
	}
	defer w2.close()
	if _, err := w2.env.Plan(b.ctx, planInput()); err != nil {
		return err
	}
	b.note("planned the stream table")
	if err := w2.snapshotAll("public.events"); err != nil {
		return err
	}
	if err := w2.finalizeAll("public.events"); err != nil {
		return err
	}
	b.note("snapshotted the (empty) stream table")
	const txRows = 1000
	for lo := 1; lo <= b.sz.streamChanges; lo += txRows {
		if err := w2.exec(fmt.Sprintf("INSERT INTO events SELECT g, 0, repeat('p', %d) || g FROM generate_series($1::bigint, $2::bigint) g", payloadBytes-8),
			lo, min(lo+txRows-1, b.sz.streamChanges)); err != nil {
			return err
		}
	}
	lsn, err := w2.currentLSN()
	if err != nil {
		return err
	}
	b.note("committed %d changes", b.sz.streamChanges)
	rawRate, rawCPU, err = b.rawCeiling(concurrency, b.sz.streamChanges)
	if err != nil {
		return fmt.Errorf("raw ceiling: %w", err)
	}
	b.info(fmt.Sprintf("raw conditional PutItem ceiling, %d in flight (again)", concurrency), rawRate, "puts/s")
	var stop func() error
	wall, cpu, err = measure(func() error {
		stop = w2.startStreamer()
		return w2.waitApplied(lsn, 10*time.Minute)
	})
	if err != nil {
		return err
	}
	if err := stop(); err != nil {
		return fmt.Errorf("streamer: %w", err)
	}
	b.note("streamed")
	changes := float64(b.sz.streamChanges)
	b.ratio(fmt.Sprintf("streamed changes/s vs raw ceiling (%d inserts)", b.sz.streamChanges), changes/wall.Seconds(), rawRate, "/s", true, 0.85)
	b.ratio("CPU per streamed change vs per raw PutItem", us(cpu)/changes, us(rawCPU), "µs", false, 1.3)
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// concurrentVsSequential runs the same workload on fresh copies of the same 4 tables
// under the same steady write load, in two modes: as Tandem does it (streamer running
// while the snapshots copy), and snapshot-then-stream (the streamer starts only after
// every snapshot ended). Figures: time until every table is consistent, retained WAL of
// the slot when the last snapshot ends, worst replication lag (the heartbeat probe).
// The modes run in the order concurrent, s-t-s, s-t-s, concurrent and each figure is the
// mean of its mode's two runs, so that a machine getting busier or quieter during the
// group favours neither mode.
func (b *bench) concurrentVsSequential() error {
	var conc, seq []consistencyResult
	for _, sequential := range []bool{false, true, true, false} {
		r, err := b.consistencyRun(sequential)
		if err != nil {
			if sequential {
				return fmt.Errorf("snapshot-then-stream: %w", err)
			}
			return fmt.Errorf("concurrent: %w", err)
		}
		if sequential {
			seq = append(seq, r)
		} else {
			conc = append(conc, r)
		}
	}
	c, q := meanOf(conc), meanOf(seq)
	label := fmt.Sprintf(" (4×%d rows, %d writes/s, mean of 2 runs each)", b.sz.tableRows, loadRate)
	b.ratio("time to consistent, concurrent vs snapshot-then-stream"+label, c.consistent.Seconds(), q.consistent.Seconds(), "s", false, 1.1)
	b.ratio("retained WAL (confirmed_flush) at last snapshot end, conc vs s-t-s", c.retained, q.retained, "B", false, 0.10)
	// restart_lsn moves only when the decoder passes a running-xacts record, which
	// PostgreSQL logs every 15 s at most: on a short run it is floored by that, not by
	// Tandem.
	b.info("retained WAL (restart_lsn) at last snapshot end, concurrent", c.restart, "B")
	b.info("retained WAL (restart_lsn) at last snapshot end, s-t-s", q.restart, "B")
	b.ratio("worst replication lag, concurrent vs snapshot-then-stream", c.lag.Seconds(), q.lag.Seconds(), "s", false, 0.10)
	b.info("worst slot lag in bytes, concurrent", c.lagBytes, "B")
	b.info("worst slot lag in bytes, snapshot-then-stream", q.lagBytes, "B")
	return nil
}

// meanOf averages the runs of one mode.
func meanOf(runs []consistencyResult) consistencyResult {
	var m consistencyResult
	for _, r := range runs {
		m.consistent += r.consistent / time.Duration(len(runs))
		m.snapshots += r.snapshots / time.Duration(len(runs))
		m.lag += r.lag / time.Duration(len(runs))
		m.retained += r.retained / float64(len(runs))
		m.restart += r.restart / float64(len(runs))
		m.lagBytes += r.lagBytes / float64(len(runs))
	}
	return m
}

type consistencyResult struct {
	consistent time.Duration
	retained   float64       // current LSN - confirmed_flush_lsn: WAL the streamer has not released
	restart    float64       // current LSN - restart_lsn: WAL PostgreSQL keeps for the slot
	snapshots  time.Duration // the 4 tables' snapshots, first start to last end
	lag        time.Duration
	lagBytes   float64
}

var fourTables = []string{"public.t1", "public.t2", "public.t3", "public.t4"}

func (b *bench) consistencyRun(sequential bool) (consistencyResult, error) {
	var res consistencyResult
	ddl := tableDDL("t1", b.sz.tableRows) + tableDDL("t2", b.sz.tableRows) + tableDDL("t3", b.sz.tableRows) + tableDDL("t4", b.sz.tableRows) +
		"CREATE TABLE beat (id int PRIMARY KEY, n int NOT NULL); INSERT INTO beat VALUES (1, 0);"
	w, err := b.newWorld(ddl, nil)
	if err != nil {
		return res, err
	}
	defer w.close()
	tables := append([]string{"public.beat"}, fourTables...)
	stopLoad := w.load(loadRate, b.sz.tableRows, "t1", "t2", "t3", "t4")
	began := time.Now()
	if _, err := w.env.Plan(b.ctx, planInput()); err != nil {
		return res, err
	}
	var stopStreamer func() error
	if !sequential {
		stopStreamer = w.startStreamer()
	}
	// The heartbeat table is a row: snapshotted first so the probe measures the stream.
	if err := w.snapshotAll("public.beat"); err != nil {
		return res, err
	}
	beat, err := w.target("public.beat")
	if err != nil {
		return res, err
	}
	stopProbe := w.probe("beat", beat)
	// Worst slot lag in bytes, sampled while it runs.
	sampleCtx, stopSampling := context.WithCancel(b.ctx)
	defer stopSampling()
	sampled := make(chan float64)
	go func() {
		worst := 0.0
		for sampleCtx.Err() == nil {
			if _, lag, err := w.slotWAL(); err == nil {
				worst = max(worst, lag)
			}
			time.Sleep(100 * time.Millisecond)
		}
		sampled <- worst
	}()
	snapStart := time.Now()
	if err := w.snapshotAll(fourTables...); err != nil {
		return res, err
	}
	res.snapshots = time.Since(snapStart)
	if res.restart, res.retained, err = w.slotWAL(); err != nil {
		return res, err
	}
	if err := w.finalizeAll(tables...); err != nil {
		return res, err
	}
	if sequential {
		stopStreamer = w.startStreamer()
	}
	for {
		ok, err := w.allConsistent(tables...)
		if err != nil {
			return res, err
		}
		if ok {
			break
		}
		if time.Since(began) > 20*time.Minute {
			return res, fmt.Errorf("not consistent after 20 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.consistent = time.Since(began)
	// Keep the load and the probe on for a little while after: lag after the snapshots
	// counts too.
	time.Sleep(2 * time.Second)
	var probes int
	res.lag, probes, err = stopProbe()
	if err != nil {
		return res, fmt.Errorf("probe: %w", err)
	}
	stopSampling()
	res.lagBytes = <-sampled
	changes, err := stopLoad()
	if err != nil {
		return res, fmt.Errorf("load: %w", err)
	}
	if err := stopStreamer(); err != nil {
		return res, fmt.Errorf("streamer: %w", err)
	}
	mode := "concurrent"
	if sequential {
		mode = "snapshot-then-stream"
	}
	fmt.Printf("  %s: snapshots took %s, consistent after %s, unreleased WAL %s (restart_lsn %s) at last snapshot end, worst lag %s (%d probes), %d load writes\n",
		mode, res.snapshots.Round(time.Millisecond), res.consistent.Round(time.Millisecond), format(res.retained, "B"), format(res.restart, "B"), res.lag.Round(time.Millisecond), probes, changes)
	return res, nil
}

// truncateLag: a table of truncateRows rows is truncated while the streamer runs and a
// steady write load goes to other tables; the figure is the worst end-to-end lag of
// those other tables (the heartbeat probe) from the TRUNCATE until the truncated table's
// target holds no live row.
func (b *bench) truncateLag() error {
	ddl := tableDDL("big", b.sz.truncateRows) + tableDDL("o1", 1000) + tableDDL("o2", 1000) +
		"CREATE TABLE beat (id int PRIMARY KEY, n int NOT NULL); INSERT INTO beat VALUES (1, 0);"
	w, err := b.newWorld(ddl, nil)
	if err != nil {
		return err
	}
	defer w.close()
	tables := []string{"public.beat", "public.o1", "public.o2", "public.big"}
	if _, err := w.env.Plan(b.ctx, planInput()); err != nil {
		return err
	}
	stopStreamer := w.startStreamer()
	if err := w.snapshotAll(tables...); err != nil {
		return err
	}
	if err := w.finalizeAll(tables...); err != nil {
		return err
	}
	lsn, err := w.currentLSN()
	if err != nil {
		return err
	}
	if err := w.waitApplied(lsn, 5*time.Minute); err != nil {
		return err
	}
	stopLoad := w.load(loadRate, 1000, "o1", "o2")
	time.Sleep(time.Second)
	beat, err := w.target("public.beat")
	if err != nil {
		return err
	}
	stopProbe := w.probe("beat", beat)
	time.Sleep(time.Second)
	t0 := time.Now()
	if err := w.exec("TRUNCATE big"); err != nil {
		return err
	}
	target, err := w.target("public.big")
	if err != nil {
		return err
	}
	for {
		live, err := w.liveItems(target)
		if err != nil {
			return err
		}
		if live == 0 {
			break
		}
		if time.Since(t0) > 15*time.Minute {
			return fmt.Errorf("%d live items left in %s 15 minutes after the TRUNCATE", live, target)
		}
		time.Sleep(500 * time.Millisecond)
	}
	removed := time.Since(t0)
	time.Sleep(time.Second)
	worst, probes, err := stopProbe()
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if _, err := stopLoad(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if err := stopStreamer(); err != nil {
		return fmt.Errorf("streamer: %w", err)
	}
	fmt.Printf("  TRUNCATE of %d rows: target empty after %s; %d probes\n", b.sz.truncateRows, removed.Round(time.Millisecond), probes)
	b.absolute(fmt.Sprintf("worst lag of other tables during TRUNCATE of %d rows", b.sz.truncateRows), worst.Seconds(), "s", 2)
	b.info("time until the truncated target held no live row", removed.Seconds(), "s")
	return nil
}

// target is the DynamoDB table a source table is replicated into.
func (w *world) target(source string) (string, error) {
	t, err := w.env.Describe(w.b.ctx, source)
	if err != nil {
		return "", err
	}
	return t.Target, nil
}

// liveItems counts the items of a target that are not tombstones.
func (w *world) liveItems(target string) (int, error) {
	expr, err := ddb.Build(expression.NewBuilder().WithFilter(expression.AttributeNotExists(ddb.Name(precedence.AttrDeleted))))
	if err != nil {
		return 0, err
	}
	n := 0
	p := dynamodb.NewScanPaginator(w.db, &dynamodb.ScanInput{TableName: &target, ConsistentRead: aws.Bool(true),
		Select: types.SelectCount, FilterExpression: expr.Filter(), ExpressionAttributeNames: expr.Names()})
	for p.HasMorePages() {
		page, err := p.NextPage(w.b.ctx)
		if err != nil {
			return 0, err
		}
		n += int(page.Count)
	}
	return n, nil
}

// planInput is the input of every benchmark's Plan.
func planInput() pipeline.PlanInput { return pipeline.PlanInput{} }
