package target_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgtype"

	"tandem/localstack/testenv"
	"tandem/shared/ddb"
	"tandem/shared/fault"
	"tandem/shared/limits"
	"tandem/shared/mapping"
	"tandem/shared/precedence"
	"tandem/shared/schema"
	"tandem/shared/target"
)

var db *dynamodb.Client

func TestMain(m *testing.M) {
	moto, err := testenv.StartMoto()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start moto:", err)
		os.Exit(1)
	}
	cfg, err := moto.AWSConfig(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	db = ddb.FromConfig(cfg)
	code := m.Run()
	_ = moto.Stop()
	os.Exit(code)
}

var tables int

func newTable(t *testing.T) *schema.Table {
	t.Helper()
	tables++
	tbl := &schema.Table{Schema: "public", Name: "t", Target: fmt.Sprintf("precedence_%d", tables),
		Columns: []schema.Column{{Name: "id", Type: &mapping.Type{OID: pgtype.Int4OID, Name: "int4", Category: 'N'}},
			{Name: "v", Type: &mapping.Type{OID: pgtype.TextOID, Name: "text", Category: 'S'}}},
		Key: []int{0}}
	if err := target.EnsureTable(context.Background(), db, tbl, nil); err != nil {
		t.Fatal(err)
	}
	return tbl
}

// write is one write of the precedence matrix.
type write struct {
	name string
	do   func(w *target.Writer, t *schema.Table, v string) (bool, error)
}

func snapshotAt(lsn uint64) write { return snapshotOf(precedence.Read{LSN: lsn, Epoch: 1}) }

// resnapshotAt is a snapshot of epoch 2 taken after a schema change at floor.
func resnapshotAt(lsn, floor uint64) write {
	return snapshotOf(precedence.Read{LSN: lsn, Epoch: 2, Floor: floor})
}

func snapshotOf(r precedence.Read) write {
	return write{fmt.Sprintf("snapshot@%d(epoch %d, floor %d)", r.LSN, r.Epoch, r.Floor), func(w *target.Writer, t *schema.Table, v string) (bool, error) {
		item, _ := t.Item([][]byte{[]byte("1"), []byte(v)})
		return w.Snapshot(context.Background(), t, item, r)
	}}
}

func streamAt(lsn uint64, seq uint32) write {
	return write{fmt.Sprintf("stream@%d#%d", lsn, seq), func(w *target.Writer, t *schema.Table, v string) (bool, error) {
		item, _ := t.Item([][]byte{[]byte("1"), []byte(v)})
		return w.Stream(context.Background(), t, item, precedence.Position{LSN: lsn, Seq: seq})
	}}
}

func deleteAt(lsn uint64, seq uint32) write {
	return write{fmt.Sprintf("delete@%d#%d", lsn, seq), func(w *target.Writer, t *schema.Table, _ string) (bool, error) {
		key, _ := t.ItemKey([][]byte{[]byte("1"), nil})
		return w.Delete(context.Background(), t, key, precedence.Position{LSN: lsn, Seq: seq})
	}}
}

// TestPrecedenceMatrix checks README "The contract" against the DynamoDB API: for every kind
// of existing item and every kind of write, whether the write replaces it.
func TestPrecedenceMatrix(t *testing.T) {
	cases := []struct {
		existing, next write
		applies        bool
	}{
		{snapshotAt(100), snapshotAt(150), true},  // a later chunk read refreshes a snapshot row
		{snapshotAt(150), snapshotAt(100), false}, // an older read never replaces a newer one
		{snapshotAt(500), streamAt(100, 1), true}, // the stream always replaces a snapshot row
		{streamAt(100, 1), snapshotAt(900), false},
		{deleteAt(100, 1), snapshotAt(900), false}, // a snapshot never resurrects a deleted row
		{streamAt(100, 1), streamAt(100, 2), true},
		{streamAt(100, 2), streamAt(100, 1), false}, // replay of an older change is harmless
		{streamAt(100, 2), streamAt(100, 2), false},
		{streamAt(200, 1), streamAt(100, 9), false},
		{streamAt(100, 9), streamAt(200, 1), true},
		{deleteAt(100, 1), streamAt(200, 1), true}, // re-insert after delete
		{deleteAt(200, 1), streamAt(100, 1), false},
		{streamAt(100, 1), deleteAt(100, 2), true},
		{streamAt(300, 1), deleteAt(100, 2), false},
		// After a schema change at 200, the new snapshot replaces what the stream wrote
		// in the old shape, and nothing written after the change.
		{streamAt(150, 3), resnapshotAt(900, 200), true},
		{deleteAt(150, 3), resnapshotAt(900, 200), true},
		{streamAt(200, 1), resnapshotAt(900, 200), false},
		{streamAt(250, 1), resnapshotAt(900, 200), false},
		// A copier fenced out of epoch 1 never overwrites the rows of epoch 2.
		{snapshotOf(precedence.Read{LSN: 100, Epoch: 2}), snapshotOf(precedence.Read{LSN: 900, Epoch: 1}), false},
		{snapshotOf(precedence.Read{LSN: 900, Epoch: 1}), snapshotOf(precedence.Read{LSN: 100, Epoch: 2}), true},
	}
	for _, c := range cases {
		t.Run(c.existing.name+" then "+c.next.name, func(t *testing.T) {
			tbl := newTable(t)
			w := &target.Writer{DB: db, TombstoneTTL: time.Hour}
			if ok, err := c.existing.do(w, tbl, "first"); !ok || err != nil {
				t.Fatalf("setup write: %v %v", ok, err)
			}
			ok, err := c.next.do(w, tbl, "second")
			if err != nil {
				t.Fatal(err)
			}
			if ok != c.applies {
				t.Fatalf("applied = %v, want %v", ok, c.applies)
			}
			if w.Lost.Load() != map[bool]int64{true: 0, false: 1}[c.applies] {
				t.Errorf("lost counter = %d", w.Lost.Load())
			}
		})
	}
}

func TestMergeMissingAndLost(t *testing.T) {
	ctx := context.Background()
	tbl := newTable(t)
	w := &target.Writer{DB: db, TombstoneTTL: time.Hour}
	key, _ := tbl.ItemKey([][]byte{[]byte("1"), nil})
	set, _ := tbl.Item([][]byte{[]byte("1"), []byte("merged")})
	p := precedence.Position{LSN: 100, Seq: 1}
	if _, missing, err := w.Merge(ctx, tbl, key, set, nil, p, 0); err != nil || !missing {
		t.Fatalf("merge into nothing: missing=%v err=%v", missing, err)
	}
	// A merge never lands on a tombstone: the row it would complete is gone.
	if _, err := w.Delete(ctx, tbl, key, precedence.Position{LSN: 50, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if _, missing, _ := w.Merge(ctx, tbl, key, set, nil, p, 0); !missing {
		t.Fatal("merge onto an older tombstone must ask for the full row")
	}
	item, _ := tbl.Item([][]byte{[]byte("1"), []byte("newer")})
	if _, err := w.Stream(ctx, tbl, item, precedence.Position{LSN: 200, Seq: 1}); err != nil {
		t.Fatal(err)
	}
	applied, missing, err := w.Merge(ctx, tbl, key, set, nil, p, 0)
	if applied || missing || err != nil {
		t.Fatalf("merge older than the item: applied=%v missing=%v err=%v", applied, missing, err)
	}
	if _, _, err := w.Merge(ctx, tbl, key, set, nil, precedence.Position{LSN: 300, Seq: 1}, 0); err != nil {
		t.Fatal(err)
	}
	got, _ := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: &tbl.Target, Key: key, ConsistentRead: aws.Bool(true)})
	if v := got.Item["v"].(*types.AttributeValueMemberS).Value; v != "merged" {
		t.Fatalf("v = %q", v)
	}
}

func TestTooLargeItemIsAPoisonErrorNamingTableAndKey(t *testing.T) {
	tbl := newTable(t)
	w := &target.Writer{DB: db, TombstoneTTL: time.Hour}
	item, _ := tbl.Item([][]byte{[]byte("7"), []byte(strings.Repeat("x", limits.ItemSize))})
	_, err := w.Stream(context.Background(), tbl, item, precedence.Position{LSN: 1, Seq: 1})
	var p *fault.PoisonError
	if !errors.As(err, &p) || p.Table != "public.t" || !strings.Contains(p.Key, "id=7") || !strings.Contains(p.Reason, "item limit") {
		t.Fatalf("want a PoisonError naming table, key and the item limit, got %v", err)
	}
}

// TestSweep removes exactly what a finished snapshot leaves behind and keeps every item
// that is still right: in one pass, and in three parallel-scan segments, each
// interrupted after every page (a deadline already near) and resumed from its saved
// progress, which removes the same items.
func TestSweep(t *testing.T) {
	for _, segmented := range []bool{false, true} {
		t.Run(map[bool]string{false: "one pass", true: "segments resumed"}[segmented], func(t *testing.T) { testSweep(t, segmented) })
	}
}

func testSweep(t *testing.T, segmented bool) {
	ctx := context.Background()
	tbl := newTable(t)
	w := &target.Writer{DB: db, TombstoneTTL: time.Hour, PageLimit: 1}
	put := func(id string, f func(target.Item) (bool, error)) {
		t.Helper()
		item, _ := tbl.Item([][]byte{[]byte(id), []byte("v")})
		if ok, err := f(item); !ok || err != nil {
			t.Fatalf("setup %s: %v %v", id, ok, err)
		}
	}
	del := func(id string, p precedence.Position) {
		t.Helper()
		key, _ := tbl.ItemKey([][]byte{[]byte(id), nil})
		if ok, err := w.Delete(ctx, tbl, key, p); !ok || err != nil {
			t.Fatalf("setup %s: %v %v", id, ok, err)
		}
	}
	snapshot := func(r precedence.Read) func(target.Item) (bool, error) {
		return func(item target.Item) (bool, error) { return w.Snapshot(ctx, tbl, item, r) }
	}
	stream := func(p precedence.Position) func(target.Item) (bool, error) {
		return func(item target.Item) (bool, error) { return w.Stream(ctx, tbl, item, p) }
	}
	put("1", snapshot(precedence.Read{LSN: 50, Epoch: 1}))  // read before the TRUNCATE at 100: stale
	put("2", snapshot(precedence.Read{LSN: 150, Epoch: 1})) // older epoch, not rewritten: orphan
	put("3", snapshot(precedence.Read{LSN: 300, Epoch: 2})) // current epoch: kept
	put("4", stream(precedence.Position{LSN: 120, Seq: 1})) // stream before the floor 200: orphan
	put("5", stream(precedence.Position{LSN: 250, Seq: 1})) // stream after the floor: kept
	del("6", precedence.Position{LSN: 260, Seq: 1})         // tombstone before 400: swept
	del("7", precedence.Position{LSN: 500, Seq: 1})         // tombstone after 400: kept

	sweep := target.Sweep{FenceLSN: 100, Epoch: 2, Floor: 200, Orphans: true, TombstonesUpTo: 400}
	var n int
	if !segmented {
		var err error
		if n, err = w.Sweep(ctx, tbl, sweep); err != nil {
			t.Fatal(err)
		}
	} else {
		for seg := range 3 {
			var saved target.Item
			invocations := 0
			for done := false; !done; {
				invocations++
				next, k, err := w.SweepSegment(ctx, tbl, sweep, target.Segment{N: seg, Of: 3}, saved, time.Now(),
					func(_ context.Context, p target.Page) error { saved = p.Next; return nil })
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(next) != fmt.Sprint(saved) {
					t.Fatalf("segment %d stopped at %v but saved %v", seg, next, saved)
				}
				n += k
				done = next == nil
				if invocations > 20 {
					t.Fatalf("segment %d not done after %d resumed passes", seg, invocations)
				}
			}
		}
	}
	out, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: &tbl.Target, ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, item := range out.Items {
		left = append(left, item["id"].(*types.AttributeValueMemberN).Value)
	}
	sort.Strings(left)
	if n != 4 || strings.Join(left, ",") != "3,5,7" {
		t.Fatalf("swept %d, left %v; want 4 swept, 3,5,7 left", n, left)
	}
	if n, err := w.Sweep(ctx, tbl, target.Sweep{}); n != 0 || err != nil {
		t.Fatalf("an empty sweep removed %d: %v", n, err)
	}
}
