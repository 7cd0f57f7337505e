// Package verify compares a DynamoDB target table with its PostgreSQL source: every live
// row, every attribute, and no extra live item. Tests and the demo use it; so can an
// operator who wants proof.
//
// It is an outside check of README "Items in DynamoDB", independent of the code it checks: PostgreSQL is
// read by physical position (ctid ranges under one exported snapshot), not by the
// snapshot's keyset chunk reader; the columns come from its own catalog query; the
// expected item is derived from README "Items in DynamoDB" by this package's own decoding, not by shared/mapping
// or shared/schema. Only the table's identity, its target name and the names of its key
// columns (which configuration may choose) are taken from the *schema.Table.
//
// CompareWith's Options (used by `tandem verify`) set the parallel segments, compare a
// random sample instead of the whole table, and look at each difference once more by
// key; the look-ups by key are this package's own queries too (the key's text cast to
// the column's type), never Tandem's row reader.
package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/schema"
)

// Kind classifies a difference.
type Kind string

// The kinds of difference.
const (
	// Missing: a PostgreSQL row has no item.
	Missing Kind = "missing"
	// Deleted: a PostgreSQL row's item is a tombstone.
	Deleted Kind = "deleted"
	// Extra: a live item has no PostgreSQL row.
	Extra Kind = "extra"
	// Differs: an attribute of a live item is not what README "Items in DynamoDB" says it must be (or is there
	// when the column is NULL, or is not a column at all).
	Differs Kind = "differs"
	// Metadata: a live item's __ attributes break README "Items in DynamoDB".
	Metadata Kind = "metadata"
	// Duplicate: two rows (or two items) have the same item key.
	Duplicate Kind = "duplicate"
	// Unmappable: a PostgreSQL value README "Items in DynamoDB" gives no attribute for (invalid UTF-8, ...).
	Unmappable Kind = "unmappable"
	// KeySchema: the target table is missing or keyed otherwise than README "Items in DynamoDB" says.
	KeySchema Kind = "keyschema"
)

// Diff is one difference, with the item key it concerns (`id=7`, `a=1,b="x"`).
type Diff struct {
	Kind Kind
	Key  string
	// Attr is the attribute of a Differs, Metadata or Unmappable difference.
	Attr string
	// Want and Got are rendered attribute values (or items), clipped; "absent" when
	// there is none.
	Want, Got string

	// id, keyTexts and keyItem name the item key for a second look (Options.Recheck):
	// its identity, the text of each key column, and the item key's attributes.
	id       string
	keyTexts []string
	keyItem  item
}

func (d Diff) String() string {
	switch d.Kind {
	case Differs:
		return fmt.Sprintf("differs %s: %q want %s, got %s", d.Key, d.Attr, d.Want, d.Got)
	case Missing:
		return fmt.Sprintf("missing %s: want %s", d.Key, d.Want)
	case Deleted:
		return fmt.Sprintf("deleted %s: a tombstone %s, but the row is live: want %s", d.Key, d.Got, d.Want)
	case Extra:
		return fmt.Sprintf("extra   %s: got %s", d.Key, d.Got)
	}
	s := fmt.Sprintf("%s %s", d.Kind, d.Key)
	if d.Attr != "" {
		s += fmt.Sprintf(" %q", d.Attr)
	}
	if d.Want != "" {
		s += ": want " + d.Want
	}
	if d.Got != "" {
		s += ", got " + d.Got
	}
	return s
}

// Result is the outcome of one comparison.
type Result struct {
	Table string
	// Rows in PostgreSQL, live items and tombstones in DynamoDB.
	Rows, Items, Tombstones int
	// Diffs holds the first MaxDiffs differences in key order; Total counts them all.
	Diffs []Diff
	Total int
	// Sample is the number of rows and items sampled (0: the whole table was compared).
	Sample int
	// Unchecked counts differences (included in Total) not looked at again by key, past
	// Options.MaxDiffs confirmed ones (Options.Recheck).
	Unchecked int
}

// MaxDiffs bounds the differences kept in a Result.
const MaxDiffs = 50

// Equal reports whether the table matched.
func (r Result) Equal() bool { return r.Total == 0 }

// Of returns the kept differences of kind k.
func (r Result) Of(k Kind) []Diff {
	var out []Diff
	for _, d := range r.Diffs {
		if d.Kind == k {
			out = append(out, d)
		}
	}
	return out
}

func (r Result) String() string {
	if r.Equal() {
		if r.Sample > 0 {
			return fmt.Sprintf("%s: a sample of %d rows and %d items, equal", r.Table, r.Rows, r.Items+r.Tombstones)
		}
		return fmt.Sprintf("%s: %d rows, equal", r.Table, r.Rows)
	}
	lines := make([]string, len(r.Diffs))
	for i, d := range r.Diffs {
		lines[i] = d.String()
	}
	if r.Total > len(r.Diffs) {
		lines = append(lines, fmt.Sprintf("... and %d more", r.Total-len(r.Diffs)))
	}
	return fmt.Sprintf("%s: %d rows in PostgreSQL, %d live items (and %d tombstones) in DynamoDB, %d differences:\n  %s",
		r.Table, r.Rows, r.Items, r.Tombstones, r.Total, strings.Join(lines, "\n  "))
}

// parallelism is how many PostgreSQL page ranges and DynamoDB scan segments are read at
// once when Options.Segments is not set.
const parallelism = 4

// Compare reads t's rows from PostgreSQL and its target from DynamoDB and compares them.
// Only t's Schema, Name, Target and the names of its Key columns are used.
func Compare(ctx context.Context, pool *pgxpool.Pool, db *dynamodb.Client, t *schema.Table) (Result, error) {
	return CompareWith(ctx, pool, db, t, Options{})
}

// CompareWith is Compare with options: how many parallel segments, a sample instead of
// the whole table, and a second look at each difference.
func CompareWith(ctx context.Context, pool *pgxpool.Pool, db *dynamodb.Client, t *schema.Table, o Options) (Result, error) {
	o = o.withDefaults()
	res := Result{Table: t.Source(), Sample: o.Sample}
	if len(t.Key) == 0 {
		return res, fmt.Errorf("verify: %s has no key columns", t.Source())
	}
	keyCols := make([]string, len(t.Key))
	for i, ci := range t.Key {
		keyCols[i] = t.Columns[ci].Name
	}
	workers := o.Segments
	if m := int(pool.Config().MaxConns); m < workers {
		workers = max(m, 1)
	}

	var (
		src   *source
		rows  []row
		items []item
		err   error
	)
	if o.Sample > 0 {
		src, rows, items, err = sampleBoth(ctx, pool, db, t, keyCols, o.Sample, workers, o.Segments)
		if err != nil {
			return res, err
		}
	} else {
		type scanned struct {
			items []item
			err   error
		}
		scan := make(chan scanned, 1)
		go func() {
			items, err := scanAll(ctx, db, t.Target, o.Segments)
			scan <- scanned{items, err}
		}()
		src, err = readRows(ctx, pool, t.Schema, t.Name, workers, func(r row) { rows = append(rows, r) })
		scannedItems := <-scan
		if err != nil {
			return res, err
		}
		items, err = scannedItems.items, scannedItems.err
	}

	ks, err2 := expectedKeySchema(src, keyCols)
	if err2 != nil {
		return res, fmt.Errorf("verify: %s: %w", t.Source(), err2)
	}
	got, exists, err2 := targetKeySchema(ctx, db, t.Target)
	if err2 != nil {
		return res, err2
	}
	var diffs []Diff
	switch {
	case !exists:
		diffs = append(diffs, Diff{Kind: KeySchema, Key: t.Target, Want: ks.String(), Got: "no such table"})
		items, err = nil, nil
	case got.hash != ks.hash || got.hashType != ks.hashType || got.rng != ks.rng || got.rngType != ks.rngType:
		diffs = append(diffs, Diff{Kind: KeySchema, Key: t.Target, Want: ks.String(), Got: got.String()})
	}
	if err != nil {
		return res, err
	}

	found, counts := compareSets(src, ks, rows, items)
	res.Rows, res.Items, res.Tombstones = counts.rows, counts.items, counts.tombstones
	diffs = append(diffs, found...)
	sortDiffs(diffs)
	if o.Recheck && exists {
		if diffs, res.Unchecked, err = recheck(ctx, pool, db, t.Target, src, ks, diffs, o); err != nil {
			return res, err
		}
	}
	res.Total = len(diffs) + res.Unchecked
	if len(diffs) > o.MaxDiffs {
		diffs = diffs[:o.MaxDiffs]
	}
	res.Diffs = diffs
	return res, nil
}

func sortDiffs(diffs []Diff) {
	sort.SliceStable(diffs, func(i, j int) bool {
		if diffs[i].Key != diffs[j].Key {
			return diffs[i].Key < diffs[j].Key
		}
		return diffs[i].Attr < diffs[j].Attr
	})
}

// counts are what compareSets saw: PostgreSQL rows, live items and tombstones.
type counts struct{ rows, items, tombstones int }

// compareSets compares PostgreSQL rows with DynamoDB items: every row must have its live
// item, equal to what README "Items in DynamoDB" prescribes, and every live item its row. Each difference about
// one item key carries the key's identity and text (for a second look by key).
func compareSets(src *source, ks keySchema, rows []row, items []item) ([]Diff, counts) {
	var diffs []Diff
	// What PostgreSQL says the items must be, by item key.
	type wantItem struct {
		key   string
		attrs item
		texts []string
	}
	want := map[string]*wantItem{}
	var order []string
	for _, r := range rows {
		attrs, problems := expectItem(src, ks, r)
		k := ks.keyString(attrs)
		id := ks.keyID(attrs)
		texts := src.keyTextsOfRow(ks, r)
		for _, p := range problems {
			diffs = append(diffs, Diff{Kind: Unmappable, Key: k, Attr: p.attr, Want: p.err, id: id, keyTexts: texts, keyItem: ks.keyOf(attrs)})
		}
		if _, dup := want[id]; dup {
			diffs = append(diffs, Diff{Kind: Duplicate, Key: k, Want: "one PostgreSQL row per item key", Got: "two rows with this key"})
			continue
		}
		want[id] = &wantItem{key: k, attrs: attrs, texts: texts}
		order = append(order, id)
	}

	live := map[string]item{}
	tomb := map[string]item{}
	for _, it := range items {
		id := ks.keyID(it)
		if _, dup := live[id]; dup {
			diffs = append(diffs, Diff{Kind: Duplicate, Key: ks.keyString(it), Got: "the scan returned this key twice"})
			continue
		}
		if _, dup := tomb[id]; dup {
			diffs = append(diffs, Diff{Kind: Duplicate, Key: ks.keyString(it), Got: "the scan returned this key twice"})
			continue
		}
		if isTombstone(it) {
			tomb[id] = it
		} else {
			live[id] = it
		}
	}

	for _, id := range order {
		w := want[id]
		keyed := func(d Diff) Diff { d.id, d.keyTexts, d.keyItem = id, w.texts, ks.keyOf(w.attrs); return d }
		it, ok := live[id]
		if !ok {
			if tb, isTomb := tomb[id]; isTomb {
				diffs = append(diffs, keyed(Diff{Kind: Deleted, Key: w.key, Want: clip(renderItem(w.attrs)), Got: fmt.Sprintf("(%s %s, %s %s)", attrLSN, renderKey(tb[attrLSN]), attrSrc, renderKey(tb[attrSrc]))}))
			} else {
				diffs = append(diffs, keyed(Diff{Kind: Missing, Key: w.key, Want: clip(renderItem(w.attrs))}))
			}
			continue
		}
		for _, d := range compareItem(w.key, w.attrs, it) {
			diffs = append(diffs, keyed(d))
		}
	}
	for id, it := range live {
		if _, ok := want[id]; !ok {
			texts, _ := ks.keyTextsOfItem(it)
			diffs = append(diffs, Diff{Kind: Extra, Key: ks.keyString(it), Got: clip(renderItem(it)), id: id, keyTexts: texts, keyItem: ks.keyOf(it)})
		}
	}
	return diffs, counts{rows: len(rows), items: len(live), tombstones: len(tomb)}
}

// expectedKeySchema is README "Items in DynamoDB"'s item key for the key columns.
func expectedKeySchema(src *source, keyCols []string) (keySchema, error) {
	typeOf := map[string]*colType{}
	for _, c := range src.columns {
		typeOf[c.name] = c.typ
	}
	for _, k := range keyCols {
		if typeOf[k] == nil {
			return keySchema{}, fmt.Errorf("key column %q is not a (non-generated) column of the table", k)
		}
	}
	ks := keySchema{hash: keyCols[0], hashType: typeOf[keyCols[0]].keyType()}
	switch {
	case len(keyCols) == 2:
		ks.rng, ks.rngType = keyCols[1], typeOf[keyCols[1]].keyType()
	case len(keyCols) > 2:
		ks.rng, ks.rngType, ks.sortCols = attrSortKey, types.ScalarAttributeTypeS, keyCols[1:]
	}
	return ks, nil
}

type problem struct{ attr, err string }

// expectItem builds the user attributes (and attrSortKey) README "Items in DynamoDB" prescribes for a row.
func expectItem(src *source, ks keySchema, r row) (item, []problem) {
	attrs := make(item, len(r)+1)
	var problems []problem
	text := map[string]*string{}
	for i, c := range src.columns {
		text[c.name] = r[i]
		if r[i] == nil {
			continue
		}
		av, err := expect(c.typ, *r[i])
		if err != nil {
			problems = append(problems, problem{c.name, err.Error()})
			continue
		}
		attrs[c.name] = av
	}
	if ks.sortCols != nil {
		parts := make([]string, len(ks.sortCols))
		complete := true
		for i, c := range ks.sortCols {
			if text[c] == nil {
				complete = false
				break
			}
			parts[i] = *text[c]
		}
		if complete {
			b, _ := json.Marshal(parts)
			attrs[attrSortKey] = &types.AttributeValueMemberS{Value: string(b)}
		}
	}
	return attrs, problems
}

// compareItem reports each attribute of a live item that is not as expected, and its
// metadata problems. Attributes with the "__" prefix other than attrSortKey are Tandem's
// metadata (more may be added), never columns.
func compareItem(key string, want, got item) []Diff {
	var diffs []Diff
	for name, w := range want {
		g, ok := got[name]
		if !ok || !equalAV(w, g) {
			diffs = append(diffs, Diff{Kind: Differs, Key: key, Attr: name, Want: clip(render(w)), Got: clip(render(g))})
		}
	}
	for name, g := range got {
		if _, ok := want[name]; !ok && !isMetadata(name) {
			diffs = append(diffs, Diff{Kind: Differs, Key: key, Attr: name, Want: "absent", Got: clip(render(g))})
		}
	}
	for _, p := range metadataProblems(got) {
		diffs = append(diffs, Diff{Kind: Metadata, Key: key, Got: p})
	}
	return diffs
}

func isMetadata(name string) bool { return strings.HasPrefix(name, "__") && name != attrSortKey }

// renderItem renders an item's attributes, sorted by name.
func renderItem(it item) string {
	return render(&types.AttributeValueMemberM{Value: it})
}

// asErr is errors.As, for the SDK's typed exceptions.
func asErr[T error](err error, target *T) bool { return err != nil && errors.As(err, target) }
