package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/localstack/standin"
	"tandem/localstack/testenv"
	"tandem/shared/config"
)

// runCmd runs a command with a deadline and returns its combined output and exit code.
func runCmd(t *testing.T, timeout time.Duration, dir string, extraEnv []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s %v: %v\n%s", name, args, err, out.String())
	}
	t.Logf("%s %v → exit %d\n%s", name, args, code, out.String())
	return out.String(), code
}

// TestUpFailsWithPlanError: localstack/up (what make up runs in the background) deploys
// the stand-in, waits for the execution's plan step, and when plan refuses a table exits
// 1 with plan's message instead of reporting success; nothing stays running, the
// temporary directories are removed and no up.json is left.
func TestUpFailsWithPlanError(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE good (id int PRIMARY KEY, v text); CREATE TABLE meta (id int PRIMARY KEY, "__src" text)`, nil)
	up, err := testenv.Binary("tandem/localstack/up")
	if err != nil {
		t.Fatal(err)
	}
	root, err := standin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "config.json")
	cfg := config.Config{Slot: f.cfg.Slot, Publication: f.cfg.Publication, TablePrefix: f.name + "-",
		Tables: []config.Table{{Source: "good", Target: f.name + "-good-items"}, {Source: "meta"}}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, code := runCmd(t, 3*time.Minute, root, nil, up, "--pg-url", f.url, "--config", cfgFile, "--addr", "127.0.0.1:0", "--state", state)
	if code != 1 {
		t.Errorf("up with a refused table: exit %d, want 1", code)
	}
	for _, want := range []string{"up: the plan failed", `table public.meta: column "__src" uses the reserved prefix "__"`,
		"Tandem's replication slot " + f.cfg.Slot + " still retains"} {
		if !strings.Contains(out, want) {
			t.Errorf("up's output lacks %q", want)
		}
	}
	if strings.Contains(out, "Tandem is up") {
		t.Errorf("up reported success")
	}
	t.Logf("up took %s", time.Since(start))
	for _, gone := range []string{"up.json", "code", "streamer", "lambda/" + "tandem-PlanFunction"} {
		if _, err := os.Stat(filepath.Join(state, gone)); err == nil {
			t.Errorf("%s left in the state directory", gone)
		}
	}
	// The run's own logs stay, and the configuration for the tandem command was written.
	var cli map[string]any
	b, err = os.ReadFile(filepath.Join(state, "tandem.json"))
	if err != nil || json.Unmarshal(b, &cli) != nil {
		t.Fatalf("tandem.json: %v %s", err, b)
	}
	for _, k := range []string{"postgres_url", "control_table", "table_prefix", "slot", "publication", "tables", "state_machine_arn"} {
		if _, ok := cli[k]; !ok {
			t.Errorf("tandem.json lacks %s: %s", k, b)
		}
	}
	if cli["table_prefix"] != f.name+"-" || cli["slot"] != f.cfg.Slot || !strings.Contains(string(b), f.name+"-good-items") {
		t.Errorf("tandem.json does not carry the configuration: %s", b)
	}
}

// makeRoot is the repository, where make up runs, after making sure no make up of
// another run is up there (its fixed endpoint and .standin are this test's).
func makeRoot(t *testing.T) string {
	t.Helper()
	root, err := standin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".standin", "pid")); err == nil {
		t.Fatalf("a make up is running in %s: this test would stop at its 'already up'", root)
	}
	return root
}

// TestMakeUpStopsOnCheck: make up runs tandem check first and, on a blocker (a misspelt
// table), stops with its finding before starting anything.
func TestMakeUpStopsOnCheck(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE good (id int PRIMARY KEY)`, nil)
	root := makeRoot(t)
	out, code := runCmd(t, 3*time.Minute, root, nil, "make", "--no-print-directory", "up", "PG_URL="+f.url, "TABLES=public.good,public.misspelt")
	if code == 0 {
		t.Errorf("make up with a misspelt table: exit 0")
	}
	for _, want := range []string{"FAIL table public.misspelt: config: configured table(s) public.misspelt do not exist",
		"OK   table public.good", "make up: tandem check found a blocker", "nothing was started"} {
		if !strings.Contains(out, want) {
			t.Errorf("make up's output lacks %q", want)
		}
	}
}

// makeConfig writes a make up CONFIG file with f's slot, publication and tables, and no
// table_prefix (the deployment's default applies).
func makeConfig(t *testing.T, f *cliFixture, tables ...string) string {
	t.Helper()
	return makeConfigWith(t, f, nil, tables...)
}

// makeConfigWith is makeConfig with further settings.
func makeConfigWith(t *testing.T, f *cliFixture, settings map[string]any, tables ...string) string {
	t.Helper()
	c := map[string]any{"slot": f.cfg.Slot, "publication": f.cfg.Publication}
	for k, v := range settings {
		c[k] = v
	}
	var ts []map[string]string
	for _, source := range tables {
		ts = append(ts, map[string]string{"source": source})
	}
	c["tables"] = ts
	path := filepath.Join(t.TempDir(), "tandem.json")
	b, _ := json.Marshal(c)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// makeDown registers make down DROP_SLOT=1 to run when the test ends, whatever happened,
// so that nothing is left running on the fixed endpoint.
func makeDown(t *testing.T, root string) {
	t.Cleanup(func() {
		out, code := runCmd(t, 3*time.Minute, root, nil, "make", "--no-print-directory", "down", "DROP_SLOT=1")
		if code != 0 {
			t.Errorf("make down at the end: exit %d\n%s", code, out)
		}
	})
}

// wantStopped requires that nothing make up started still runs: no pid file and nothing
// listening on the stand-in's endpoint.
func wantStopped(t *testing.T, root string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, ".standin", "pid")); err == nil {
		t.Errorf(".standin/pid is left")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:4566", time.Second); err == nil {
		c.Close()
		t.Errorf("something still listens on 127.0.0.1:4566")
	}
}

// TestMakeUpFailsWithPlanError: through make up itself, an input that the check make up
// runs first (--no-dynamodb --deployment: the stand-in's DynamoDB does not exist yet)
// cannot see but plan refuses: a CONFIG with create_tables false, whose target is missing
// from the stand-in's fresh DynamoDB. Check says the target must exist, make up gets past
// it, and must then fail with plan's message rather than report the stack up.
func TestMakeUpFailsWithPlanError(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE items (id int PRIMARY KEY, v text)`, nil)
	root := makeRoot(t)
	makeDown(t, root)
	out, code := runCmd(t, 5*time.Minute, root, nil, "make", "--no-print-directory", "up", "PG_URL="+f.url,
		"CONFIG="+makeConfigWith(t, f, map[string]any{"create_tables": false}, "public.items"))
	if code == 0 {
		t.Errorf("make up with a target plan refuses: exit 0")
	}
	for _, want := range []string{"OK   table public.items", "must exist (create_tables is false)", "No blockers",
		"up: the plan failed (execution FAILED)", "table public.items: its target table ", "does not exist, and create_tables is false",
		"or set create_tables to true", "make up failed (log: .standin/up.log)"} {
		if !strings.Contains(out, want) {
			t.Errorf("make up's output lacks %q", want)
		}
	}
	if strings.Contains(out, "Tandem is up") || strings.Contains(out, "Endpoint http://") {
		t.Errorf("make up reported the stack up")
	}
	wantStopped(t, root)
}

// TestMakeUpStatusDown: the operator's round trip through make. make up (a CONFIG without
// table_prefix: check names the targets the deployment creates, tandem-<table>) starts
// with none of the previous run's logs; make status shows the table's row and exits 0;
// make down stops everything and says the slot still retains WAL and how to drop it;
// after make up again, make down DROP_SLOT=1 drops the slot and the publication Tandem
// created, although this second run's DynamoDB (moto, in memory) started empty.
func TestMakeUpStatusDown(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE items (id int PRIMARY KEY, v text);
		INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 25) g; ANALYZE items`, nil)
	root := makeRoot(t)
	state := filepath.Join(root, ".standin")
	cfgFile := makeConfig(t, f, "public.items")
	target := config.DeployedTablePrefix + "items"

	// A previous run's logs, which this run's must not be mixed with.
	const stale = "STALE line of an earlier run"
	if err := os.MkdirAll(filepath.Join(state, "lambda", "old-worker"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"streamer.log", "lambda/tandem-PlanFunction-OLD.log", "lambda/old-worker/bootstrap"} {
		if err := os.WriteFile(filepath.Join(state, name), []byte(stale+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	makeDown(t, root)
	up := func() string {
		t.Helper()
		out, code := runCmd(t, 5*time.Minute, root, nil, "make", "--no-print-directory", "up", "PG_URL="+f.url, "CONFIG="+cfgFile)
		if code != 0 {
			t.Fatalf("make up: exit %d", code)
		}
		if !strings.Contains(out, "Endpoint http://127.0.0.1:4566") {
			t.Errorf("make up's output lacks the endpoint")
		}
		return out
	}
	out := up()
	if line := findingLine(out, "table public.items"); !strings.Contains(line, "target "+target+": plan creates it") {
		t.Errorf("make up's check names another target than %s: %q", target, line)
	}
	var cli struct {
		TablePrefix string `json:"table_prefix"`
	}
	if b, err := os.ReadFile(filepath.Join(state, "tandem.json")); err != nil || json.Unmarshal(b, &cli) != nil || cli.TablePrefix != config.DeployedTablePrefix {
		t.Errorf("the stack's table_prefix is %q, want %s (%v)", cli.TablePrefix, config.DeployedTablePrefix, err)
	}
	b, err := os.ReadFile(filepath.Join(state, "streamer.log"))
	if err != nil {
		t.Errorf("no streamer.log of this run: %v", err)
	} else if strings.Contains(string(b), stale) {
		t.Errorf("streamer.log still holds the previous run's lines")
	}
	for _, gone := range []string{"lambda/tandem-PlanFunction-OLD.log", "lambda/old-worker"} {
		if _, err := os.Stat(filepath.Join(state, gone)); err == nil {
			t.Errorf("the previous run's %s is left", gone)
		}
	}

	// make status until the snapshot is done.
	var status string
	var code int
	for deadline := time.Now().Add(3 * time.Minute); ; {
		status, code = runCmd(t, time.Minute, root, nil, "make", "--no-print-directory", "status")
		if line := tableLine(t, status, "public.items"); strings.Contains(line, " done ") || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if code != 0 {
		t.Errorf("make status: exit %d, want 0", code)
	}
	line := tableLine(t, status, "public.items")
	for _, want := range []string{" done ", "100%", " 25 ", "1/1"} {
		if !strings.Contains(line, want) {
			t.Errorf("make status: the row of public.items lacks %q: %q", want, line)
		}
	}
	for _, want := range []string{"TABLE", "STATE", "PROGRESS", "Streamer:", "State machine: latest execution snapshot-1"} {
		if !strings.Contains(status, want) {
			t.Errorf("make status lacks %q", want)
		}
	}
	// The rows are in the target check named.
	db := dynamodb.NewFromConfig(aws.Config{Region: standin.Region, BaseEndpoint: aws.String("http://127.0.0.1:4566"),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	if n, err := db.Scan(f.ctx, &dynamodb.ScanInput{TableName: aws.String(target), Select: types.SelectCount}); err != nil || n.Count != 25 {
		t.Errorf("DynamoDB table %s: %v items, %v; want 25", target, n, err)
	}

	out, code = runCmd(t, 3*time.Minute, root, nil, "make", "--no-print-directory", "down")
	if code != 0 {
		t.Errorf("make down: exit %d", code)
	}
	for _, want := range []string{"Tandem's replication slot " + f.cfg.Slot + " still retains", "bytes of WAL",
		"tandem teardown --config .standin/tandem.json", "make down DROP_SLOT=1", "stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("make down's output lacks %q", want)
		}
	}
	wantStopped(t, root)
	if !f.exists("SELECT FROM pg_replication_slots WHERE slot_name = $1", f.cfg.Slot) {
		t.Errorf("make down dropped the slot")
	}

	up()
	out, code = runCmd(t, 3*time.Minute, root, nil, "make", "--no-print-directory", "down", "DROP_SLOT=1")
	if code != 0 {
		t.Errorf("make down DROP_SLOT=1: exit %d", code)
	}
	for _, want := range []string{"removed replication slot " + f.cfg.Slot, "removed publication " + f.cfg.Publication, "stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("make down DROP_SLOT=1's output lacks %q", want)
		}
	}
	wantStopped(t, root)
	if f.exists("SELECT FROM pg_replication_slots WHERE slot_name = $1", f.cfg.Slot) {
		t.Errorf("make down DROP_SLOT=1 left the slot")
	}
	if f.exists("SELECT FROM pg_publication WHERE pubname = $1", f.cfg.Publication) {
		t.Errorf("make down DROP_SLOT=1 left the publication")
	}
}

// exists reports whether query returns a row.
func (f *cliFixture) exists(query string, args ...any) bool {
	f.t.Helper()
	var found bool
	if err := f.src.QueryRow(f.ctx, "SELECT EXISTS ("+query+")", args...).Scan(&found); err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
	return found
}
