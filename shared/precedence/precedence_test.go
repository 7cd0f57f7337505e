package precedence

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/ddb"
)

func TestPositionOrder(t *testing.T) {
	cases := []struct {
		a, b Position
		less bool
	}{
		{Position{100, 1}, Position{200, 1}, true},
		{Position{200, 1}, Position{100, 9}, false},
		{Position{100, 1}, Position{100, 2}, true},
		{Position{100, 2}, Position{100, 2}, false},
		{Position{0xFFFFFFFF, 7}, Position{0x100000000, 1}, true}, // crossing a 4 GB WAL segment boundary
	}
	for _, c := range cases {
		if got := c.a.Less(c.b); got != c.less {
			t.Errorf("%v < %v = %v, want %v", c.a, c.b, got, c.less)
		}
	}
	if s := (Position{0x16B3748 | 1<<32, 3}).String(); s != "1/16B3748#3" {
		t.Errorf("String() = %q", s)
	}
}

func TestReserved(t *testing.T) {
	for name, want := range map[string]bool{"__lsn": true, "__src": true, "__anything": true, "_x": false, "id": false, "a__b": false} {
		if Reserved(name) != want {
			t.Errorf("Reserved(%q) = %v", name, !want)
		}
	}
}

// The conditions are checked against DynamoDB itself in shared/target; here their shape.
func TestConditionsBuild(t *testing.T) {
	for name, c := range map[string]expression.ConditionBuilder{
		"snapshot": Snapshot(Read{LSN: 10, Epoch: 1}), "resnapshot": Snapshot(Read{LSN: 10, Epoch: 2, Floor: 5}), "stream": Stream(Position{10, 2}), "merge": Merge(Position{10, 2}, 0), "merge-floored": Merge(Position{10, 2}, 5), "orphan": Orphan(2, 5),
		"stale": StaleSnapshot(10), "sweep": SweepableTombstone(Position{10, 2}), "tombstones": TombstoneAtOrBefore(10),
	} {
		expr, err := ddb.Build(expression.NewBuilder().WithCondition(c))
		if err != nil || *expr.Condition() == "" {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestItemsCarryMetadata(t *testing.T) {
	key := map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: "1"}}
	tomb := Tombstone(key, Position{42, 3}, 1700000000)
	if !IsTombstone(tomb) {
		t.Fatal("tombstone not recognised")
	}
	if _, ok := key[AttrDeleted]; ok {
		t.Fatal("Tombstone modified the key map")
	}
	p, src, ok := ItemPosition(tomb)
	if !ok || src != SrcStream || p != (Position{42, 3}) {
		t.Fatalf("ItemPosition = %v %q %v", p, src, ok)
	}
	if tomb[AttrExpires].(*types.AttributeValueMemberN).Value != "1700000000" {
		t.Fatal("missing TTL")
	}
	snap := SnapshotItem(map[string]types.AttributeValue{}, Read{LSN: 77, Epoch: 2})
	if p, src, _ := ItemPosition(snap); src != SrcSnapshot || p.LSN != 77 {
		t.Fatalf("snapshot metadata: %v %q", p, src)
	}
}

// The prebuilt guards are exactly the conditions they stand for, whatever the numbers.
func TestGuardsEqualTheirConditions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	same := func(what string, got ddb.Expression, cond expression.ConditionBuilder) {
		t.Helper()
		want, err := ddb.Build(expression.NewBuilder().WithCondition(cond))
		if err != nil {
			t.Fatal(err)
		}
		if *got.Condition() != *want.Condition() || !reflect.DeepEqual(got.Names(), want.Names()) || !reflect.DeepEqual(got.Values(), want.Values()) {
			t.Fatalf("%s:\n got %s %v %v\nwant %s %v %v", what, *got.Condition(), got.Names(), got.Values(), *want.Condition(), want.Names(), want.Values())
		}
	}
	for range 200 {
		p := Position{LSN: rng.Uint64(), Seq: rng.Uint32()}
		same(fmt.Sprint("stream ", p), StreamGuard(p), Stream(p))
		r := Read{LSN: rng.Uint64(), Epoch: rng.Int64N(1 << 40)}
		same(fmt.Sprint("snapshot ", r), SnapshotGuard(r), Snapshot(r))
		r.Floor = 1 + rng.Uint64N(1<<62)
		same(fmt.Sprint("snapshot after a schema change ", r), SnapshotGuard(r), Snapshot(r))
	}
	// Filling one guard leaves the template and earlier fills alone.
	a, b := StreamGuard(Position{LSN: 1, Seq: 2}), StreamGuard(Position{LSN: 3, Seq: 4})
	same("first fill", a, Stream(Position{LSN: 1, Seq: 2}))
	same("second fill", b, Stream(Position{LSN: 3, Seq: 4}))
}
