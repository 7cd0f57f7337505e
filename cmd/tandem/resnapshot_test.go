package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"tandem/shared/config"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/streamer/stream"
)

// damage alters attribute name of item id behind Tandem's back.
func (f *cliFixture) opsDamage(p *pipeline.Env, target, id, name, value string) {
	f.t.Helper()
	_, err := p.DB.UpdateItem(f.ctx, &dynamodb.UpdateItemInput{TableName: &target, Key: opsIntKey("id", id),
		UpdateExpression:          aws.String("SET #n = :v"),
		ExpressionAttributeNames:  map[string]string{"#n": name},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: value}}})
	opsMust(f.t, "damaging "+target+" "+id, err)
}

// sameItems fails unless two snapshots of a table's items are identical, metadata
// (__lsn, __src, __epoch) included; keep selects the keys compared (nil: all).
func opsSameItems(t *testing.T, what string, before, after map[string]map[string]types.AttributeValue, keep func(string) bool) {
	t.Helper()
	n := 0
	for k, b := range before {
		if keep != nil && !keep(k) {
			continue
		}
		n++
		if a, ok := after[k]; !ok || opsRenderItem(a) != opsRenderItem(b) {
			t.Errorf("%s: item %s changed:\nbefore %s\nafter  %s", what, k, opsRenderItem(b), opsRenderItem(after[k]))
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok && (keep == nil || keep(k)) {
			t.Errorf("%s: item %s appeared", what, k)
		}
	}
	if n == 0 {
		t.Errorf("%s: no item compared", what)
	}
}

// TestResnapshotOneTable: a re-snapshot of one table repairs it (damaged, missing,
// stream-written and extra items, a row deleted without the stream) so that verify
// passes, while the other table's items and state are untouched.
func TestResnapshotOneTable(t *testing.T) {
	f := newCLIFixture(t, opsDDL, nil)
	p := f.pipelineEnv()
	f.opsConverge(p, "public.items", "public.pairs")
	items, pairs := f.opsTarget(p, "public.items"), f.opsTarget(p, "public.pairs")
	pairsBefore := f.opsItems(p, pairs, "k", "n")
	pairState, _, err := p.Control.Table(f.ctx, "public.pairs")
	if err != nil {
		t.Fatal(err)
	}

	f.opsDamage(p, items, "3", "name", "tampered")
	_, err = p.DB.DeleteItem(f.ctx, &dynamodb.DeleteItemInput{TableName: &items, Key: opsIntKey("id", "4")})
	opsMust(t, "deleting id 4", err)
	// An item the stream wrote (before the slot's confirmed position), damaged.
	stale := opsIntKey("id", "6")
	stale["name"] = &types.AttributeValueMemberS{Value: "stale stream write"}
	stale["__lsn"] = &types.AttributeValueMemberN{Value: "1"}
	stale["__seq"] = &types.AttributeValueMemberN{Value: "0"}
	stale["__src"] = &types.AttributeValueMemberS{Value: "stream"}
	_, err = p.DB.PutItem(f.ctx, &dynamodb.PutItemInput{TableName: &items, Item: stale})
	opsMust(t, "overwriting id 6", err)
	extra := opsIntKey("id", "9999")
	extra["name"] = &types.AttributeValueMemberS{Value: "not in PostgreSQL"}
	extra["__lsn"] = &types.AttributeValueMemberN{Value: "1"}
	extra["__src"] = &types.AttributeValueMemberS{Value: "snapshot"}
	extra["__epoch"] = &types.AttributeValueMemberN{Value: "1"}
	_, err = p.DB.PutItem(f.ctx, &dynamodb.PutItemInput{TableName: &items, Item: extra})
	opsMust(t, "adding id 9999", err)
	f.exec("DELETE FROM items WHERE id = 7")
	if r := f.tandem("verify", "items"); r.code != exitProblem {
		t.Fatalf("damaged table: verify exit %d, want %d", r.code, exitProblem)
	}

	r := f.tandem("resnapshot", "--progress", "200ms", "items")
	if r.code != exitOK {
		t.Fatalf("resnapshot: exit %d", r.code)
	}
	if want := "public.items: re-snapshotted: 119 rows copied again, 2 stale items swept"; !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q", want)
	}
	if !strings.Contains(r.stderr, "public.items: done, 119 of about") {
		t.Errorf("stderr shows no progress: %q", r.stderr)
	}
	if r := f.tandem("verify", "items"); r.code != exitOK || !strings.Contains(r.stdout, "public.items: 119 rows, equal") {
		t.Errorf("after the re-snapshot: verify exit %d, stdout %q", r.code, r.stdout)
	}

	opsSameItems(t, "public.pairs", pairsBefore, f.opsItems(p, pairs, "k", "n"), nil)
	after, _, err := p.Control.Table(f.ctx, "public.pairs")
	if err != nil {
		t.Fatal(err)
	}
	if after.Epoch != pairState.Epoch || after.State != pairState.State || after.UpdatedAt != pairState.UpdatedAt {
		t.Errorf("public.pairs' state changed: epoch %d → %d, state %s → %s, updated %s → %s",
			pairState.Epoch, after.Epoch, pairState.State, after.State, pairState.UpdatedAt, after.UpdatedAt)
	}
	st, _, _ := p.Control.Table(f.ctx, "public.items")
	if st.Epoch != 2 || st.FloorLSN == 0 {
		t.Errorf("public.items: epoch %d, floor %d: want a new epoch floored at the slot's position", st.Epoch, st.FloorLSN)
	}
}

// TestResnapshotWhere: a filtered re-snapshot rewrites only the matching rows (the
// others' items are byte-identical, a damaged one among them stays damaged), and
// refused filters name the table and PostgreSQL's reason.
func TestResnapshotWhere(t *testing.T) {
	f := newCLIFixture(t, opsDDL, nil)
	p := f.pipelineEnv()
	f.opsConverge(p, "public.items", "public.pairs")
	items := f.opsTarget(p, "public.items")
	f.opsDamage(p, items, "3", "name", "tampered")
	f.opsDamage(p, items, "50", "name", "tampered too")
	before := f.opsItems(p, items, "id")

	for _, c := range []struct{ where, says string }{
		{"id < 10; DROP TABLE items", "a semicolon is not allowed"},
		{"id < 10 -- x", "comments are not allowed"},
		{"id < 10) OR (true", "unbalanced parentheses"},
		{"nope > 1", `column "nope" does not exist`},
		{"id + 1", "argument of WHERE must be type boolean"},
	} {
		r := f.tandem("resnapshot", "items", "--where", c.where)
		if r.code != exitUsage || !strings.Contains(r.stderr, "on public.items") || !strings.Contains(r.stderr, c.says) {
			t.Errorf("--where %q: exit %d, stderr %q; want exit %d naming public.items and %q", c.where, r.code, r.stderr, exitUsage, c.says)
		}
	}
	if r := f.tandem("resnapshot", "nosuch"); r.code != exitUsage || !strings.Contains(r.stderr, "public.nosuch") {
		t.Errorf("unknown table: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := f.tandem("resnapshot", "pairs", "--where", "v = 'x'", "--in-process"); r.code != exitOK {
		t.Errorf("a filter matching nothing: exit %d", r.code)
	}

	r := f.tandem("resnapshot", "items", "--where", "id < 10 AND name <> 'it''s'")
	if r.code != exitOK || !strings.Contains(r.stdout, "public.items: re-snapshotted: 9 rows matching the filter copied again") {
		t.Fatalf("filtered re-snapshot: exit %d, stdout %q", r.code, r.stdout)
	}
	after := f.opsItems(p, items, "id")
	outside := func(k string) bool {
		var key struct{ N string }
		_ = json.Unmarshal([]byte(k), &key)
		return len(key.N) > 1 // id >= 10
	}
	opsSameItems(t, "rows outside the filter", before, after, outside)
	for id := 1; id < 10; id++ {
		k := `{"N":"` + string(rune('0'+id)) + `"}`
		if e := opsRender(after[k]["__epoch"]); e != `{"N":"2"}` {
			t.Errorf("item %s: __epoch %s, want 2 (rewritten)", k, e)
		}
	}
	if got := opsRender(after[`{"N":"3"}`]["name"]); got != `{"S":"n3"}` {
		t.Errorf("id 3, inside the filter: name %s, want repaired", got)
	}
	r = f.tandem("verify", "items")
	if r.code != exitProblem || !strings.Contains(r.stdout, `differs id=50: "name"`) || strings.Contains(r.stdout, "id=3:") {
		t.Errorf("verify after the filtered re-snapshot: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestResnapshotStateMachine: with state_machine_arn configured, the command starts an
// execution whose input names the tables and the filter (the plan's input), and, waiting
// for it, notices when it did not re-plan them.
func TestResnapshotStateMachine(t *testing.T) {
	awsCfg, err := env.Moto.AWSConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	states := sfn.NewFromConfig(awsCfg)
	sm, err := states.CreateStateMachine(t.Context(), &sfn.CreateStateMachineInput{Name: aws.String("resnapshot-test"),
		RoleArn:    aws.String("arn:aws:iam::123456789012:role/tandem"),
		Definition: aws.String(`{"StartAt": "Plan", "States": {"Plan": {"Type": "Pass", "End": true}}}`)})
	if err != nil {
		t.Fatal(err)
	}
	f := newCLIFixture(t, opsDDL, func(c *config.Config) { c.StateMachineARN = aws.ToString(sm.StateMachineArn) })
	p := f.pipelineEnv()
	f.opsConverge(p, "public.items", "public.pairs")

	r := f.tandem("resnapshot", "--no-wait", "items", "--where", "id < 5")
	if r.code != exitOK || !strings.Contains(r.stdout, "started execution arn:") {
		t.Fatalf("--no-wait: exit %d, stdout %q", r.code, r.stdout)
	}
	arn := strings.Fields(strings.TrimPrefix(r.stdout, "started execution "))[0]
	ex, err := states.DescribeExecution(f.ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	var in pipeline.PlanInput
	if err := json.Unmarshal([]byte(aws.ToString(ex.Input)), &in); err != nil || len(in.Tables) != 1 || in.Tables[0] != "public.items" || in.Where != "id < 5" {
		t.Errorf("execution input %s (%v): want the plan's input naming public.items and the filter", aws.ToString(ex.Input), err)
	}

	r = f.tandem("resnapshot", "--progress", "100ms", "items")
	if r.code != exitProblem || !strings.Contains(r.stdout, "public.items: the execution succeeded but did not re-plan the table") {
		t.Errorf("a state machine that does not plan: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestResnapshotWhileStreaming: a re-snapshot runs while the streamer applies a workload
// of updates, deletes and inserts on the same table: streamed changes win, deleted rows
// are not resurrected, and verify passes once the streamer has caught up.
func TestResnapshotWhileStreaming(t *testing.T) {
	f := newCLIFixture(t, `
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int, tags text[]);
INSERT INTO items SELECT g, 'n' || g, g, ARRAY['t'] FROM generate_series(1, 1000) g;`, func(c *config.Config) {
		c.StatusInterval = config.Duration{Duration: 200 * time.Millisecond}
		c.LeaseTTL = config.Duration{Duration: 3 * time.Second}
		c.CatalogInterval = config.Duration{Duration: 500 * time.Millisecond}
		c.ChunkSize = 200
	})
	p := f.pipelineEnv()
	f.opsConverge(p, "public.items")
	ctx, cancel := context.WithCancel(f.ctx)
	s := &stream.Streamer{Env: p, Owner: "test-" + f.name}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	work := make(chan struct{})
	go func() {
		defer close(work)
		for i := 0; ctx.Err() == nil && i < 300; i++ {
			id := 1 + (i*37)%1000
			switch i % 4 {
			case 0, 1:
				_, _ = f.src.Exec(ctx, "UPDATE items SET name = $2, qty = qty + 1 WHERE id = $1", id, fmt.Sprintf("streamed %d", i))
			case 2:
				_, _ = f.src.Exec(ctx, "DELETE FROM items WHERE id = $1", id)
			case 3:
				_, _ = f.src.Exec(ctx, "INSERT INTO items VALUES ($1, $2, 0, '{}') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name", 5000+i, fmt.Sprintf("new %d", i))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	r := f.tandem("resnapshot", "items")
	<-work
	if r.code != exitOK {
		t.Fatalf("resnapshot while streaming: exit %d", r.code)
	}
	lsn, err := pg.CurrentLSN(f.ctx, f.src)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		cp, err := p.Control.Checkpoint(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cp.AppliedLSN >= uint64(lsn) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the streamer did not catch up")
		}
	}
	if res := f.opsCompare(p, "public.items"); !res.Equal() {
		t.Errorf("after a re-snapshot during streaming:\n%s", res)
	}
	if r := f.tandem("verify", "items"); r.code != exitOK {
		t.Errorf("verify: exit %d", r.code)
	}
}
