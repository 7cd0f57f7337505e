package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pglogrepl"

	"tandem/shared/config"
	"tandem/shared/pg"
)

const teardownDDL = `CREATE TABLE orders (id int PRIMARY KEY, v text); CREATE TABLE notes (id int PRIMARY KEY, v text);
	INSERT INTO orders SELECT g, 'v' FROM generate_series(1, 10) g;`

// tandemStdin runs the binary with f's configuration, stdin given.
func (f *cliFixture) tandemStdin(stdin string, args ...string) result {
	f.t.Helper()
	return runBinaryStdin(f.t, env.Moto.EnvVars(), stdin, append([]string{args[0], "--config", f.configFile}, args[1:]...)...)
}

// slotAndPublication counts f's slot and publication in the catalog.
func (f *cliFixture) slotAndPublication() (slots, pubs int) {
	f.t.Helper()
	err := f.src.QueryRow(f.ctx, `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1),
		(SELECT count(*) FROM pg_publication WHERE pubname = $2)`, f.cfg.Slot, f.cfg.Publication).Scan(&slots, &pubs)
	if err != nil {
		f.t.Fatal(err)
	}
	return slots, pubs
}

func (f *cliFixture) dynamoTableExists(name string) bool {
	f.t.Helper()
	_, err := f.pipelineEnv().DB.DescribeTable(f.ctx, &dynamodb.DescribeTableInput{TableName: &name})
	var notFound *types.ResourceNotFoundException
	if errors.As(err, &notFound) {
		return false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return true
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(out, l) {
			t.Errorf("output lacks %q:\n%s", l, out)
		}
	}
}

// TestTeardown: after a plan, teardown --yes leaves no slot and no publication and says
// so; run again, it says both were already absent. The DynamoDB tables are kept.
func TestTeardown(t *testing.T) {
	f := newCLIFixture(t, teardownDDL, nil)
	f.plan()
	if s, p := f.slotAndPublication(); s != 1 || p != 1 {
		t.Fatalf("after plan: %d slot(s), %d publication(s)", s, p)
	}
	r := f.tandem("teardown", "--yes")
	if r.code != exitOK {
		t.Fatalf("teardown --yes: exit %d", r.code)
	}
	wantLines(t, r.stdout, "removed replication slot "+f.cfg.Slot+" (holding ", "removed publication "+f.cfg.Publication+"\n")
	if s, p := f.slotAndPublication(); s != 0 || p != 0 {
		t.Errorf("after teardown: %d slot(s), %d publication(s) left", s, p)
	}
	if !f.dynamoTableExists(f.name+"_orders") || !f.dynamoTableExists(f.cfg.ControlTable) {
		t.Errorf("teardown without --delete-tables deleted DynamoDB tables")
	}
	r = f.tandem("teardown", "--yes")
	if r.code != exitOK {
		t.Fatalf("second teardown: exit %d", r.code)
	}
	wantLines(t, r.stdout, "replication slot "+f.cfg.Slot+": already absent", "publication "+f.cfg.Publication+": already absent")
}

// TestTeardownDeleteTables: --delete-tables deletes every target the control table
// records (a target replaced by a configuration change included) and the control table.
func TestTeardownDeleteTables(t *testing.T) {
	f := newCLIFixture(t, teardownDDL, nil)
	f.plan()
	f.cfg.Tables = []config.Table{{Source: "orders", Target: f.name + "_orders_v2"}, {Source: "notes"}}
	f.writeConfig()
	f.plan()
	for _, n := range []string{f.name + "_orders", f.name + "_orders_v2", f.name + "_notes", f.cfg.ControlTable} {
		if !f.dynamoTableExists(n) {
			t.Fatalf("after plan, %s does not exist", n)
		}
	}
	r := f.tandem("teardown", "--yes", "--delete-tables")
	if r.code != exitOK {
		t.Fatalf("teardown: exit %d", r.code)
	}
	wantLines(t, r.stdout, "removed replication slot", "removed publication",
		"removed DynamoDB table "+f.name+"_orders\n", "removed DynamoDB table "+f.name+"_orders_v2\n", "removed DynamoDB table "+f.name+"_notes\n",
		"removed control table "+f.cfg.ControlTable)
	for _, n := range []string{f.name + "_orders", f.name + "_orders_v2", f.name + "_notes", f.cfg.ControlTable} {
		if f.dynamoTableExists(n) {
			t.Errorf("%s still exists", n)
		}
	}
	if s, p := f.slotAndPublication(); s != 0 || p != 0 {
		t.Errorf("after teardown: %d slot(s), %d publication(s) left", s, p)
	}
}

// TestTeardownConfirmation: without --yes, teardown lists what it will remove and asks;
// anything but y removes nothing.
func TestTeardownConfirmation(t *testing.T) {
	f := newCLIFixture(t, teardownDDL, nil)
	f.plan()
	r := f.tandemStdin("n\n", "teardown")
	if r.code != exitProblem {
		t.Errorf("declined: exit %d, want %d", r.code, exitProblem)
	}
	wantLines(t, r.stdout, "remove replication slot "+f.cfg.Slot, "remove publication "+f.cfg.Publication, "Proceed? [y/N]", "nothing was removed")
	if s, p := f.slotAndPublication(); s != 1 || p != 1 {
		t.Errorf("declined, yet %d slot(s), %d publication(s) left", s, p)
	}
	r = f.tandemStdin("", "teardown") // end of input: not confirmed
	if r.code != exitProblem {
		t.Errorf("no answer: exit %d, want %d", r.code, exitProblem)
	}
	r = f.tandemStdin("y\n", "teardown")
	if r.code != exitOK {
		t.Errorf("confirmed: exit %d", r.code)
	}
	if s, p := f.slotAndPublication(); s != 0 || p != 0 {
		t.Errorf("confirmed, yet %d slot(s), %d publication(s) left", s, p)
	}
}

// TestTeardownActiveSlot: while a replication connection streams from the slot (a
// streamer), teardown refuses and names the PID; --force terminates it and drops the slot.
func TestTeardownActiveSlot(t *testing.T) {
	f := newCLIFixture(t, teardownDDL, nil)
	f.plan()
	conn, err := pg.ConnectReplication(f.ctx, pg.Source{URL: f.url})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = pglogrepl.StartReplication(f.ctx, conn, f.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + f.cfg.Publication + "'"}})
	if err != nil {
		t.Fatal(err)
	}
	r := f.tandem("teardown", "--yes")
	if r.code != exitProblem {
		t.Errorf("active slot: exit %d, want %d", r.code, exitProblem)
	}
	wantLines(t, r.stderr, "replication slot "+f.cfg.Slot+" is in use by PID", "a streamer is running", "--force")
	if s, p := f.slotAndPublication(); s != 1 || p != 1 {
		t.Errorf("refused, yet %d slot(s), %d publication(s) left", s, p)
	}
	r = f.tandem("teardown", "--yes", "--force")
	if r.code != exitOK {
		t.Fatalf("--force: exit %d", r.code)
	}
	wantLines(t, r.stdout, "which --force terminates", "removed replication slot "+f.cfg.Slot)
	if s, p := f.slotAndPublication(); s != 0 || p != 0 {
		t.Errorf("after --force: %d slot(s), %d publication(s) left", s, p)
	}
}

// TestTeardownKeepsUserPublication: a publication the user created is never dropped.
func TestTeardownKeepsUserPublication(t *testing.T) {
	f := newCLIFixture(t, teardownDDL, func(c *config.Config) { c.Tables = []config.Table{{Source: "orders"}} })
	f.exec("CREATE PUBLICATION " + f.cfg.Publication + " FOR TABLE orders")
	f.plan()
	r := f.tandem("teardown", "--yes")
	if r.code != exitOK {
		t.Fatalf("teardown: exit %d", r.code)
	}
	wantLines(t, r.stdout, "removed replication slot", "publication "+f.cfg.Publication+": kept (created outside Tandem")
	if s, p := f.slotAndPublication(); s != 0 || p != 1 {
		t.Errorf("after teardown: %d slot(s), %d publication(s); want 0 and the user's 1", s, p)
	}
}
