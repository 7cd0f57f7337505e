package verify

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/schema"
)

// Options tunes CompareWith.
type Options struct {
	// Segments is how many PostgreSQL page ranges and DynamoDB parallel-scan segments are
	// read at once (0: 4). PostgreSQL readers are also bounded by the pool's connections.
	Segments int
	// Sample, when positive, compares about that many random rows and items instead of
	// the whole table: rows drawn from PostgreSQL with TABLESAMPLE BERNOULLI (uniform over
	// rows), each looked up in DynamoDB by key, and items from randomly chosen
	// parallel-scan segments, each looked up in PostgreSQL by key (so an extra item can
	// be found too).
	Sample int
	// Recheck reads each difference's row and item again by key and reports only those
	// still different: rows changing while the table is read show as transient
	// differences otherwise.
	Recheck bool
	// MaxDiffs bounds the differences kept in the Result (0: MaxDiffs); with Recheck, at
	// most that many are looked at again, the rest counted in Result.Unchecked.
	MaxDiffs int
}

func (o Options) withDefaults() Options {
	if o.Segments <= 0 {
		o.Segments = parallelism
	}
	if o.MaxDiffs <= 0 {
		o.MaxDiffs = MaxDiffs
	}
	return o
}

// keyOf is the item key (the key attributes) of an item or of expected attributes.
func (k keySchema) keyOf(it item) item {
	key := item{}
	if v, ok := it[k.hash]; ok {
		key[k.hash] = v
	}
	if k.rng != "" {
		if v, ok := it[k.rng]; ok {
			key[k.rng] = v
		}
	}
	return key
}

// keyTextsOfRow is the text of each key column of a row, in key order.
func (src *source) keyTextsOfRow(ks keySchema, r row) []string {
	cols := ks.columns()
	out := make([]string, 0, len(cols))
	for _, name := range cols {
		for i, c := range src.columns {
			if c.name == name {
				if r[i] == nil {
					return nil
				}
				out = append(out, *r[i])
			}
		}
	}
	return out
}

// columns are the key columns, in key order.
func (k keySchema) columns() []string {
	switch {
	case k.sortCols != nil:
		return append([]string{k.hash}, k.sortCols...)
	case k.rng != "":
		return []string{k.hash, k.rng}
	}
	return []string{k.hash}
}

// keyTextsOfItem is the text of each key column an item's key stands for: a number's
// digits, a string, bytes in bytea's hex form, and the packed sort key's columns.
func (k keySchema) keyTextsOfItem(it item) ([]string, bool) {
	text := func(v types.AttributeValue) (string, bool) {
		switch v := v.(type) {
		case *types.AttributeValueMemberN:
			return v.Value, true
		case *types.AttributeValueMemberS:
			return v.Value, true
		case *types.AttributeValueMemberB:
			return `\x` + hex.EncodeToString(v.Value), true
		}
		return "", false
	}
	h, ok := text(it[k.hash])
	if !ok {
		return nil, false
	}
	out := []string{h}
	switch {
	case k.sortCols != nil:
		s, ok := it[attrSortKey].(*types.AttributeValueMemberS)
		var vals []string
		if !ok || json.Unmarshal([]byte(s.Value), &vals) != nil || len(vals) != len(k.sortCols) {
			return nil, false
		}
		out = append(out, vals...)
	case k.rng != "":
		r, ok := text(it[k.rng])
		if !ok {
			return nil, false
		}
		out = append(out, r)
	}
	return out, true
}

// rowsByKey reads the rows with the given key texts (one []string per key, in key
// order) in one transaction, under the contract's session settings.
func rowsByKey(ctx context.Context, pool *pgxpool.Pool, src *source, ks keySchema, keys [][]string) ([]row, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer conn.Release()
	tx, err := begin(ctx, conn.Conn(), "")
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
	var rel string
	if err := tx.QueryRow(ctx, "SELECT $1::oid::regclass::text", src.oid).Scan(&rel); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	from := "ONLY " + rel
	if src.partitioned {
		from = rel
	}
	cols := ks.columns()
	conds := make([]string, len(cols))
	for i, name := range cols {
		typ := ""
		for _, c := range src.columns {
			if c.name == name {
				typ = c.sqlType
			}
		}
		conds[i] = fmt.Sprintf("t.%s = $%d::text::%s", pgx.Identifier{name}.Sanitize(), i+1, typ)
	}
	q := fmt.Sprintf("SELECT %s FROM %s t WHERE %s", src.selectList(), from, strings.Join(conds, " AND "))
	var out []row
	for _, key := range keys {
		if len(key) != len(cols) {
			continue
		}
		args := make([]any, len(key))
		for i, v := range key {
			args[i] = v
		}
		if err := queryRows(ctx, tx, src, q, func(r row) { out = append(out, r) }, args...); err != nil {
			return nil, fmt.Errorf("verify: reading %s by key (%s): %w", rel, strings.Join(key, ","), err)
		}
	}
	return out, nil
}

// itemsByKey reads the items with the given keys, strongly consistent, workers at once.
func itemsByKey(ctx context.Context, db *dynamodb.Client, table string, keys []item, workers int) ([]item, error) {
	var (
		mu       sync.Mutex
		out      []item
		firstErr error
		wg       sync.WaitGroup
	)
	jobs := make(chan item)
	for range max(1, min(workers, len(keys))) {
		wg.Go(func() {
			for key := range jobs {
				got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key, ConsistentRead: aws.Bool(true)})
				mu.Lock()
				switch {
				case err != nil && firstErr == nil:
					firstErr = fmt.Errorf("verify: reading %s by key: %w", table, err)
				case err == nil && got.Item != nil:
					out = append(out, got.Item)
				}
				mu.Unlock()
			}
		})
	}
	for _, k := range keys {
		jobs <- k
	}
	close(jobs)
	wg.Wait()
	return out, firstErr
}

// recheck looks at the key of each difference again, row and item read anew, and keeps
// what still differs: at most o.MaxDiffs keys are looked at, the differences of the
// others are returned as unchecked. Differences without an item key (key schema,
// duplicates) are kept as they are.
func recheck(ctx context.Context, pool *pgxpool.Pool, db *dynamodb.Client, target string, src *source, ks keySchema, diffs []Diff, o Options) ([]Diff, int, error) {
	var kept []Diff
	type key struct {
		texts []string
		item  item
	}
	var order []string
	keys := map[string]key{}
	unchecked := 0
	for _, d := range diffs {
		if d.id == "" || d.keyTexts == nil {
			kept = append(kept, d)
			continue
		}
		if _, seen := keys[d.id]; !seen {
			if len(order) >= o.MaxDiffs {
				unchecked++
				continue
			}
			order = append(order, d.id)
			keys[d.id] = key{d.keyTexts, d.keyItem}
		}
	}
	if len(order) == 0 {
		return kept, unchecked, nil
	}
	texts := make([][]string, len(order))
	items := make([]item, len(order))
	for i, id := range order {
		texts[i], items[i] = keys[id].texts, keys[id].item
	}
	rows, err := rowsByKey(ctx, pool, src, ks, texts)
	if err != nil {
		return nil, 0, err
	}
	got, err := itemsByKey(ctx, db, target, items, o.Segments)
	if err != nil {
		return nil, 0, err
	}
	again, _ := compareSets(src, ks, rows, got)
	kept = append(kept, again...)
	sortDiffs(kept)
	return kept, unchecked, nil
}

// sampleBoth draws about n rows from PostgreSQL and n items from DynamoDB and completes
// each side with the other's look-up by key, so compareSets sees, for every sampled row,
// its item (if any) and, for every sampled item, its row (if any).
func sampleBoth(ctx context.Context, pool *pgxpool.Pool, db *dynamodb.Client, t *schema.Table, keyCols []string, n, workers, segments int) (*source, []row, []item, error) {
	src, rows, err := sampleRows(ctx, pool, t.Schema, t.Name, n)
	if err != nil {
		return nil, nil, nil, err
	}
	ks, err := expectedKeySchema(src, keyCols)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("verify: %s: %w", t.Source(), err)
	}
	if _, exists, err := targetKeySchema(ctx, db, t.Target); err != nil || !exists {
		return src, rows, nil, err
	}
	sampled, err := sampleItems(ctx, db, t.Target, n)
	if err != nil {
		return nil, nil, nil, err
	}
	// Items of the sampled rows, rows of the sampled items.
	var rowKeys []item
	seen := map[string]bool{}
	for _, r := range rows {
		attrs, _ := expectItem(src, ks, r)
		seen[ks.keyID(attrs)] = true
		if k := ks.keyOf(attrs); len(k) > 0 {
			rowKeys = append(rowKeys, k)
		}
	}
	items, err := itemsByKey(ctx, db, t.Target, rowKeys, workers)
	if err != nil {
		return nil, nil, nil, err
	}
	have := map[string]bool{}
	for _, it := range items {
		have[ks.keyID(it)] = true
	}
	var itemKeys [][]string
	for _, it := range sampled {
		id := ks.keyID(it)
		if !have[id] {
			items = append(items, it)
			have[id] = true
		}
		if !seen[id] {
			if texts, ok := ks.keyTextsOfItem(it); ok {
				itemKeys = append(itemKeys, texts)
			}
			seen[id] = true
		}
	}
	more, err := rowsByKey(ctx, pool, src, ks, itemKeys)
	if err != nil {
		return nil, nil, nil, err
	}
	return src, append(rows, more...), items, nil
}

// sampleRows draws about n rows, uniformly, with TABLESAMPLE BERNOULLI sized from the
// planner's row estimate (every row when there is none), from the table or each of its
// leaf partitions, under one snapshot.
func sampleRows(ctx context.Context, pool *pgxpool.Pool, schemaName, name string, n int) (*source, []row, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("verify: %w", err)
	}
	defer conn.Release()
	tx, err := begin(ctx, conn.Conn(), "")
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // read-only
	src, err := catalog(ctx, tx, schemaName, name)
	if err != nil {
		return nil, nil, err
	}
	var estimate float64
	for _, rel := range src.relations {
		var tuples float64
		if err := tx.QueryRow(ctx, "SELECT greatest(reltuples, 0)::float8 FROM pg_class WHERE oid = $1", rel).Scan(&tuples); err != nil {
			return nil, nil, fmt.Errorf("verify: sizing the sample of %q.%q: %w", schemaName, name, err)
		}
		estimate += tuples
	}
	percent := 100.0
	if estimate > 0 {
		// Twice the share asked for, so a stale estimate still yields about n rows.
		percent = min(100, 200*float64(n)/estimate)
	}
	var rows []row
	for _, rel := range src.relations {
		var relName string
		if err := tx.QueryRow(ctx, "SELECT $1::oid::regclass::text", rel).Scan(&relName); err != nil {
			return nil, nil, fmt.Errorf("verify: %w", err)
		}
		q := fmt.Sprintf("SELECT %s FROM ONLY %s t TABLESAMPLE BERNOULLI (%g) ORDER BY random() LIMIT %d", src.selectList(), relName, percent, n)
		if err := queryRows(ctx, tx, src, q, func(r row) { rows = append(rows, r) }); err != nil {
			return nil, nil, fmt.Errorf("verify: sampling %q.%q: %w", schemaName, name, err)
		}
	}
	rand.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	if len(rows) > n {
		rows = rows[:n]
	}
	return src, rows, nil
}

// sampleItems reads about n items from randomly chosen parallel-scan segments of the
// table (sized so that a segment holds about n items by DynamoDB's item count), strongly
// consistent, tombstones included.
func sampleItems(ctx context.Context, db *dynamodb.Client, table string, n int) ([]item, error) {
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		return nil, fmt.Errorf("verify: describing %s: %w", table, err)
	}
	total := int32(1)
	if c := aws.ToInt64(out.Table.ItemCount); c > int64(n) {
		total = int32(min(c/int64(n), 1000))
	}
	var items []item
	for _, seg := range rand.Perm(int(total)) {
		p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{
			TableName: aws.String(table), ConsistentRead: aws.Bool(true),
			Segment: aws.Int32(int32(seg)), TotalSegments: aws.Int32(total), Limit: aws.Int32(int32(n - len(items))),
		})
		for p.HasMorePages() && len(items) < n {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("verify: sampling %s: %w", table, err)
			}
			items = append(items, page.Items...)
		}
		if len(items) >= n {
			break
		}
	}
	if len(items) > n {
		items = items[:n]
	}
	return items, nil
}
