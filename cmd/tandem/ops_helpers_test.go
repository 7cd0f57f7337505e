package main

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/localstack/verify"
	"tandem/shared/pipeline"
)

// Helpers of the verify, resnapshot and deadletters tests: fixtures are made converged
// in this process, through the pipeline (plan, snapshot, finalize), and the binary is
// then run against them.

// converge plans every table and snapshots and finalizes the given ones.
func (f *cliFixture) opsConverge(p *pipeline.Env, tables ...string) {
	f.t.Helper()
	if _, err := p.Plan(f.ctx, pipeline.PlanInput{}); err != nil {
		f.t.Fatalf("plan: %v", err)
	}
	for _, source := range tables {
		t, err := p.Describe(f.ctx, source)
		if err != nil {
			f.t.Fatal(err)
		}
		res, err := p.Copier().Run(f.ctx, t, time.Time{})
		if err != nil || !res.Done {
			f.t.Fatalf("snapshot of %s: %+v, %v", source, res, err)
		}
		if _, err := p.Finalize(f.ctx, pipeline.TableInput{Table: source}); err != nil {
			f.t.Fatalf("finalize of %s: %v", source, err)
		}
	}
}

// target is the DynamoDB table a source table is replicated into.
func (f *cliFixture) opsTarget(p *pipeline.Env, source string) string {
	f.t.Helper()
	t, err := p.Describe(f.ctx, source)
	if err != nil {
		f.t.Fatal(err)
	}
	return t.Target
}

// items reads every item of a DynamoDB table, by the JSON of its key.
func (f *cliFixture) opsItems(p *pipeline.Env, table string, keys ...string) map[string]map[string]types.AttributeValue {
	f.t.Helper()
	out := map[string]map[string]types.AttributeValue{}
	pages := dynamodb.NewScanPaginator(p.DB, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(f.ctx)
		if err != nil {
			f.t.Fatalf("scanning %s: %v", table, err)
		}
		for _, it := range page.Items {
			var parts []string
			for _, k := range keys {
				parts = append(parts, opsRender(it[k]))
			}
			out[strings.Join(parts, ",")] = it
		}
	}
	return out
}

// render writes an attribute value (or item) for comparisons and messages.
func opsRender(v types.AttributeValue) string {
	var plain any
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		plain = map[string]string{"S": v.Value}
	case *types.AttributeValueMemberN:
		plain = map[string]string{"N": v.Value}
	case *types.AttributeValueMemberBOOL:
		plain = map[string]bool{"BOOL": v.Value}
	case *types.AttributeValueMemberB:
		plain = map[string][]byte{"B": v.Value}
	case *types.AttributeValueMemberM:
		m := map[string]string{}
		for k, e := range v.Value {
			m[k] = opsRender(e)
		}
		plain = map[string]any{"M": m}
	case *types.AttributeValueMemberL:
		l := make([]string, len(v.Value))
		for i, e := range v.Value {
			l[i] = opsRender(e)
		}
		plain = map[string]any{"L": l}
	case nil:
		return "absent"
	default:
		plain = v
	}
	b, _ := json.Marshal(plain)
	return string(b)
}

// renderItem writes a whole item with sorted attribute names.
func opsRenderItem(it map[string]types.AttributeValue) string {
	names := make([]string, 0, len(it))
	for k := range it {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k + "=" + opsRender(it[k]) + " ")
	}
	return b.String()
}

// compare runs the independent checker in this process.
func (f *cliFixture) opsCompare(p *pipeline.Env, source string) verify.Result {
	f.t.Helper()
	t, err := p.Describe(f.ctx, source)
	if err != nil {
		f.t.Fatal(err)
	}
	res, err := verify.Compare(f.ctx, p.PG, p.DB, t)
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}

func opsIntKey(name, v string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{name: &types.AttributeValueMemberN{Value: v}}
}

func opsMust(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
