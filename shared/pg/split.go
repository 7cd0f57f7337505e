package pg

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"tandem/shared/schema"
)

// Range is one part of a table in key order: the keys after Lo (nil: from the first key)
// up to and including Hi (nil: to the last key). Both hold the text of the key columns in
// key order, the form a chunk's cursor has.
type Range struct {
	Lo []string `json:"lo,omitempty" dynamodbav:"lo,omitempty"`
	Hi []string `json:"hi,omitempty" dynamodbav:"hi,omitempty"`
}

// samplePerRange is how many sampled keys each range's boundary is chosen from: enough
// that ranges come out within a few tens of percent of each other on skewed keys.
const samplePerRange = 64

// RowEstimate is the number of rows t holds by the statistics: pg_class.reltuples, or the
// planner's estimate where the table was never analysed (it scales the table's current
// page count by the tuple density it sees, so a freshly loaded table is not "empty").
func RowEstimate(ctx context.Context, q Querier, t *schema.Table) (int64, error) {
	if t.EstimatedRows >= 0 {
		return t.EstimatedRows, nil
	}
	var plan []struct {
		Plan struct {
			Rows float64 `json:"Plan Rows"`
		} `json:"Plan"`
	}
	var raw []byte
	if err := q.QueryRow(ctx, "EXPLAIN (FORMAT JSON) SELECT 1 FROM "+fromTable(t)).Scan(&raw); err != nil {
		return 0, fmt.Errorf("postgres: estimating the rows of %s: %w", t.Source(), err)
	}
	if err := json.Unmarshal(raw, &plan); err != nil || len(plan) == 0 {
		return 0, fmt.Errorf("postgres: estimating the rows of %s: unexpected plan %s", t.Source(), raw)
	}
	return int64(plan[0].Plan.Rows), nil
}

// Split divides t into at most n ranges of about equal rows, estimated from a sample of
// key values (TABLESAMPLE SYSTEM: whole pages, so the sample reads a fraction of the
// table, not all of it). Keys of any orderable type, composite ones included, are compared
// by PostgreSQL itself, in the order the chunks read them. Fewer ranges come back when the
// sample has fewer distinct keys than needed; one range (the whole table) when n <= 1 or
// the sample is empty. The ranges cover every key: the first has no lower bound, the last
// no upper bound, and each Hi is the next range's Lo.
func Split(ctx context.Context, q Querier, t *schema.Table, rows int64, n int) ([]Range, error) {
	if n <= 1 || rows <= 0 {
		return []Range{{}}, nil
	}
	want := float64(n * samplePerRange)
	pct := min(100, max(0.0001, 100*want/float64(rows)))
	sql := "SELECT " + keyList(t) + " FROM " + fromTable(t) +
		" TABLESAMPLE SYSTEM (" + strconv.FormatFloat(pct, 'f', -1, 64) + ") ORDER BY " + keyList(t)
	keyed, err := queryText(ctx, q, sql, nil)
	if err != nil {
		return nil, fmt.Errorf("postgres: sampling the keys of %s: %w", t.Source(), err)
	}
	return rangesFrom(keyed, n), nil
}

// rangesFrom picks n-1 boundaries at even quantiles of sorted sample keys, dropping
// repeats (a key heavy in the sample must not make an empty range twice).
func rangesFrom(sample [][][]byte, n int) []Range {
	var bounds [][]string
	for i := 1; i < n; i++ {
		at := i * len(sample) / n
		if at >= len(sample) {
			break
		}
		k := make([]string, len(sample[at]))
		for j, v := range sample[at] {
			k[j] = string(v)
		}
		if len(bounds) > 0 && slices.Equal(bounds[len(bounds)-1], k) {
			continue
		}
		bounds = append(bounds, k)
	}
	out := make([]Range, 0, len(bounds)+1)
	var lo []string
	for _, b := range bounds {
		out = append(out, Range{Lo: lo, Hi: b})
		lo = b
	}
	return append(out, Range{Lo: lo})
}
