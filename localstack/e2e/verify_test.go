package e2e

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/localstack/verify"
)

// verifyDDL has a column of each type family of README "Items in DynamoDB", values at the edges of the
// mapping (N's range and digits, NaN, infinities, char(n) padding, multi-dimensional and
// NULL-holding arrays, nested JSON), enough rows for several page ranges, and keys of
// one, two and three columns.
const verifyDDL = `
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE wide (
	id int PRIMARY KEY, i8 bigint, small smallint, num numeric(12,4), f4 real, f8 double precision,
	huge numeric, b bool, by bytea, j jsonb, js json, ia int[], ta text[][], tsa timestamptz[],
	ts timestamptz, tsl timestamp, d date, tm time, iv interval, u uuid, c char(6), vc varchar(10),
	e mood, dom posint, money money, inet inet, pt point, rng int4range, t text);
INSERT INTO wide SELECT g, g * 1000000000::bigint, g % 100, g / 7.0, g / 3.0, g / 3.0,
	CASE g % 5 WHEN 0 THEN 'NaN' WHEN 1 THEN 12345678901234567890123456789012345678901 WHEN 2 THEN 1e130 ELSE g * 1.5 END,
	g % 2 = 0, decode(md5(g::text), 'hex'),
	jsonb_build_object('g', g, 'l', jsonb_build_array(1, 'x', true, null, 1e400), 'o', jsonb_build_object('n', 2.50)),
	'{"dup": 1, "dup": 2, "s": "a\"b"}',
	ARRAY[g, NULL, -g], ARRAY[ARRAY['a,b', 'x"y'], ARRAY['NULL', NULL]],
	ARRAY['2024-05-01 10:20:30.5+02'::timestamptz, 'infinity'],
	CASE g % 4 WHEN 0 THEN 'infinity' WHEN 1 THEN '0044-03-15 10:00:00+00 BC' ELSE timestamptz '2024-05-01 10:20:30.123456+00' + g * interval '1 minute' END,
	'2024-05-01 10:20:30.5', '2024-02-29', '23:59:59.999999', '1 year 2 days 03:04:05', md5(g::text)::uuid,
	'ab', 'v' || g, CASE WHEN g % 2 = 0 THEN 'happy'::mood END, g, g, '10.0.0.1', point(g, -g), int4range(g, g + 10),
	CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('t', g % 50) || 'é' END
	FROM generate_series(1, 400) g;
CREATE TABLE pair (k text, n numeric, v text, PRIMARY KEY (k, n));
INSERT INTO pair SELECT 'k' || (g % 7), g / 4.0, 'v' || g FROM generate_series(1, 80) g;
CREATE TABLE triple (a int, b text, c timestamptz, v text, PRIMARY KEY (a, b, c));
INSERT INTO triple SELECT g % 5, 'x' || (g % 3), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour', 'v' || g FROM generate_series(1, 60) g;`

// TestVerify proves the checker: a converged table (written by the snapshot and by the
// stream) passes, and each difference planted behind Tandem's back is found, with its key.
func TestVerify(t *testing.T) {
	f := newFixture(t, verifyDDL, nil)
	f.plan()
	stop := f.startStreamer(nil)
	for _, tbl := range []string{"public.wide", "public.pair", "public.triple"} {
		f.snapshot(tbl)
	}
	// Stream writes too: new rows, updates of every family, deletes.
	f.exec(`INSERT INTO wide (id, num, j, ta, ts, c, e, t) VALUES (1000, 1.5, '{"new": [1, {"x": null}]}', '{{a},{b}}', '2024-12-31 23:59:59.999999+00', 'zz', 'sad', 'streamed')`)
	f.exec(`UPDATE wide SET t = 'updated', f8 = 'Infinity', j = '[]', ia = '{}', by = '\x', huge = 1e-131 WHERE id % 10 = 0`)
	f.exec(`DELETE FROM wide WHERE id % 10 = 9`)
	f.exec(`UPDATE pair SET v = 'streamed' WHERE n < 5`)
	f.exec(`DELETE FROM triple WHERE a = 1`)
	f.exec(`INSERT INTO triple VALUES (9, 'q', '2030-01-01 00:00:00+00', NULL)`)
	f.waitCaughtUp()
	stop()

	for _, tbl := range []string{"public.wide", "public.pair", "public.triple"} {
		res := f.compare(tbl)
		if !res.Equal() {
			t.Errorf("a converged table must pass:\n%s", res)
		}
		if res.Rows == 0 || res.Rows != res.Items {
			t.Errorf("%s: %d rows, %d live items", tbl, res.Rows, res.Items)
		}
	}

	// Behind Tandem's back, in DynamoDB: an attribute altered, an item deleted, an extra
	// live item, a tombstone over an existing row; in PostgreSQL: a row inserted and a
	// row updated with no streamer running.
	target := f.table("public.wide").Target
	key := func(id string) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"id": &types.AttributeValueMemberN{Value: id}}
	}
	ddb := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err := f.db.UpdateItem(f.ctx, &dynamodb.UpdateItemInput{TableName: &target, Key: key("3"),
		UpdateExpression:          aws.String("SET vc = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: "tampered"}}})
	ddb("altering id 3", err)
	_, err = f.db.DeleteItem(f.ctx, &dynamodb.DeleteItemInput{TableName: &target, Key: key("4")})
	ddb("deleting id 4", err)
	meta := func(it map[string]types.AttributeValue) map[string]types.AttributeValue {
		it["__lsn"] = &types.AttributeValueMemberN{Value: "1"}
		it["__seq"] = &types.AttributeValueMemberN{Value: "0"}
		it["__src"] = &types.AttributeValueMemberS{Value: "stream"}
		return it
	}
	extra := meta(key("777777"))
	extra["t"] = &types.AttributeValueMemberS{Value: "not in PostgreSQL"}
	_, err = f.db.PutItem(f.ctx, &dynamodb.PutItemInput{TableName: &target, Item: extra})
	ddb("adding id 777777", err)
	tomb := meta(key("5"))
	tomb["__deleted"] = &types.AttributeValueMemberBOOL{Value: true}
	tomb["__expires"] = &types.AttributeValueMemberN{Value: "4102444800"}
	_, err = f.db.PutItem(f.ctx, &dynamodb.PutItemInput{TableName: &target, Item: tomb})
	ddb("tombstoning id 5", err)
	f.exec(`INSERT INTO wide (id, t) VALUES (888888, 'only in PostgreSQL')`)
	f.exec(`UPDATE wide SET c = 'pg' WHERE id = 6`)

	res := f.compare("public.wide")
	t.Logf("%s", res)
	want := []struct {
		kind verify.Kind
		key  string
		attr string
		in   []string // substrings of the report line
	}{
		{verify.Differs, "id=3", "vc", []string{`want {"S":"v3"}`, `got {"S":"tampered"}`}},
		{verify.Missing, "id=4", "", []string{`"b":{"BOOL":true}`, `"c":{"S":"ab    "}`}},
		{verify.Extra, "id=777777", "", []string{"not in PostgreSQL"}},
		{verify.Deleted, "id=5", "", []string{"tombstone", `"b":{"BOOL":false}`}},
		{verify.Missing, "id=888888", "", []string{"only in PostgreSQL"}},
		{verify.Differs, "id=6", "c", []string{`want {"S":"pg    "}`, `got {"S":"ab    "}`}},
	}
	if res.Total != len(want) {
		t.Errorf("want exactly %d differences, got %d:\n%s", len(want), res.Total, res)
	}
	for _, w := range want {
		found := false
		for _, d := range res.Of(w.kind) {
			if d.Key != w.key || d.Attr != w.attr {
				continue
			}
			found = true
			for _, sub := range w.in {
				if !strings.Contains(d.String(), sub) {
					t.Errorf("%s %s: %q does not say %s", w.kind, w.key, d, sub)
				}
			}
		}
		if !found {
			t.Errorf("%s %s %s not reported:\n%s", w.kind, w.key, w.attr, res)
		}
	}

	// Composite keys: an altered attribute of a three-column key names every key column.
	triple := f.table("public.triple").Target
	items := f.scan(triple)
	var victim map[string]types.AttributeValue
	for _, it := range items {
		if _, dead := it["__deleted"]; !dead && it["v"] != nil {
			victim = it
			break
		}
	}
	_, err = f.db.UpdateItem(f.ctx, &dynamodb.UpdateItemInput{TableName: &triple,
		Key:              map[string]types.AttributeValue{"a": victim["a"], "__sk": victim["__sk"]},
		UpdateExpression: aws.String("REMOVE v")})
	ddb("altering a triple", err)
	res = f.compare("public.triple")
	if d := res.Of(verify.Differs); res.Total != 1 || len(d) != 1 || d[0].Attr != "v" ||
		!strings.Contains(d[0].Key, "a=") || !strings.Contains(d[0].Key, `b="x`) || !strings.Contains(d[0].Key, `c="2024-01-`) {
		t.Errorf("want one difference of v with the key a, b, c:\n%s", res)
	}
}

func (f *fixture) compare(source string) verify.Result {
	f.t.Helper()
	res, err := verify.Compare(f.ctx, f.env.PG, f.db, f.table(source))
	if err != nil {
		f.t.Fatal(err)
	}
	return res
}
