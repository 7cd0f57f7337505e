// Package verify compares a DynamoDB target table with its PostgreSQL source: every live
// row, every attribute, and no extra live item. Tests and the demo use it; so can an
// operator who wants proof.
package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/pg"
	"tandem/shared/precedence"
	"tandem/shared/schema"
)

// Result is the outcome of one comparison.
type Result struct {
	Table string
	// Rows in PostgreSQL and live items in DynamoDB.
	Rows, Items int
	// Diffs describes each missing, extra or different item (at most MaxDiffs).
	Diffs []string
}

// MaxDiffs bounds the differences reported.
const MaxDiffs = 20

// Equal reports whether the table matched.
func (r Result) Equal() bool { return len(r.Diffs) == 0 }

func (r Result) String() string {
	if r.Equal() {
		return fmt.Sprintf("%s: %d rows, equal", r.Table, r.Rows)
	}
	return fmt.Sprintf("%s: %d rows in PostgreSQL, %d live items in DynamoDB:\n  %s", r.Table, r.Rows, r.Items, strings.Join(r.Diffs, "\n  "))
}

// Compare reads t from PostgreSQL (pool must use mapping.SessionSettings, as pg.Open does)
// and its target from DynamoDB, and compares them.
func Compare(ctx context.Context, pool *pgxpool.Pool, db *dynamodb.Client, t *schema.Table) (Result, error) {
	res := Result{Table: t.Source()}
	want := map[string]string{}
	var cursor []string
	for {
		ch, err := pg.ReadChunk(ctx, pool, t, cursor, 1000)
		if err != nil {
			return res, err
		}
		if len(ch.Rows) == 0 {
			break
		}
		for _, row := range ch.Rows {
			item, err := t.Item(row)
			if err != nil {
				return res, err
			}
			k, v := canonItem(t, item)
			want[k] = v
		}
		cursor = ch.LastKey
	}
	got := map[string]string{}
	p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{TableName: &t.Target, ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return res, fmt.Errorf("scanning %s: %w", t.Target, err)
		}
		for _, item := range page.Items {
			if !precedence.IsTombstone(item) {
				k, v := canonItem(t, item)
				got[k] = v
			}
		}
	}
	res.Rows, res.Items = len(want), len(got)
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			res.Diffs = append(res.Diffs, "missing "+k+" "+short(v))
		case g != v:
			res.Diffs = append(res.Diffs, "differs "+k+"\n     want "+short(v)+"\n     got  "+short(g))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			res.Diffs = append(res.Diffs, "extra   "+k+" "+short(v))
		}
	}
	sort.Strings(res.Diffs)
	if n := len(res.Diffs); n > MaxDiffs {
		res.Diffs = append(res.Diffs[:MaxDiffs], fmt.Sprintf("... and %d more", n-MaxDiffs))
	}
	return res, nil
}

func short(s string) string {
	if len(s) > 240 {
		return s[:240] + "…"
	}
	return s
}

// canonItem renders an item's key and user attributes (metadata stripped) canonically,
// numbers compared by value.
func canonItem(t *schema.Table, item map[string]types.AttributeValue) (key, value string) {
	user := map[string]any{}
	for k, v := range item {
		if !strings.HasPrefix(k, "__") {
			user[k] = canon(v)
		}
	}
	keyAttrs := map[string]any{}
	for _, k := range t.KeySchema() {
		keyAttrs[k.Name] = canon(item[k.Name])
	}
	kb, _ := json.Marshal(keyAttrs)
	vb, _ := json.Marshal(user)
	return string(kb), string(vb)
}

func canon(v types.AttributeValue) any {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return map[string]any{"S": v.Value}
	case *types.AttributeValueMemberN:
		r, ok := new(big.Rat).SetString(v.Value)
		if !ok {
			return map[string]any{"N?": v.Value}
		}
		return map[string]any{"N": r.RatString()}
	case *types.AttributeValueMemberB:
		return map[string]any{"B": v.Value}
	case *types.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": v.Value}
	case *types.AttributeValueMemberNULL:
		return map[string]any{"NULL": true}
	case *types.AttributeValueMemberL:
		l := make([]any, len(v.Value))
		for i, e := range v.Value {
			l[i] = canon(e)
		}
		return map[string]any{"L": l}
	case *types.AttributeValueMemberM:
		m := map[string]any{}
		for k, e := range v.Value {
			m[k] = canon(e)
		}
		return map[string]any{"M": m}
	case nil:
		return nil
	}
	return fmt.Sprintf("%T", v)
}
