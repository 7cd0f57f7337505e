package precedence

import (
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
