package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

const opsDDL = `
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, qty int, tags text[]);
INSERT INTO items SELECT g, 'n' || g, g * 10, ARRAY['t' || (g % 3)] FROM generate_series(1, 120) g;
CREATE TABLE pairs (k text, n int, v text, PRIMARY KEY (k, n));
INSERT INTO pairs SELECT 'k' || (g % 4), g, 'v' || g FROM generate_series(1, 60) g;`

// TestVerifyConvergedAndPlanted: verify passes on converged tables (exit 0), then finds
// each difference planted behind Tandem's back in DynamoDB, with its table, key and
// attribute (exit 1), in text, --json and --sample; a table whose snapshot is not done
// is reported as not verified.
func TestVerifyConvergedAndPlanted(t *testing.T) {
	f := newCLIFixture(t, opsDDL, nil)
	p := f.pipelineEnv()
	f.opsConverge(p, "public.items", "public.pairs")

	r := f.tandem("verify")
	if r.code != exitOK {
		t.Fatalf("converged tables: exit %d, want 0", r.code)
	}
	for _, want := range []string{"public.items: 120 rows, equal", "public.pairs: 60 rows, equal"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}
	if r := f.tandem("verify", "--sample", "20", "items"); r.code != exitOK || !strings.Contains(r.stdout, "public.items: sample of about 20 rows and 20 items, completed by key: ") {
		t.Errorf("sample of a converged table: exit %d, stdout %q", r.code, r.stdout)
	}

	// Behind Tandem's back: an attribute altered, an item deleted, an extra live item, a
	// tombstone over a live row.
	target := f.opsTarget(p, "public.items")
	_, err := p.DB.UpdateItem(f.ctx, &dynamodb.UpdateItemInput{TableName: &target, Key: opsIntKey("id", "3"),
		UpdateExpression:          aws.String("SET #n = :v"),
		ExpressionAttributeNames:  map[string]string{"#n": "name"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: "tampered"}}})
	opsMust(t, "altering id 3", err)
	_, err = p.DB.DeleteItem(f.ctx, &dynamodb.DeleteItemInput{TableName: &target, Key: opsIntKey("id", "4")})
	opsMust(t, "deleting id 4", err)
	extra := opsIntKey("id", "9999")
	extra["name"] = &types.AttributeValueMemberS{Value: "not in PostgreSQL"}
	extra["__lsn"] = &types.AttributeValueMemberN{Value: "1"}
	extra["__src"] = &types.AttributeValueMemberS{Value: "snapshot"}
	extra["__epoch"] = &types.AttributeValueMemberN{Value: "1"}
	_, err = p.DB.PutItem(f.ctx, &dynamodb.PutItemInput{TableName: &target, Item: extra})
	opsMust(t, "adding id 9999", err)
	tomb := opsIntKey("id", "5")
	tomb["__lsn"] = &types.AttributeValueMemberN{Value: "1"}
	tomb["__seq"] = &types.AttributeValueMemberN{Value: "0"}
	tomb["__src"] = &types.AttributeValueMemberS{Value: "stream"}
	tomb["__deleted"] = &types.AttributeValueMemberBOOL{Value: true}
	_, err = p.DB.PutItem(f.ctx, &dynamodb.PutItemInput{TableName: &target, Item: tomb})
	opsMust(t, "tombstoning id 5", err)

	r = f.tandem("verify", "--segments", "3")
	if r.code != exitProblem {
		t.Fatalf("planted differences: exit %d, want %d", r.code, exitProblem)
	}
	for _, want := range []string{
		`public.items: differs id=3: "name" want {"S":"n3"}, got {"S":"tampered"}`,
		`public.items: missing id=4: want {`,
		`public.items: extra   id=9999: got {`, `not in PostgreSQL`,
		`public.items: deleted id=5: a tombstone`,
		`public.items: 120 rows in PostgreSQL, 119 live items and 1 tombstones in DynamoDB: 4 differences`,
		`public.pairs: 60 rows, equal`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q", want)
		}
	}

	r = f.tandem("verify", "--json", "public.items")
	if r.code != exitProblem {
		t.Errorf("--json: exit %d, want %d", r.code, exitProblem)
	}
	var doc struct {
		Equal  bool
		Tables []struct {
			Table       string
			Verified    bool
			Differences int
			Diffs       []struct{ Kind, Key, Attribute, Want, Got string }
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("--json output: %v", err)
	}
	if doc.Equal || len(doc.Tables) != 1 || doc.Tables[0].Differences != 4 || len(doc.Tables[0].Diffs) != 4 {
		t.Fatalf("--json: %+v", doc)
	}
	kinds := map[string]string{}
	for _, d := range doc.Tables[0].Diffs {
		kinds[d.Key] = d.Kind + " " + d.Attribute
	}
	for key, want := range map[string]string{"id=3": "differs name", "id=4": "missing ", "id=9999": "extra ", "id=5": "deleted "} {
		if kinds[key] != want {
			t.Errorf("--json: %s is %q, want %q", key, kinds[key], want)
		}
	}

	// A sample as large as the table sees every difference, the extra item included.
	r = f.tandem("verify", "--sample", "1000", "public.items")
	if r.code != exitProblem || !strings.Contains(r.stdout, "extra   id=9999") || !strings.Contains(r.stdout, `differs id=3: "name"`) {
		t.Errorf("--sample 1000: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestVerifyNotDone: a table whose snapshot has not run is not compared (exit 1, said
// so), unless --force.
func TestVerifyNotDone(t *testing.T) {
	f := newCLIFixture(t, opsDDL, nil)
	p := f.pipelineEnv()
	f.opsConverge(p, "public.pairs")
	r := f.tandem("verify")
	if r.code != exitProblem || !strings.Contains(r.stdout, "public.items: not verified: its snapshot is pending") ||
		!strings.Contains(r.stdout, "public.pairs: 60 rows, equal") {
		t.Errorf("pending table: exit %d, stdout %q", r.code, r.stdout)
	}
	r = f.tandem("verify", "--force", "items")
	if r.code != exitProblem || !strings.Contains(r.stderr, "compared anyway") || !strings.Contains(r.stdout, "public.items: missing id=1:") {
		t.Errorf("--force: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := f.tandem("verify", "nosuch"); r.code != exitUsage || !strings.Contains(r.stderr, "table public.nosuch is not replicated: it is not in publication") {
		t.Errorf("unknown table: exit %d, stderr %q", r.code, r.stderr)
	}
}
