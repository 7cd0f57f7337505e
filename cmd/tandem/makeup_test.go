package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestMakeUpStopsOnCheck: make up runs tandem check first and, on a blocker (a misspelt
// table), stops with its finding before starting anything.
func TestMakeUpStopsOnCheck(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE good (id int PRIMARY KEY)`, nil)
	root, err := standin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".standin", "pid")); err == nil {
		t.Fatalf("a make up is running in %s: this test would stop at its 'already up'", root)
	}
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
