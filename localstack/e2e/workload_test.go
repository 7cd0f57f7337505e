package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// mixedSchema has the shapes the contract must handle: a plain key, a composite key, a
// large TOASTed text column, the rich types of README "Items in DynamoDB", and the shapes production
// schemas have: identifiers with dots, spaces, quotes and non-ASCII letters, a char(n)
// key, a generated column, an inherited parent and child, and a partitioned table whose
// rows move between partitions.
const mixedSchema = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE accounts (id bigint PRIMARY KEY, name text, balance numeric(20,4), active boolean,
                       note varchar(40), updated timestamptz);
CREATE TABLE order_lines (order_id int, line int, sku text, qty int, price double precision,
                          PRIMARY KEY (order_id, line));
CREATE TABLE documents (id int PRIMARY KEY, title text, body text);
ALTER TABLE documents ALTER body SET STORAGE EXTERNAL;
CREATE TABLE kitchen (id uuid PRIMARY KEY, doc jsonb, tags text[], amount numeric, blob bytea,
                      at timestamptz, nums int[], day date, feel mood);
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Shapes.v1" ("code key" char(6), "part#" int, "v.al[0]" text, "big:ü" text,
                      "gen""d" int GENERATED ALWAYS AS ("part#" * 2) STORED, PRIMARY KEY ("code key", "part#"));
ALTER TABLE "Odd Schema"."Shapes.v1" ALTER "big:ü" SET STORAGE EXTERNAL;
CREATE TABLE events (id int PRIMARY KEY, kind text);
CREATE TABLE events_archive (archived date) INHERITS (events);
ALTER TABLE events_archive ADD PRIMARY KEY (id);
CREATE TABLE metrics (region text, id int, v numeric, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
CREATE TABLE metrics_eu PARTITION OF metrics FOR VALUES IN ('eu');
CREATE TABLE metrics_us PARTITION OF metrics FOR VALUES IN ('us');
`

var mixedTables = []string{"public.accounts", "public.order_lines", "public.documents", "public.kitchen",
	`"Odd Schema"."Shapes.v1"`, "public.events", "public.events_archive", "public.metrics_eu", "public.metrics_us"}

// workload drives random changes, reproducible from its seed (up to the interleaving with
// concurrent workers).
type workload struct {
	rng  *rand.Rand
	pool *pgxpool.Pool
	// keys bounds the key space so updates and deletes hit existing rows often.
	keys int
	ops  map[string]int
}

func newWorkload(seed uint64, pool *pgxpool.Pool, keys int) *workload {
	return &workload{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), pool: pool, keys: keys, ops: map[string]int{}}
}

// seedRows fills every table with initial rows before the snapshot starts.
func (w *workload) seedRows(ctx context.Context, n int) error {
	for i := 1; i <= n; i++ {
		if err := w.tx(ctx, func(tx pgx.Tx) error {
			for _, f := range []func(context.Context, pgx.Tx, int) error{w.insertAccount, w.insertLine, w.insertKitchen} {
				if err := f(ctx, tx, i); err != nil {
					return err
				}
			}
			if i <= n/4 {
				if err := w.insertDocument(ctx, tx, i); err != nil {
					return err
				}
				return w.insertShapes(ctx, tx, i)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

func (w *workload) tx(ctx context.Context, f func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, w.pool, f)
}

func (w *workload) key() int { return 1 + w.rng.IntN(w.keys) }

func (w *workload) text(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.-'\"é✓"
	r := []rune(alphabet)
	var b strings.Builder
	for range n {
		b.WriteRune(r[w.rng.IntN(len(r))])
	}
	return b.String()
}

func (w *workload) maybe(v any) any {
	if w.rng.IntN(6) == 0 {
		return nil
	}
	return v
}

func (w *workload) insertAccount(ctx context.Context, tx pgx.Tx, id int) error {
	_, err := tx.Exec(ctx, `INSERT INTO accounts VALUES ($1, $2, $3::numeric, $4, $5, $6) ON CONFLICT DO NOTHING`,
		id, w.maybe(w.text(12)), w.maybe(fmt.Sprintf("%d.%04d", w.rng.IntN(1e9)-5e8, w.rng.IntN(1e4))),
		w.maybe(w.rng.IntN(2) == 0), w.maybe(w.text(30)), w.maybe(time.Unix(int64(w.rng.IntN(2e9)), int64(w.rng.IntN(1e6))*1000)))
	return err
}

func (w *workload) insertLine(ctx context.Context, tx pgx.Tx, id int) error {
	_, err := tx.Exec(ctx, `INSERT INTO order_lines VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`,
		id/3, id%3+w.rng.IntN(3), w.maybe("sku-"+w.text(5)), w.maybe(w.rng.IntN(100)), w.maybe(w.rng.Float64()*1e6))
	return err
}

func (w *workload) insertDocument(ctx context.Context, tx pgx.Tx, id int) error {
	_, err := tx.Exec(ctx, `INSERT INTO documents VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		id, w.text(20), w.text(3000+w.rng.IntN(6000)))
	return err
}

func (w *workload) uuid(id int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", id) }

func (w *workload) insertKitchen(ctx context.Context, tx pgx.Tx, id int) error {
	doc := fmt.Sprintf(`{"n": %d, "big": 123456789012345678901234567890123456789012, "s": %q, "nested": {"list": [1, "two", null, true, {"x": %f}]}}`,
		w.rng.IntN(1000), w.text(8), w.rng.Float64())
	amounts := []string{"NaN", "Infinity", "-Infinity", "1234567890123456789012345678901234567890.5", "0.000001", "-42.50"}
	_, err := tx.Exec(ctx, `INSERT INTO kitchen VALUES ($1::uuid, $2::jsonb, $3, $4::numeric, $5, $6, $7, $8::date, $9::mood) ON CONFLICT DO NOTHING`,
		w.uuid(id), w.maybe(doc), w.maybe([]*string{ptr(w.text(4)), nil, ptr("with,comma"), ptr(`quo"te`)}),
		w.maybe(amounts[w.rng.IntN(len(amounts))]), w.maybe([]byte(w.text(10))),
		w.maybe(time.Unix(int64(w.rng.IntN(2e9)), int64(w.rng.IntN(1e9))).In(time.FixedZone("x", 3600*5+1800))),
		w.maybe([]*int32{i32(int32(w.rng.IntN(100))), nil, i32(-7)}), w.maybe("2024-02-29"), w.maybe([]string{"sad", "ok", "happy"}[w.rng.IntN(3)]))
	return err
}

// shapeCode is the char(6) key of the odd-shapes table: shorter than six characters, so
// PostgreSQL pads it, and the pad must survive paging and re-reads.
func (w *workload) shapeCode(id int) string { return fmt.Sprintf("c%d", id%(w.keys/4+1)) }

// insertShapes writes the odd-shapes table (TOASTed value included), an event to the
// inherited parent or its child, and a metric to either partition.
func (w *workload) insertShapes(ctx context.Context, tx pgx.Tx, id int) error {
	_, err := tx.Exec(ctx, `INSERT INTO "Odd Schema"."Shapes.v1" ("code key", "part#", "v.al[0]", "big:ü") VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
		w.shapeCode(id), id%3, w.maybe(w.text(8)), w.maybe(w.text(2500+w.rng.IntN(3000))))
	if err != nil {
		return err
	}
	table := []string{"events", "events_archive"}[w.rng.IntN(2)]
	if _, err := tx.Exec(ctx, `INSERT INTO `+table+` (id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING`, id, w.maybe(w.text(5))); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO metrics VALUES ($1, $2, $3::numeric) ON CONFLICT DO NOTHING`,
		[]string{"eu", "us"}[w.rng.IntN(2)], id, w.maybe(fmt.Sprintf("%d.5", w.rng.IntN(1000))))
	return err
}

// shapeChange is one random change to the odd shapes: a TOAST-unchanged update, a key
// update of the char(n) key, a row moved to the other partition, a delete from the
// inherited child or parent.
func (w *workload) shapeChange(ctx context.Context, tx pgx.Tx, id int) error {
	var err error
	switch w.rng.IntN(5) {
	case 0:
		_, err = tx.Exec(ctx, `UPDATE "Odd Schema"."Shapes.v1" SET "v.al[0]" = $2 WHERE "code key" = $1`, w.shapeCode(id), w.maybe(w.text(6)))
	case 1:
		_, err = tx.Exec(ctx, `UPDATE "Odd Schema"."Shapes.v1" SET "code key" = $2 WHERE "code key" = $1
			AND NOT EXISTS (SELECT 1 FROM "Odd Schema"."Shapes.v1" WHERE "code key" = $2)`, w.shapeCode(id), fmt.Sprintf("m%d", w.rng.IntN(99999)))
	case 2:
		_, err = tx.Exec(ctx, `UPDATE metrics SET region = CASE region WHEN 'eu' THEN 'us' ELSE 'eu' END, v = v + 1
			WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM metrics m WHERE m.id = $1 AND m.region <> metrics.region)`, id)
	case 3:
		_, err = tx.Exec(ctx, `DELETE FROM `+[]string{"events", "events_archive", "ONLY events"}[w.rng.IntN(3)]+` WHERE id = $1`, id)
	default:
		_, err = tx.Exec(ctx, `UPDATE events SET kind = $2 WHERE id = $1`, id, w.maybe(w.text(4)))
	}
	return err
}

func ptr(s string) *string { return &s }
func i32(v int32) *int32   { return &v }

// step runs one random operation (several statements when it is a transaction).
func (w *workload) step(ctx context.Context) error {
	op := w.rng.IntN(100)
	id := w.key()
	var name string
	err := w.tx(ctx, func(tx pgx.Tx) error {
		var err error
		switch {
		case op < 15:
			name = "insert"
			for _, f := range []func(context.Context, pgx.Tx, int) error{w.insertAccount, w.insertLine, w.insertKitchen, w.insertDocument, w.insertShapes} {
				if err = f(ctx, tx, w.keys+w.rng.IntN(w.keys)); err != nil {
					return err
				}
			}
		case op < 35:
			name = "update"
			_, err = tx.Exec(ctx, `UPDATE accounts SET balance = balance + 1.0001, name = $2, updated = now() WHERE id = $1`, id, w.maybe(w.text(10)))
			if err == nil {
				_, err = tx.Exec(ctx, `UPDATE order_lines SET qty = coalesce(qty, 0) + 1, price = $3 WHERE order_id = $1 AND line = $2`, id/3, id%3, w.maybe(w.rng.Float64()))
			}
			if err == nil {
				_, err = tx.Exec(ctx, `UPDATE kitchen SET doc = jsonb_set(coalesce(doc, '{}'), '{n}', to_jsonb($2::int)), nums = nums || 5 WHERE id = $1::uuid`, w.uuid(id), w.rng.IntN(1000))
			}
			if err == nil {
				err = w.shapeChange(ctx, tx, id)
			}
		case op < 50:
			name = "toast-unchanged update"
			_, err = tx.Exec(ctx, `UPDATE documents SET title = $2 WHERE id = $1`, id%(w.keys/4+1), w.text(15))
		case op < 55:
			name = "toast update"
			_, err = tx.Exec(ctx, `UPDATE documents SET body = $2 WHERE id = $1`, id%(w.keys/4+1), w.maybe(w.text(2500+w.rng.IntN(4000))))
		case op < 70:
			name = "delete"
			_, err = tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, id)
			if err == nil {
				_, err = tx.Exec(ctx, `DELETE FROM order_lines WHERE order_id = $1`, id/3)
			}
			if err == nil {
				_, err = tx.Exec(ctx, `DELETE FROM kitchen WHERE id = $1::uuid`, w.uuid(id))
			}
		case op < 82:
			name = "primary-key update"
			to := 3*w.keys + w.rng.IntN(3*w.keys)
			_, err = tx.Exec(ctx, `UPDATE accounts SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM accounts WHERE id = $2)`, id, to)
			if err == nil {
				_, err = tx.Exec(ctx, `UPDATE order_lines SET line = line + 10 WHERE order_id = $1 AND NOT EXISTS (SELECT 1 FROM order_lines o WHERE o.order_id = $1 AND o.line >= 10)`, id/3)
			}
			if err == nil {
				_, err = tx.Exec(ctx, `UPDATE documents SET id = $2 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM documents WHERE id = $2)`, id%(w.keys/4+1), to)
			}
		default:
			name = "same row many times"
			for range 2 + w.rng.IntN(4) {
				switch w.rng.IntN(4) {
				case 0:
					_, err = tx.Exec(ctx, `DELETE FROM accounts WHERE id = $1`, id)
				case 1:
					err = w.insertAccount(ctx, tx, id)
				default:
					_, err = tx.Exec(ctx, `UPDATE accounts SET note = $2, active = NOT coalesce(active, false) WHERE id = $1`, id, w.maybe(w.text(20)))
				}
				if err != nil {
					return err
				}
			}
		}
		return err
	})
	w.ops[name]++
	return err
}

// run executes n random steps, then returns; errors are fatal to the test.
func runWorkloads(ctx context.Context, t *testing.T, seed uint64, pool *pgxpool.Pool, keys, workers, steps int) (total map[string]int) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	total = map[string]int{}
	errs := make(chan error, workers)
	for i := range workers {
		w := newWorkload(seed*1000+uint64(i)+1, pool, keys)
		wg.Go(func() {
			for range steps {
				if err := w.step(ctx); err != nil && ctx.Err() == nil && !retryable(err) {
					errs <- fmt.Errorf("workload (seed %d): %w", seed, err)
					return
				}
			}
			mu.Lock()
			for k, v := range w.ops {
				total[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return total
}

// retryable: concurrent workers may deadlock or collide on a key; PostgreSQL rolls the
// transaction back, which is fine for a random workload.
func retryable(err error) bool {
	s := err.Error()
	return strings.Contains(s, "deadlock detected") || strings.Contains(s, "duplicate key") || strings.Contains(s, "could not serialize")
}
