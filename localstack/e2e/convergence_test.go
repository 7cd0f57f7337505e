package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"tandem/shared/pg"
	"tandem/shared/schema"
)

// seeds returns the seeds to run: TANDEM_SEED=n runs just n, TANDEM_SEEDS=n runs 1..n
// (make test-long), and by default a few.
func seeds(t *testing.T, def int) []uint64 {
	if s := os.Getenv("TANDEM_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("TANDEM_SEED=%q: %v", s, err)
		}
		return []uint64{n}
	}
	n := def
	if s := os.Getenv("TANDEM_SEEDS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("TANDEM_SEEDS=%q: %v", s, err)
		}
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// TestRandomizedConvergence runs a concurrent random workload while every table is
// snapshotted in parallel (with random pauses between chunks) and the streamer applies
// the WAL; afterwards every DynamoDB table must equal PostgreSQL exactly.
func TestRandomizedConvergence(t *testing.T) {
	for _, seed := range seeds(t, 3) {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			f := newFixture(t, mixedSchema, nil)
			rng := rand.New(rand.NewPCG(seed, 7))
			if err := newWorkload(seed, f.src, 120).seedRows(f.ctx, 120); err != nil {
				t.Fatal(err)
			}
			f.plan()
			f.startStreamer(nil)

			ctx, cancel := context.WithCancel(f.ctx)
			defer cancel()
			var snapshots sync.WaitGroup
			for _, source := range mixedTables {
				c := f.env.Copier()
				pause := time.Duration(rng.IntN(40)) * time.Millisecond
				c.AfterRead = func(context.Context, *schema.Table, *pg.Chunk) { time.Sleep(pause) }
				tbl := f.table(source)
				snapshots.Go(func() {
					res, err := c.Run(ctx, tbl, time.Time{})
					if err != nil || !res.Done {
						t.Errorf("seed %d: snapshot of %s: %+v %v", seed, source, res, err)
					}
				})
			}
			ops := runWorkloads(ctx, t, seed, f.src, 120, 2, 150)
			if rng.IntN(2) == 0 {
				f.exec("TRUNCATE order_lines")
				ops["truncate"]++
				runWorkloads(ctx, t, seed+100, f.src, 120, 1, 30)
			}
			snapshots.Wait()
			f.waitCaughtUp()
			f.assertConverged(mixedTables...)
			if t.Failed() {
				t.Logf("seed %d failed: rerun with TANDEM_SEED=%d go test ./localstack/e2e -run 'TestRandomizedConvergence'", seed, seed)
			}
			t.Logf("seed %d converged: %d tables, operations %v", seed, len(mixedTables), ops)
		})
	}
}
