package pg

import (
	"context"
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

// samplePagesPerRange is how many table pages are sampled per range the table may get:
// whole pages are sampled, and on a table whose keys follow its physical order (a serial
// key) each page holds one run of keys, so the boundaries are as good as the number of
// pages they are chosen from.
const samplePagesPerRange = 16

// Split divides t into ranges of about rangeRows rows each, at most maxRanges, and returns
// them with the table's estimated rows. Boundaries are chosen at even quantiles of key
// values sampled with TABLESAMPLE SYSTEM (whole pages: at most maxRanges ×
// samplePagesPerRange of them are read, not the table), which also estimates the rows of a
// table never analysed. Keys of any orderable type, composite ones included, are compared
// by PostgreSQL itself, in the order the chunks read them. A table whose statistics say it
// fits one range is not sampled. The ranges cover every key: the first has no lower bound,
// the last no upper bound, and each Hi is the next range's Lo.
func Split(ctx context.Context, q Querier, t *schema.Table, rangeRows int64, maxRanges int) ([]Range, int64, error) {
	if maxRanges <= 1 || (t.EstimatedRows >= 0 && t.EstimatedRows <= rangeRows) {
		return []Range{{}}, t.EstimatedRows, nil
	}
	var pages int64
	if err := q.QueryRow(ctx, "SELECT pg_relation_size($1::oid::regclass) / current_setting('block_size')::bigint", t.OID).Scan(&pages); err != nil {
		return nil, 0, fmt.Errorf("postgres: reading the size of %s: %w", t.Source(), err)
	}
	pct := 100.0
	if want := float64(maxRanges * samplePagesPerRange); pages > 0 && want < float64(pages) {
		pct = 100 * want / float64(pages)
	}
	sql := "SELECT " + keyList(t) + " FROM " + fromTable(t) +
		" TABLESAMPLE SYSTEM (" + strconv.FormatFloat(pct, 'f', -1, 64) + ") ORDER BY " + keyList(t)
	sample, err := queryText(ctx, q, sql, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: sampling the keys of %s: %w", t.Source(), err)
	}
	rows := int64(float64(len(sample)) * 100 / pct)
	n := int(min(int64(maxRanges), max(1, (rows+rangeRows-1)/max(1, rangeRows))))
	return rangesFrom(sample, n), rows, nil
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
