package verify

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Item attributes Tandem adds (README "Items in DynamoDB"), spelled here from the contract.
const (
	attrLSN     = "__lsn"
	attrSeq     = "__seq"
	attrSrc     = "__src"
	attrEpoch   = "__epoch"
	attrDeleted = "__deleted"
	attrExpires = "__expires"
	// attrSortKey is the sort key of tables keyed by more than two columns: the JSON array
	// of the text output of the second and later key columns.
	attrSortKey = "__sk"
)

type item = map[string]types.AttributeValue

// scanAll reads every item of table with strongly consistent parallel scan segments.
func scanAll(ctx context.Context, db *dynamodb.Client, table string, segments int) ([]item, error) {
	var (
		mu    sync.Mutex
		items []item
		wg    sync.WaitGroup
		errs  = make([]error, segments)
	)
	for seg := range segments {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{
				TableName: aws.String(table), ConsistentRead: aws.Bool(true),
				Segment: aws.Int32(int32(seg)), TotalSegments: aws.Int32(int32(segments)),
			})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					errs[seg] = fmt.Errorf("verify: scanning %s: %w", table, err)
					return
				}
				mu.Lock()
				items = append(items, page.Items...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return items, nil
}

// keySchema is the item key Tandem must use: the first key column is the partition key,
// the second the sort key; with more key columns the sort key is attrSortKey.
type keySchema struct {
	hash, rng         string // attribute names; rng "" when there is no sort key
	hashType, rngType types.ScalarAttributeType
	// sortCols are the key columns packed into attrSortKey (nil otherwise).
	sortCols []string
}

func (k keySchema) String() string {
	s := fmt.Sprintf("HASH %q (%s)", k.hash, k.hashType)
	if k.rng != "" {
		s += fmt.Sprintf(", RANGE %q (%s)", k.rng, k.rngType)
	}
	return s
}

// targetKeySchema reads the key schema of the DynamoDB table; ok is false if the table
// does not exist.
func targetKeySchema(ctx context.Context, db *dynamodb.Client, table string) (k keySchema, ok bool, err error) {
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	var nf *types.ResourceNotFoundException
	if asErr(err, &nf) {
		return k, false, nil
	}
	if err != nil {
		return k, false, fmt.Errorf("verify: describing %s: %w", table, err)
	}
	typeOf := map[string]types.ScalarAttributeType{}
	for _, d := range out.Table.AttributeDefinitions {
		typeOf[aws.ToString(d.AttributeName)] = d.AttributeType
	}
	for _, e := range out.Table.KeySchema {
		name := aws.ToString(e.AttributeName)
		if e.KeyType == types.KeyTypeHash {
			k.hash, k.hashType = name, typeOf[name]
		} else {
			k.rng, k.rngType = name, typeOf[name]
		}
	}
	return k, true, nil
}

// keyID identifies the item a key addresses, numbers by value as DynamoDB compares them.
func (k keySchema) keyID(it item) string {
	return canonKey(it[k.hash]) + "\x00" + canonKey(it[k.rng])
}

func canonKey(v types.AttributeValue) string {
	switch v := v.(type) {
	case *types.AttributeValueMemberN:
		if r, ok := new(big.Rat).SetString(v.Value); ok {
			return "N" + r.RatString()
		}
		return "N?" + v.Value
	case *types.AttributeValueMemberS:
		return "S" + v.Value
	case *types.AttributeValueMemberB:
		return "B" + string(v.Value)
	case nil:
		return "-"
	}
	return "?" + render(v)
}

// keyString renders an item's key for a report: `id=7`, `code="ab  "`, with the columns
// of attrSortKey unpacked.
func (k keySchema) keyString(it item) string {
	parts := []string{k.hash + "=" + renderKey(it[k.hash])}
	switch {
	case k.sortCols != nil:
		var vals []string
		s, ok := it[attrSortKey].(*types.AttributeValueMemberS)
		if ok && json.Unmarshal([]byte(s.Value), &vals) == nil && len(vals) == len(k.sortCols) {
			for i, c := range k.sortCols {
				parts = append(parts, c+"="+strconv.Quote(vals[i]))
			}
		} else {
			parts = append(parts, attrSortKey+"="+renderKey(it[attrSortKey]))
		}
	case k.rng != "":
		parts = append(parts, k.rng+"="+renderKey(it[k.rng]))
	}
	return strings.Join(parts, ",")
}

func renderKey(v types.AttributeValue) string {
	switch v := v.(type) {
	case *types.AttributeValueMemberN:
		return v.Value
	case *types.AttributeValueMemberS:
		return strconv.Quote(v.Value)
	case *types.AttributeValueMemberB:
		return `\x` + hex.EncodeToString(v.Value)
	case nil:
		return "NULL"
	}
	return render(v)
}

// equalAV compares attribute values as DynamoDB does: numbers by value, maps unordered.
func equalAV(a, b types.AttributeValue) bool {
	switch a := a.(type) {
	case *types.AttributeValueMemberS:
		b, ok := b.(*types.AttributeValueMemberS)
		return ok && a.Value == b.Value
	case *types.AttributeValueMemberN:
		b, ok := b.(*types.AttributeValueMemberN)
		if !ok {
			return false
		}
		x, okx := new(big.Rat).SetString(a.Value)
		y, oky := new(big.Rat).SetString(b.Value)
		return okx && oky && x.Cmp(y) == 0
	case *types.AttributeValueMemberB:
		b, ok := b.(*types.AttributeValueMemberB)
		return ok && bytes.Equal(a.Value, b.Value)
	case *types.AttributeValueMemberBOOL:
		b, ok := b.(*types.AttributeValueMemberBOOL)
		return ok && a.Value == b.Value
	case *types.AttributeValueMemberNULL:
		b, ok := b.(*types.AttributeValueMemberNULL)
		return ok && a.Value == b.Value
	case *types.AttributeValueMemberL:
		b, ok := b.(*types.AttributeValueMemberL)
		if !ok || len(a.Value) != len(b.Value) {
			return false
		}
		for i := range a.Value {
			if !equalAV(a.Value[i], b.Value[i]) {
				return false
			}
		}
		return true
	case *types.AttributeValueMemberM:
		b, ok := b.(*types.AttributeValueMemberM)
		if !ok || len(a.Value) != len(b.Value) {
			return false
		}
		for k, v := range a.Value {
			w, ok := b.Value[k]
			if !ok || !equalAV(v, w) {
				return false
			}
		}
		return true
	}
	// Sets never come from Tandem: compare their rendering.
	return render(a) == render(b)
}

// render writes an attribute value in DynamoDB's JSON shape with sorted map keys, for
// reports.
func render(v types.AttributeValue) string {
	var b strings.Builder
	renderTo(&b, v)
	return b.String()
}

func renderTo(b *strings.Builder, v types.AttributeValue) {
	q := func(s string) { j, _ := json.Marshal(s); b.Write(j) }
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		b.WriteString(`{"S":`)
		q(v.Value)
	case *types.AttributeValueMemberN:
		b.WriteString(`{"N":`)
		q(v.Value)
	case *types.AttributeValueMemberB:
		b.WriteString(`{"B":"\\x` + hex.EncodeToString(v.Value) + `"`)
	case *types.AttributeValueMemberBOOL:
		fmt.Fprintf(b, `{"BOOL":%t`, v.Value)
	case *types.AttributeValueMemberNULL:
		fmt.Fprintf(b, `{"NULL":%t`, v.Value)
	case *types.AttributeValueMemberL:
		b.WriteString(`{"L":[`)
		for i, e := range v.Value {
			if i > 0 {
				b.WriteByte(',')
			}
			renderTo(b, e)
		}
		b.WriteByte(']')
	case *types.AttributeValueMemberM:
		b.WriteString(`{"M":{`)
		keys := make([]string, 0, len(v.Value))
		for k := range v.Value {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			q(k)
			b.WriteByte(':')
			renderTo(b, v.Value[k])
		}
		b.WriteByte('}')
	case *types.AttributeValueMemberSS:
		fmt.Fprintf(b, `{"SS":%q`, v.Value)
	case *types.AttributeValueMemberNS:
		fmt.Fprintf(b, `{"NS":%q`, v.Value)
	case *types.AttributeValueMemberBS:
		fmt.Fprintf(b, `{"BS":%x`, v.Value)
	case nil:
		b.WriteString("absent")
		return
	default:
		fmt.Fprintf(b, "%T", v)
		return
	}
	b.WriteByte('}')
}

// metadataProblems checks the metadata a live item must carry (README "Items in DynamoDB"): __src snapshot
// or stream, __lsn a WAL position, a stream item's __seq, a snapshot item's __epoch, and
// no tombstone-only attribute.
func metadataProblems(it item) []string {
	var out []string
	isUint := func(name string) bool {
		n, ok := it[name].(*types.AttributeValueMemberN)
		if !ok {
			return false
		}
		_, err := strconv.ParseUint(n.Value, 10, 64)
		return err == nil
	}
	src, _ := it[attrSrc].(*types.AttributeValueMemberS)
	switch {
	case src == nil:
		out = append(out, fmt.Sprintf("%s is %s, want S snapshot or stream", attrSrc, render(it[attrSrc])))
	case src.Value == "stream":
		if !isUint(attrSeq) {
			out = append(out, fmt.Sprintf("stream item's %s is %s, want N (order in the transaction)", attrSeq, render(it[attrSeq])))
		}
	case src.Value == "snapshot":
		if !isUint(attrEpoch) {
			out = append(out, fmt.Sprintf("snapshot item's %s is %s, want N (snapshot epoch)", attrEpoch, render(it[attrEpoch])))
		}
	default:
		out = append(out, fmt.Sprintf("%s is %s, want snapshot or stream", attrSrc, render(it[attrSrc])))
	}
	if n, ok := it[attrLSN].(*types.AttributeValueMemberN); !ok || !isUint(attrLSN) || n.Value == "0" {
		out = append(out, fmt.Sprintf("%s is %s, want N (a WAL position)", attrLSN, render(it[attrLSN])))
	}
	if v, ok := it[attrDeleted]; ok {
		out = append(out, fmt.Sprintf("live item has %s = %s (only tombstones carry it, as true)", attrDeleted, render(v)))
	}
	if v, ok := it[attrExpires]; ok {
		out = append(out, fmt.Sprintf("live item has %s = %s (only tombstones carry it)", attrExpires, render(v)))
	}
	return out
}

// isTombstone: a reader sees as live every item without __deleted = true.
func isTombstone(it item) bool {
	b, ok := it[attrDeleted].(*types.AttributeValueMemberBOOL)
	return ok && b.Value
}
