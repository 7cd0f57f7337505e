package mapping

import (
	"strings"
	"tandem/shared/limits"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestItemSize(t *testing.T) {
	cases := []struct {
		name string
		item map[string]types.AttributeValue
		want int
	}{
		{"empty", map[string]types.AttributeValue{}, 0},
		{"string", map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "héllo"}}, 2 + 6},
		{"binary", map[string]types.AttributeValue{"b": &types.AttributeValueMemberB{Value: []byte{1, 2, 3}}}, 1 + 3},
		// 1234500 -> 5 significant digits -> 3+1 bytes; zero -> 1 byte.
		{"numbers", map[string]types.AttributeValue{
			"n": &types.AttributeValueMemberN{Value: "123.4500"},
			"z": &types.AttributeValueMemberN{Value: "0.000"},
			"e": &types.AttributeValueMemberN{Value: "1.5e-07"},
		}, (1 + 4) + (1 + 1) + (1 + 2)},
		{"bool and null", map[string]types.AttributeValue{
			"ok": &types.AttributeValueMemberBOOL{Value: true},
			"no": &types.AttributeValueMemberNULL{Value: true},
		}, 3 + 3},
		{"empty list and map", map[string]types.AttributeValue{
			"l": &types.AttributeValueMemberL{},
			"m": &types.AttributeValueMemberM{},
		}, 4 + 4},
		// "doc": 3 + M{3 overhead + 2 elements + "a"(1)+N"1"(2) + "bb"(2)+L[3 + 1 + S"xyz"(3)]}.
		{"nested", map[string]types.AttributeValue{
			"doc": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
				"a":  &types.AttributeValueMemberN{Value: "1"},
				"bb": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "xyz"}}},
			}},
		}, 3 + (3 + 2 + (1 + 2) + (2 + (3 + 1 + 3)))},
	}
	for _, c := range cases {
		if got := ItemSize(c.item); got != c.want {
			t.Errorf("%s: ItemSize = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestItemSizeLimit(t *testing.T) {
	text := `{"` + strings.Repeat("x", limits.ItemSize) + `"}`
	av, err := Value(tTextArr, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if n := ItemSize(map[string]types.AttributeValue{"tags": av}); n <= limits.ItemSize {
		t.Fatalf("ItemSize = %d, want > limits.ItemSize", n)
	}
}
