package main

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/localstack/testenv"
	"tandem/shared/config"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/preflight"
)

// findingLine returns the output line of the finding about subject ("" if none).
func findingLine(out, subject string) string {
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 5 && strings.HasPrefix(strings.TrimSpace(line[4:]), subject+":") {
			return line
		}
	}
	return ""
}

// wantFinding requires the finding about subject at level, its message holding each of want.
func wantFinding(t *testing.T, r result, level, subject string, want ...string) {
	t.Helper()
	line := findingLine(r.stdout, subject)
	if line == "" {
		t.Fatalf("no finding about %q in:\n%s", subject, r.stdout)
	}
	if got := strings.TrimSpace(line[:4]); got != level {
		t.Errorf("%s: level %s, want %s: %s", subject, got, level, line)
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("%s: the finding lacks %q: %s", subject, w, line)
		}
	}
}

// TestCheckGoodDatabase: a database Tandem can replicate passes with exit 0, one OK line
// per check, each table with its key and target; --json carries the same findings.
func TestCheckGoodDatabase(t *testing.T) {
	f := newCLIFixture(t, `
		CREATE TABLE orders (id int PRIMARY KEY, note text, total numeric, at timestamptz, tags text[], doc jsonb);
		CREATE TABLE lines (order_id int, n int, qty int, PRIMARY KEY (order_id, n));
		CREATE TABLE events (a int NOT NULL, b text, c int);
		ALTER TABLE events REPLICA IDENTITY FULL;`,
		func(c *config.Config) {
			c.Tables = []config.Table{{Source: "public.orders"}, {Source: "lines"}, {Source: "events", KeyColumns: []string{"a"}}}
		})
	r := f.tandem("check")
	if r.code != exitOK {
		t.Fatalf("check of a good database: exit %d, want 0", r.code)
	}
	wantFinding(t, r, "OK", "postgres", "connected to postgres@127.0.0.1:", "/"+f.name, "PostgreSQL 15")
	wantFinding(t, r, "OK", "tls", "not encrypted", "sslmode=disable", "a local connection")
	wantFinding(t, r, "OK", "wal_level", "logical")
	wantFinding(t, r, "OK", "replication privilege")
	wantFinding(t, r, "OK", "max_replication_slots", "of 10 used by other slots", "Tandem needs one for slot "+f.cfg.Slot)
	wantFinding(t, r, "OK", "max_wal_senders", "of 10 WAL senders")
	wantFinding(t, r, "OK", "slot "+f.cfg.Slot, "does not exist yet")
	wantFinding(t, r, "OK", "dynamodb", "reachable")
	wantFinding(t, r, "OK", "control table "+f.cfg.ControlTable, "does not exist yet")
	wantFinding(t, r, "OK", "publication "+f.cfg.Publication, "plan creates it FOR TABLE public.orders, public.lines, public.events")
	wantFinding(t, r, "OK", "table public.orders", "key (id)", "6 columns, all mappable", "target "+f.name+"_orders: plan creates it")
	wantFinding(t, r, "OK", "table public.lines", "key (order_id, n)")
	wantFinding(t, r, "OK", "table public.events", "key (a)", "replica identity FULL")
	if !strings.Contains(r.stdout, "No blockers (0 warning(s)).") {
		t.Errorf("no summary line in:\n%s", r.stdout)
	}

	j := f.tandem("check", "--json")
	var rep preflight.Report
	if err := json.Unmarshal([]byte(j.stdout), &rep); err != nil || j.code != exitOK {
		t.Fatalf("check --json: exit %d, %v:\n%s", j.code, err, j.stdout)
	}
	if rep.Blockers != 0 || rep.Warnings != 0 || len(rep.Findings) < 12 {
		t.Errorf("check --json: %+v", rep)
	}
	for _, fd := range rep.Findings {
		if fd.Subject == "table public.orders" && (fd.Level != preflight.OK || !strings.Contains(fd.Message, "key (id)")) {
			t.Errorf("check --json: %+v", fd)
		}
	}

	// Once plan ran, the slot, the publication, the control table and the targets exist
	// and still pass.
	f.plan()
	r = f.tandem("check")
	if r.code != exitOK {
		t.Fatalf("check after plan: exit %d, want 0", r.code)
	}
	wantFinding(t, r, "OK", "slot "+f.cfg.Slot, "exists (pgoutput), confirmed up to 0/", "retains")
	wantFinding(t, r, "OK", "control table "+f.cfg.ControlTable, "exists")
	wantFinding(t, r, "OK", "publication "+f.cfg.Publication, "exists, created by Tandem")
	wantFinding(t, r, "OK", "table public.orders", "target "+f.name+"_orders exists with the matching key schema", "recorded pending")
	wantFinding(t, r, "OK", "max_replication_slots", "Tandem's slot "+f.cfg.Slot+" exists")

	// With no tables configured, the tables the publication covers are checked; in a new
	// database, those FOR ALL TABLES would publish.
	g := newCLIFixture(t, `CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE events (a int, b text); CREATE TABLE notes (id int PRIMARY KEY)`, nil)
	r = g.tandem("check")
	wantFinding(t, r, "OK", "publication "+g.cfg.Publication, "FOR ALL TABLES (3 tables now)", "no tables configured", "(public.events, public.notes, public.orders)")
	wantFinding(t, r, "FAIL", "table public.events", "has no primary key", "key_columns")
	wantFinding(t, r, "OK", "table public.notes", "key (id)")

	// With its tables list removed, f's checked tables are those of the publication plan
	// created, and events, without its key_columns, has no usable key any more.
	f.cfg.Tables = nil
	f.writeConfig()
	r = f.tandem("check")
	if r.code != exitProblem {
		t.Errorf("check without the tables list: exit %d, want %d", r.code, exitProblem)
	}
	wantFinding(t, r, "OK", "publication "+f.cfg.Publication, "exists, created by Tandem", "no tables configured: every table it publishes is replicated")
	wantFinding(t, r, "FAIL", "table public.events", "has no primary key")
	wantFinding(t, r, "OK", "table public.orders", "key (id)")
}

// TestCheckDeploymentPrefix: checked as template.yaml deploys it (--deployment, which make
// up runs), a configuration without table_prefix names its targets with the template's
// prefix, as the deployment creates them; a target outside the prefix, which the stack's
// roles may not write, is a blocker naming target and prefix, also for a deployed stack's
// configuration (state_machine_arn set). Outside a deployment any target passes.
func TestCheckDeploymentPrefix(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE notes (id int PRIMARY KEY)`, func(c *config.Config) {
		c.TablePrefix = ""
		c.Tables = []config.Table{{Source: "orders"}, {Source: "notes", Target: "prod-notes"}}
	})
	r := f.tandem("check")
	if r.code != exitOK {
		t.Errorf("check: exit %d, want 0", r.code)
	}
	wantFinding(t, r, "OK", "table public.orders", "target orders: plan creates it")
	wantFinding(t, r, "OK", "table public.notes", "target prod-notes: plan creates it")

	r = f.tandem("check", "--deployment")
	if r.code != exitProblem {
		t.Errorf("check --deployment: exit %d, want %d", r.code, exitProblem)
	}
	wantFinding(t, r, "OK", "table public.orders", "target "+config.DeployedTablePrefix+"orders: plan creates it")
	wantFinding(t, r, "FAIL", "table public.notes", "target prod-notes is outside table_prefix "+config.DeployedTablePrefix,
		"may only create and write the DynamoDB tables named "+config.DeployedTablePrefix+"*")

	f.cfg.TablePrefix = "staging-"
	f.cfg.StateMachineARN = "arn:aws:states:us-east-1:123456789012:stateMachine:tandem"
	f.writeConfig()
	r = f.tandem("check")
	if r.code != exitProblem {
		t.Errorf("check of a deployed stack's configuration: exit %d, want %d", r.code, exitProblem)
	}
	wantFinding(t, r, "OK", "table public.orders", "target staging-orders: plan creates it")
	wantFinding(t, r, "FAIL", "table public.notes", "target prod-notes is outside table_prefix staging-")
}

// plan runs the plan handler's logic in-process against f's database and moto, as a
// deployed plan function would.
func (f *cliFixture) plan() {
	f.t.Helper()
	e := f.pipelineEnv()
	if _, err := e.Plan(f.ctx, pipeline.PlanInput{}); err != nil {
		f.t.Fatalf("plan: %v", err)
	}
}

// TestCheckBlockers: each thing plan would refuse is one FAIL line naming the table and
// column, with plan's message, and exit 1; the other tables still pass.
func TestCheckBlockers(t *testing.T) {
	cases := []struct {
		name, ddl string
		tables    []config.Table
		subject   string
		want      []string
	}{
		{"table missing", `CREATE TABLE present (id int PRIMARY KEY)`, []config.Table{{Source: "present"}, {Source: "public.misspelt"}},
			"table public.misspelt", []string{"configured table(s) public.misspelt do not exist in the database"}},
		{"no primary key", `CREATE TABLE present (id int PRIMARY KEY); CREATE TABLE loose (a int, b text)`, nil,
			"table public.loose", []string{"table public.loose has no primary key and REPLICA IDENTITY DEFAULT", "configure its key_columns"}},
		{"no key with identity full", `CREATE TABLE present (id int PRIMARY KEY); CREATE TABLE loose (a int, b text); ALTER TABLE loose REPLICA IDENTITY FULL`, nil,
			"table public.loose", []string{"table public.loose has no primary key: add one, or configure key_columns"}},
		{"reserved column", `CREATE TABLE present (id int PRIMARY KEY); CREATE TABLE meta (id int PRIMARY KEY, "__lsn" bigint)`, nil,
			"table public.meta", []string{`column "__lsn" uses the reserved prefix "__"`}},
		{"deferrable key", `CREATE TABLE present (id int PRIMARY KEY); CREATE TABLE later (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED, v text)`, nil,
			"table public.later", []string{"table public.later has a DEFERRABLE primary key", "NOT DEFERRABLE"}},
		{"unmappable key type", `CREATE TABLE present (id int PRIMARY KEY); CREATE TABLE flags (flag boolean PRIMARY KEY, v text)`, nil,
			"table public.flags", []string{`key column "flag"`, "column type boolean cannot be a DynamoDB key attribute"}},
		{"key column not a column", `CREATE TABLE present (id int PRIMARY KEY)`, []config.Table{{Source: "present", KeyColumns: []string{"nope"}}},
			"table public.present", []string{`key_columns of public.present names "nope", which is not a column`}},
		{"unlogged", `CREATE TABLE present (id int PRIMARY KEY); CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text)`,
			[]config.Table{{Source: "present"}, {Source: "scratch"}}, "table public.scratch",
			[]string{"table public.scratch is UNLOGGED", "none of its changes to the WAL", "ALTER TABLE public.scratch SET LOGGED"}},
		{"partitioned parent", `CREATE TABLE m (id int, r text, PRIMARY KEY (r, id)) PARTITION BY LIST (r); CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu')`,
			[]config.Table{{Source: "m"}}, "table public.m", []string{"table public.m is partitioned", "public.m_eu"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newCLIFixture(t, tc.ddl, func(c *config.Config) { c.Tables = tc.tables })
			r := f.tandem("check")
			if r.code != exitProblem {
				t.Errorf("exit %d, want %d", r.code, exitProblem)
			}
			wantFinding(t, r, "FAIL", tc.subject, tc.want...)
			if tc.subject != "table public.present" && !strings.Contains(tc.ddl, "PARTITION") {
				wantFinding(t, r, "OK", "table public.present", "key (id)")
			}
			if !strings.Contains(r.stdout, "1 blocker(s)") {
				t.Errorf("want exactly one blocker:\n%s", r.stdout)
			}
		})
	}
}

// TestCheckUnloggedAllTables: with no tables configured (every table of a FOR ALL TABLES
// publication is replicated), an UNLOGGED table is not a blocker, but check says that it
// is left out and how to include it.
func TestCheckUnloggedAllTables(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE present (id int PRIMARY KEY); CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)`,
		func(c *config.Config) { c.Tables = nil })
	r := f.tandem("check")
	if r.code != exitOK {
		t.Errorf("exit %d, want %d", r.code, exitOK)
	}
	wantFinding(t, r, "WARN", "unlogged tables", "FOR ALL TABLES leaves out the UNLOGGED table(s) public.scratch", "SET LOGGED")
	wantFinding(t, r, "OK", "table public.present", "key (id)")
}

// TestCheckNoReplicationRole: a role without REPLICATION is a blocker with the GRANT to
// run, and its password is never printed.
func TestCheckNoReplicationRole(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE present (id int PRIMARY KEY)`, nil)
	f.exec(`CREATE ROLE plain_` + f.name + ` LOGIN PASSWORD 's3cret-pw' NOREPLICATION`)
	f.exec(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO plain_` + f.name)
	u, _ := url.Parse(f.url)
	u.User = url.UserPassword("plain_"+f.name, "s3cret-pw")
	f.cfg.PostgresURL = u.String()
	f.writeConfig()
	r := f.tandem("check")
	if r.code != exitProblem {
		t.Errorf("exit %d, want %d", r.code, exitProblem)
	}
	wantFinding(t, r, "FAIL", "replication privilege", `role "plain_`+f.name+`" lacks the REPLICATION privilege`, "ALTER ROLE plain_"+f.name+" REPLICATION", "GRANT rds_replication")
	wantFinding(t, r, "OK", "postgres", "connected to plain_"+f.name+"@")
	if strings.Contains(r.stdout+r.stderr, "s3cret-pw") {
		t.Errorf("the password is printed")
	}
}

// TestCheckNotOwner: a role that owns none of the tables cannot, on stock PostgreSQL,
// create the publication plan would create (only a table's owner may publish it, FOR ALL
// TABLES only a superuser): a warning naming the tables, their owner and the fix (not a
// blocker: managed services let their admin roles do more, and plan fails at once with
// the fix if PostgreSQL does refuse), while the tables themselves are still checked.
func TestCheckNotOwner(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE present (id int PRIMARY KEY)`, func(c *config.Config) { c.Tables = []config.Table{{Source: "present"}} })
	role := "notowner_" + f.name
	f.exec(`CREATE ROLE ` + role + ` LOGIN PASSWORD 'pw' REPLICATION`)
	t.Cleanup(func() {
		_, _ = f.src.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = f.src.Exec(context.Background(), "DROP ROLE "+role)
	})
	f.exec(`GRANT CREATE ON DATABASE ` + f.name + ` TO ` + role)
	f.exec(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ` + role)
	u, _ := url.Parse(f.url)
	u.User = url.UserPassword(role, "pw")
	f.cfg.PostgresURL = u.String()
	f.writeConfig()
	r := f.tandem("check")
	if r.code != exitOK {
		t.Errorf("exit %d, want %d (a warning only)", r.code, exitOK)
	}
	wantFinding(t, r, "WARN", "publication "+f.cfg.Publication, `role "`+role+`" may not publish table(s) public.present (owner `,
		"only a table's owner may add it to a publication", `CREATE PUBLICATION "`+f.cfg.Publication+`" FOR TABLE "public"."present"`, "run Tandem as the tables' owner")
	wantFinding(t, r, "OK", "table public.present", "key (id)")

	f.cfg.Tables = nil
	f.writeConfig()
	r = f.tandem("check")
	if r.code != exitOK {
		t.Errorf("no tables configured: exit %d, want %d (a warning only)", r.code, exitOK)
	}
	wantFinding(t, r, "WARN", "publication "+f.cfg.Publication, "FOR ALL TABLES needs a superuser", "configure the tables to replicate")
	wantFinding(t, r, "OK", "table public.present", "key (id)")
}

// TestCheckUnreachable: a database that does not answer and an unreachable DynamoDB are
// blockers (not a crash, not a hang), the password redacted.
func TestCheckUnreachable(t *testing.T) {
	f := newCLIFixture(t, "", nil)
	f.cfg.PostgresURL = "postgres://someone:hunter2-pw@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=5"
	f.writeConfig()
	r := runBinary(t, []string{"AWS_ENDPOINT_URL=http://127.0.0.1:1", "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=x"},
		"check", "--config", f.configFile)
	if r.code != exitProblem {
		t.Errorf("exit %d, want %d", r.code, exitProblem)
	}
	wantFinding(t, r, "FAIL", "postgres", "cannot connect to someone@127.0.0.1:1/nowhere")
	wantFinding(t, r, "FAIL", "dynamodb", "not reachable (http://127.0.0.1:1")
	if strings.Contains(r.stdout+r.stderr, "hunter2-pw") {
		t.Errorf("the password is printed")
	}
}

// TestCheckMissingTarget: with create_tables false, a target that does not exist is a
// blocker saying what plan says: create it with the key schema, or set create_tables;
// without DynamoDB (--no-dynamodb) check cannot see it and says it must exist.
func TestCheckMissingTarget(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE orders (id int PRIMARY KEY, v text)`, func(c *config.Config) { c.CreateTables = aws.Bool(false) })
	r := f.tandem("check")
	if r.code != exitProblem {
		t.Errorf("exit %d, want %d", r.code, exitProblem)
	}
	wantFinding(t, r, "FAIL", "table public.orders", "its target table "+f.name+"_orders does not exist, and create_tables is false",
		"create "+f.name+"_orders with key schema (id N HASH), or set create_tables to true")
	r = f.tandem("check", "--no-dynamodb")
	if r.code != exitOK {
		t.Errorf("--no-dynamodb: exit %d, want %d", r.code, exitOK)
	}
	wantFinding(t, r, "OK", "table public.orders", "target "+f.name+"_orders: must exist (create_tables is false)")
}

// TestCheckTargetKeySchema: an existing target table keyed otherwise than the table's
// key is a blocker naming both key schemas; one that matches passes.
func TestCheckTargetKeySchema(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE orders (id int PRIMARY KEY, v text); CREATE TABLE notes (code text PRIMARY KEY, v text)`, nil)
	awsCfg, err := env.Moto.AWSConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(awsCfg)
	for name, attr := range map[string]types.ScalarAttributeType{f.name + "_orders": types.ScalarAttributeTypeS, f.name + "_notes": types.ScalarAttributeTypeS} {
		keyName := "id"
		if strings.HasSuffix(name, "_notes") {
			keyName = "code"
		}
		_, err := db.CreateTable(context.Background(), &dynamodb.CreateTableInput{TableName: aws.String(name), BillingMode: types.BillingModePayPerRequest,
			KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(keyName), KeyType: types.KeyTypeHash}},
			AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(keyName), AttributeType: attr}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	r := f.tandem("check")
	if r.code != exitProblem {
		t.Errorf("exit %d, want %d", r.code, exitProblem)
	}
	wantFinding(t, r, "FAIL", "table public.orders", "target table "+f.name+"_orders exists with key schema (id S HASH)", "the item key (id) needs (id N HASH)")
	wantFinding(t, r, "OK", "table public.notes", "target "+f.name+"_notes exists with the matching key schema")
	// Plan refuses it with the same message, before it records anything.
	if _, err := f.pipelineEnv().Plan(f.ctx, pipeline.PlanInput{}); err == nil || !strings.Contains(err.Error(), "target table "+f.name+"_orders exists with key schema (id S HASH)") {
		t.Errorf("plan with a mismatched target: %v", err)
	}
}

// TestCheckWALLevel: wal_level is per cluster, so this one runs against a second
// PostgreSQL started with wal_level = replica.
func TestCheckWALLevel(t *testing.T) {
	if err := pg.CheckWALLevel("logical"); err != nil {
		t.Errorf("logical refused: %v", err)
	}
	other, err := testenv.StartPostgres(testenv.PostgresOptions{WalLevel: "replica"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Stop() })
	u, err := other.CreateDatabase("walreplica")
	if err != nil {
		t.Fatal(err)
	}
	f := newCLIFixture(t, "", nil)
	f.cfg.PostgresURL = u
	f.writeConfig()
	r := f.tandem("check")
	if r.code != exitProblem {
		t.Errorf("exit %d, want %d", r.code, exitProblem)
	}
	wantFinding(t, r, "FAIL", "wal_level", `wal_level is "replica" but Tandem needs wal_level = logical`, "rds.logical_replication = 1")
}

// TestCheckCapacityRules: the headroom rules, on settings a shared test server cannot be
// given (its slots are used by parallel tests).
func TestCheckCapacityRules(t *testing.T) {
	full := pg.Capacity{MaxSlots: 2, MaxSenders: 2, OtherSlots: []string{"a", "b"}, OtherSenders: 2}
	if err := full.CheckSlots("tandem"); err == nil || !strings.Contains(err.Error(), "max_replication_slots is 2 and all are used by other slots (a, b)") {
		t.Errorf("slots full: %v", err)
	}
	if err := full.CheckSenders(); err == nil || !strings.Contains(err.Error(), "max_wal_senders is 2 and 2 WAL sender(s) are connected") {
		t.Errorf("senders full: %v", err)
	}
	own := pg.Capacity{MaxSlots: 2, MaxSenders: 2, OtherSlots: []string{"a", "b"}, OwnSlot: true, OtherSenders: 1}
	if err := own.CheckSlots("tandem"); err != nil {
		t.Errorf("Tandem's own slot exists: %v", err)
	}
	if err := own.CheckSenders(); err != nil {
		t.Errorf("one sender free: %v", err)
	}
}
