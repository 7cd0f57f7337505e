package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/control"
)

// TestDeadLetters: a row over DynamoDB's item limit becomes a dead letter during the
// snapshot; deadletters lists it (table, key, LSN, source, reason) in text and JSON;
// --retry fails while the row is still too large and keeps it, then, the row fixed in
// PostgreSQL, writes it, removes the letter and clears the table's degraded mark (verify
// then passes); a retry never overrides a later streamed change and removes letters of
// rows gone since; --clear asks first, then removes letters and says the table stays
// degraded.
func TestDeadLetters(t *testing.T) {
	f := newCLIFixture(t, opsDDL+`
UPDATE items SET name = repeat('x', 500000) WHERE id = 7;`, nil)
	p := f.pipelineEnv()
	f.opsConverge(p, "public.items")
	st, _, err := p.Control.Table(f.ctx, "public.items")
	if err != nil || st.Degraded == "" {
		t.Fatalf("the oversize row did not degrade the table: %+v, %v", st, err)
	}

	r := f.tandem("deadletters")
	if r.code != exitProblem {
		t.Errorf("listing dead letters: exit %d, want %d", r.code, exitProblem)
	}
	line := regexp.MustCompile(`public\.items\s+id=7\s+\d+/[0-9A-F]+\s+snapshot\s+\d{4}-\d\d-\d\dT\S+\s+.*over DynamoDB.s 409600-byte item limit`)
	if !line.MatchString(r.stdout) || !strings.Contains(r.stdout, "1 dead letters (public.items: 1)") {
		t.Errorf("listing lacks the dead letter of id=7 with its LSN, source, time and reason:\n%s", r.stdout)
	}
	r = f.tandem("deadletters", "--json", "items")
	var doc struct {
		DeadLetters []struct{ Table, Key, LSN, Source, Reason, At string } `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.DeadLetters) != 1 {
		t.Fatalf("--json: %v, %+v", err, doc)
	}
	if d := doc.DeadLetters[0]; d.Table != "public.items" || d.Key != "id=7" || !regexp.MustCompile(`^[0-9A-F]+/[0-9A-F]+$`).MatchString(d.LSN) || d.Source != "snapshot" || d.Reason == "" {
		t.Errorf("--json dead letter: %+v", d)
	}

	r = f.tandem("deadletters", "--retry")
	if r.code != exitProblem || !strings.Contains(r.stdout, "public.items id=7 (LSN ") || !strings.Contains(r.stdout, "failed again, kept") {
		t.Errorf("retry of a row still too large: exit %d, stdout %q", r.code, r.stdout)
	}

	f.exec("UPDATE items SET name = 'fixed' WHERE id = 7")
	r = f.tandem("deadletters", "--retry", "items")
	if r.code != exitOK || !strings.Contains(r.stdout, "public.items id=7") || !strings.Contains(r.stdout, "written") ||
		!strings.Contains(r.stdout, "public.items: no dead letter left, degraded mark cleared") {
		t.Fatalf("retry of the fixed row: exit %d, stdout %q", r.code, r.stdout)
	}
	it, err := p.DB.GetItem(f.ctx, &dynamodb.GetItemInput{TableName: &st.Target, Key: opsIntKey("id", "7")})
	if err != nil {
		t.Fatal(err)
	}
	if opsRender(it.Item["name"]) != `{"S":"fixed"}` || opsRender(it.Item["__src"]) != `{"S":"stream"}` {
		t.Errorf("id 7 after the retry: %s", opsRenderItem(it.Item))
	}
	if st, _, _ := p.Control.Table(f.ctx, "public.items"); st.Degraded != "" {
		t.Errorf("still degraded: %s", st.Degraded)
	}
	if r := f.tandem("deadletters"); r.code != exitOK || !strings.Contains(r.stdout, "no dead letters") {
		t.Errorf("after the retry: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := f.tandem("verify", "items"); r.code != exitOK {
		t.Errorf("verify after the retry: exit %d", r.code)
	}

	// A later streamed change wins over a retry; a letter of a row gone since is resolved.
	newer := opsIntKey("id", "8")
	newer["name"] = &types.AttributeValueMemberS{Value: "streamed later"}
	newer["__lsn"] = &types.AttributeValueMemberN{Value: "4611686018427387904"}
	newer["__seq"] = &types.AttributeValueMemberN{Value: "0"}
	newer["__src"] = &types.AttributeValueMemberS{Value: "stream"}
	_, err = p.DB.PutItem(f.ctx, &dynamodb.PutItemInput{TableName: &st.Target, Item: newer})
	opsMust(t, "writing id 8", err)
	for _, d := range []control.DeadLetter{
		{Table: "public.items", Key: "id=8", LSN: 0x1D84268, Source: "stream", Reason: "planted"},
		{Table: "public.items", Key: "id=424242", LSN: 0x1D84269, Source: "stream", Reason: "planted"},
	} {
		if err := p.Control.AddDeadLetter(f.ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if r := f.tandem("deadletters"); !strings.Contains(r.stdout, "0/1D84268") {
		t.Errorf("the LSN is not printed as 0/1D84268:\n%s", r.stdout)
	}
	r = f.tandem("deadletters", "--retry")
	if r.code != exitOK || !strings.Contains(r.stdout, "public.items id=8 (LSN 0/1D84268): already superseded") ||
		!strings.Contains(r.stdout, "public.items id=424242 (LSN 0/1D84269): the row no longer exists") {
		t.Errorf("retry of superseded and gone rows: exit %d, stdout %q", r.code, r.stdout)
	}
	it, _ = p.DB.GetItem(f.ctx, &dynamodb.GetItemInput{TableName: &st.Target, Key: opsIntKey("id", "8")})
	if opsRender(it.Item["name"]) != `{"S":"streamed later"}` {
		t.Errorf("the retry overrode a later streamed change: %s", opsRenderItem(it.Item))
	}

	// --clear asks (no answer: nothing removed), then with --yes removes.
	if err := p.Control.AddDeadLetter(f.ctx, control.DeadLetter{Table: "public.items", Key: "id=9", LSN: 0x1D9, Source: "stream", Reason: "planted"}); err != nil {
		t.Fatal(err)
	}
	if r := f.tandem("deadletters", "--clear"); r.code != exitProblem || !strings.Contains(r.stderr, "nothing removed") {
		t.Errorf("--clear without an answer: exit %d, stderr %q", r.code, r.stderr)
	}
	r = f.tandem("deadletters", "items", "--clear", "--yes")
	if r.code != exitOK || !strings.Contains(r.stdout, "1 dead letters removed") || !strings.Contains(r.stdout, "public.items stays degraded") {
		t.Errorf("--clear --yes: exit %d, stdout %q", r.code, r.stdout)
	}
	if letters, _ := p.Control.DeadLetters(f.ctx, ""); len(letters) != 0 {
		t.Errorf("dead letters left after --clear: %+v", letters)
	}
}
