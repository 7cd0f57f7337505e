package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/localstack/testenv"
	"tandem/shared/config"
)

// The CLI is tested as a user runs it: the real binary, against a real PostgreSQL and
// the moto DynamoDB endpoint, both started here.
var (
	env      *testenv.Env
	binary   string
	fixtures atomic.Int64
)

func TestMain(m *testing.M) {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "tandem tests: cannot start the test stack:", err)
		os.Exit(1)
	}
	if binary, err = testenv.Binary("tandem/cmd/tandem"); err != nil {
		fmt.Fprintln(os.Stderr, "tandem tests:", err)
		env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	env.Stop()
	os.Exit(code)
}

// cliFixture is one test's world: its own database, slot, publication, control table
// and target prefix, and a configuration file the binary is pointed at.
type cliFixture struct {
	t          *testing.T
	ctx        context.Context
	name       string
	url        string
	src        *pgxpool.Pool
	cfg        *config.Config
	configFile string
}

func newCLIFixture(t *testing.T, ddl string, configure func(*config.Config)) *cliFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	name := fmt.Sprintf("c%d", fixtures.Add(1))
	url, err := env.PG.CreateDatabase(name)
	if err != nil {
		t.Fatalf("creating database: %v", err)
	}
	src, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	if ddl != "" {
		if _, err := src.Exec(ctx, ddl); err != nil {
			t.Fatalf("schema: %v", err)
		}
	}
	cfg := &config.Config{PostgresURL: url, Slot: "tandem_" + name, Publication: "tandem_" + name,
		ControlTable: name + "_control", TablePrefix: name + "_", ChunkSize: 50}
	if configure != nil {
		configure(cfg)
	}
	f := &cliFixture{t: t, ctx: ctx, name: name, url: url, src: src, cfg: cfg,
		configFile: filepath.Join(t.TempDir(), "tandem.json")}
	f.writeConfig()
	t.Cleanup(func() {
		_, _ = src.Exec(context.Background(),
			"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active", cfg.Slot)
	})
	return f
}

// writeConfig writes f.cfg where the binary reads it (after a test changed it).
func (f *cliFixture) writeConfig() {
	f.t.Helper()
	b, err := json.MarshalIndent(f.cfg, "", "  ")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(f.configFile, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
}

func (f *cliFixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.src.Exec(f.ctx, sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// result is one run of the binary.
type result struct {
	stdout, stderr string
	code           int
}

// tandem runs the binary with f's configuration file and the moto endpoint.
func (f *cliFixture) tandem(args ...string) result {
	f.t.Helper()
	full := append([]string{args[0], "--config", f.configFile}, args[1:]...)
	return runBinary(f.t, env.Moto.EnvVars(), full...)
}

// runBinary runs the binary with extra environment variables, at most two minutes.
func runBinary(t *testing.T, extraEnv []string, args ...string) result {
	t.Helper()
	return runBinaryStdin(t, extraEnv, "", args...)
}

// runBinaryStdin is runBinary with stdin as the binary's standard input.
func runBinaryStdin(t *testing.T, extraEnv []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("tandem %v: %v", args, err)
	}
	t.Logf("tandem %v (stdin %q) → exit %d\nstdout:\n%s\nstderr:\n%s", args, stdin, r.code, r.stdout, r.stderr)
	return r
}

func TestUsage(t *testing.T) {
	r := runBinary(t, nil)
	if r.code != exitUsage {
		t.Errorf("no command: exit %d, want %d", r.code, exitUsage)
	}
	for _, c := range commands {
		r := runBinary(t, nil, c.name, "--help")
		if r.code != exitOK || !bytes.Contains([]byte(r.stdout), []byte("Usage: tandem "+c.name)) {
			t.Errorf("%s --help: exit %d, stdout %q", c.name, r.code, r.stdout)
		}
	}
	if r := runBinary(t, nil, "nonsense"); r.code != exitUsage {
		t.Errorf("unknown command: exit %d, want %d", r.code, exitUsage)
	}
}
