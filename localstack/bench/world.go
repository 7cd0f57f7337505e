package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/config"
	"tandem/shared/ddb"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/precedence"
	"tandem/streamer/stream"
)

// world is one measured setup: a source database, its slot, control table and targets.
type world struct {
	b    *bench
	name string
	url  string
	cfg  *config.Config
	env  *pipeline.Env
	src  *pgxpool.Pool // the workload's own connections
	db   *dynamodb.Client
	stop []func()
}

// payloadBytes is the size of the text column of every benchmark row: a snapshot row, a
// streamed change and a raw PutItem item all carry the same shape (id, n, payload and
// Tandem's metadata).
const payloadBytes = 200

// tableDDL creates a benchmark table of rows rows (id, n, payload).
func tableDDL(name string, rows int) string {
	return fmt.Sprintf(`CREATE TABLE %[1]s (id bigint PRIMARY KEY, n int NOT NULL, payload text NOT NULL);
INSERT INTO %[1]s SELECT g, 0, repeat('p', %[3]d) || g FROM generate_series(1, %[2]d) g;
ANALYZE %[1]s;`, name, rows, payloadBytes-8)
}

// newWorld creates a fresh database with ddl (or uses url when set) and an Env over it.
func (b *bench) newWorld(ddl string, configure func(*config.Config)) (*world, error) {
	b.seq++
	name := fmt.Sprintf("b%d", b.seq)
	url, err := b.pg.CreateDatabase(name)
	if err != nil {
		return nil, err
	}
	return b.worldOn(name, url, ddl, configure)
}

// worldOn builds a world over an existing database (several worlds share one source, each
// with its own slot, control table and targets).
func (b *bench) worldOn(name, url, ddl string, configure func(*config.Config)) (*world, error) {
	w := &world{b: b, name: name, url: url}
	var err error
	if w.src, err = pgxpool.New(b.ctx, url); err != nil {
		return nil, err
	}
	w.stop = append(w.stop, w.src.Close)
	if ddl != "" {
		if _, err := w.src.Exec(b.ctx, ddl); err != nil {
			w.close()
			return nil, fmt.Errorf("schema: %w", err)
		}
	}
	w.cfg = &config.Config{
		PostgresURL: url, Slot: "tandem_" + name, ControlTable: name + "_control", TablePrefix: name + "_",
		SnapshotWriters: concurrency, StreamWriters: concurrency,
		StatusInterval: config.Duration{Duration: 200 * time.Millisecond},
	}
	if configure != nil {
		configure(w.cfg)
	}
	w.cfg.Defaults()
	if err := w.cfg.Validate(); err != nil {
		w.close()
		return nil, err
	}
	awsCfg, _ := b.dyn.AWSConfig(b.ctx)
	w.db = ddb.FromConfig(awsCfg)
	pool, err := pg.Open(b.ctx, pg.Source{URL: url}, 40)
	if err != nil {
		w.close()
		return nil, err
	}
	w.stop = append(w.stop, pool.Close, func() {
		// Slots are cluster-wide and hold WAL: drop this world's slot.
		for range 50 {
			if _, err := w.src.Exec(context.Background(), "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", w.cfg.Slot); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	w.env = pipeline.FromParts(w.cfg, pool, w.db, b.log)
	return w, nil
}

func (w *world) close() {
	for i := len(w.stop) - 1; i >= 0; i-- {
		w.stop[i]()
	}
	w.stop = nil
}

func (w *world) exec(sql string, args ...any) error {
	_, err := w.src.Exec(w.b.ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", firstLine(sql), err)
	}
	return nil
}

// startStreamer runs a streamer in this process; the returned stop ends it.
func (w *world) startStreamer() (stop func() error) {
	ctx, cancel := context.WithCancel(w.b.ctx)
	s := &stream.Streamer{Env: w.env, Owner: "bench-" + w.name}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
			if errors.Is(err, context.Canceled) {
				err = nil
			}
		})
		return err
	}
	w.stop = append(w.stop, func() { stop() })
	return stop
}

// snapshotAll copies the tables to the end, each in its own goroutine (as the state
// machine's Map would), and finalizes each. It returns when the last one is done.
func (w *world) snapshotAll(tables ...string) error {
	errs := make([]error, len(tables))
	var wg sync.WaitGroup
	for i, source := range tables {
		wg.Go(func() {
			t, err := w.env.Describe(w.b.ctx, source)
			if err != nil {
				errs[i] = err
				return
			}
			res, err := w.env.Copier().Run(w.b.ctx, t, time.Time{})
			if err == nil && !res.Done {
				err = fmt.Errorf("snapshot of %s not done: %+v", source, res)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (w *world) finalizeAll(tables ...string) error {
	for _, source := range tables {
		if _, err := w.env.Finalize(w.b.ctx, pipeline.TableInput{Table: source}); err != nil {
			return fmt.Errorf("finalize %s: %w", source, err)
		}
	}
	return nil
}

// currentLSN is pg_current_wal_lsn().
func (w *world) currentLSN() (pglogrepl.LSN, error) { return pg.CurrentLSN(w.b.ctx, w.src) }

// waitApplied waits until the streamer's checkpoint is at or past lsn.
func (w *world) waitApplied(lsn pglogrepl.LSN, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		cp, err := w.env.Control.Checkpoint(w.b.ctx)
		if err != nil {
			return err
		}
		if cp.AppliedLSN >= uint64(lsn) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("streamer did not apply up to %s within %s (applied %s)", lsn, limit, pglogrepl.LSN(cp.AppliedLSN))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// allConsistent reports whether every table is consistent by README "The contract"'s rule.
func (w *world) allConsistent(tables ...string) (bool, error) {
	cp, err := w.env.Control.Checkpoint(w.b.ctx)
	if err != nil {
		return false, err
	}
	for _, source := range tables {
		st, _, err := w.env.Control.Table(w.b.ctx, source)
		if err != nil {
			return false, err
		}
		if !st.IsConsistent(cp.AppliedLSN) {
			return false, nil
		}
	}
	return true, nil
}

// slotWAL returns the slot's retained WAL (current LSN - restart_lsn) and its lag
// (current LSN - confirmed_flush_lsn), in bytes.
func (w *world) slotWAL() (retained, lag float64, err error) {
	err = w.src.QueryRow(w.b.ctx, `SELECT COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::float8,
		COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::float8
		FROM pg_replication_slots WHERE slot_name = $1`, w.cfg.Slot).Scan(&retained, &lag)
	return retained, lag, err
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs f and returns its wall time and this process's CPU time meanwhile.
func measure(f func() error) (wall, cpu time.Duration, err error) {
	c0, t0 := cpuTime(), time.Now()
	err = f()
	return time.Since(t0), cpuTime() - c0, err
}

// rawCeiling is the endpoint's raw conditional-PutItem rate at conc writes in flight:
// ops PutItems of new items shaped like a snapshot row (id, n, a 200-byte payload, __lsn,
// __epoch, __src) under Tandem's own snapshot condition, with nothing else done per
// write. It returns puts per second and this process's CPU per put.
func (b *bench) rawCeiling(conc, ops int) (rate float64, cpuPerOp time.Duration, err error) {
	b.seq++
	table := fmt.Sprintf("raw%d", b.seq)
	awsCfg, _ := b.dyn.AWSConfig(b.ctx)
	db := ddb.FromConfig(awsCfg)
	err = ddb.EnsureTable(b.ctx, db, table,
		[]types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		[]types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeN}},
		precedence.AttrExpires, nil)
	if err != nil {
		return 0, 0, err
	}
	defer db.DeleteTable(b.ctx, &dynamodb.DeleteTableInput{TableName: &table})
	read := precedence.Read{LSN: 1 << 30, Epoch: 1}
	expr, err := ddb.Build(expression.NewBuilder().WithCondition(precedence.Snapshot(read)))
	if err != nil {
		return 0, 0, err
	}
	payload := strings.Repeat("p", payloadBytes-8)
	var next atomic.Int64
	// A first round of writes opens the connections; only the writes after it count.
	put := func(id int64) error {
		item := precedence.SnapshotItem(map[string]types.AttributeValue{
			"id":      &types.AttributeValueMemberN{Value: fmt.Sprint(id)},
			"n":       &types.AttributeValueMemberN{Value: "0"},
			"payload": &types.AttributeValueMemberS{Value: payload + fmt.Sprint(id)},
		}, read)
		_, err := db.PutItem(b.ctx, &dynamodb.PutItemInput{TableName: &table, Item: item,
			ConditionExpression: expr.Condition(), ExpressionAttributeNames: expr.Names(), ExpressionAttributeValues: expr.Values()})
		return err
	}
	var warm sync.WaitGroup
	for i := range conc {
		warm.Go(func() { _ = put(-1 - int64(i)) })
	}
	warm.Wait()
	wall, cpu, err := measure(func() error {
		errs := make([]error, conc)
		var wg sync.WaitGroup
		for i := range conc {
			wg.Go(func() {
				for {
					id := next.Add(1)
					if id > int64(ops) {
						return
					}
					if err := put(id); err != nil {
						errs[i] = err
						return
					}
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	if err != nil {
		return 0, 0, err
	}
	return float64(ops) / wall.Seconds(), cpu / time.Duration(ops), nil
}

// load is a steady write load on the source: rate UPDATEs per second spread over tables
// (random rows among the first rows ids), each its own transaction, until stopped.
func (w *world) load(rate, rows int, tables ...string) (stop func() (int64, error)) {
	ctx, cancel := context.WithCancel(w.b.ctx)
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	const workers = 4
	for i := range workers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 7))
			tick := time.NewTicker(time.Second * workers / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				t := tables[rnd.IntN(len(tables))]
				_, err := w.src.Exec(ctx, "UPDATE "+t+" SET n = n + 1 WHERE id = $1", 1+rnd.IntN(rows))
				if err != nil && ctx.Err() == nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		})
	}
	return func() (int64, error) {
		cancel()
		wg.Wait()
		err, _ := firstErr.Load().(error)
		return n.Load(), err
	}
}

// probe measures replication lag end to end, as a user sees it: it bumps a heartbeat row
// in table and times until the new value is readable in DynamoDB, over and over, until
// stopped. It returns the worst lag seen (a probe still unseen when stopped counts with its
// age then).
func (w *world) probe(table, target string) (stop func() (worst time.Duration, probes int, err error)) {
	ctx, cancel := context.WithCancel(w.b.ctx)
	var worst time.Duration
	var count int
	var perr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seq := 1; ctx.Err() == nil; seq++ {
			t0 := time.Now()
			if _, err := w.src.Exec(ctx, "UPDATE "+table+" SET n = $1 WHERE id = 1", seq); err != nil {
				if ctx.Err() == nil {
					perr = err
				}
				return
			}
			for {
				out, err := w.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &target, ConsistentRead: aws.Bool(true),
					Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: "1"}}})
				if err == nil {
					if v, ok := out.Item["n"].(*types.AttributeValueMemberN); ok && v.Value == fmt.Sprint(seq) {
						break
					}
				}
				if ctx.Err() != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			worst = max(worst, time.Since(t0))
			count++
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() (time.Duration, int, error) {
		cancel()
		<-done
		return worst, count, perr
	}
}
