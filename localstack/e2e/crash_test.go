package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"tandem/localstack/testenv"
	"tandem/shared/config"
	"tandem/shared/snapshot"
)

// processEnv is the environment of the real binaries for this fixture's configuration.
func (f *fixture) processEnv() []string {
	c := f.cfg
	return append(append(os.Environ(), env.Moto.EnvVars()...),
		"TANDEM_PG_URL="+c.PostgresURL, "TANDEM_PG_SECRET_ARN="+c.PostgresSecretARN, "TANDEM_SLOT="+c.Slot, "TANDEM_PUBLICATION="+c.Publication,
		"TANDEM_CONTROL_TABLE="+c.ControlTable, "TANDEM_TABLE_PREFIX="+c.TablePrefix,
		"TANDEM_CHUNK_SIZE="+strconv.Itoa(c.ChunkSize), "TANDEM_LEASE_TTL="+c.LeaseTTL.String(),
		"TANDEM_STATUS_INTERVAL="+c.StatusInterval.String())
}

// process starts a binary of this module with the fixture's environment.
func (f *fixture) process(pkg string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	f.t.Helper()
	bin, err := testenv.Binary(pkg)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = f.processEnv()
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, &out
}

func crashRounds(def int) int {
	if n, err := strconv.Atoi(os.Getenv("TANDEM_CRASH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return def
}

// TestStreamerKilled SIGKILLs the real streamer binary at random points of a concurrent
// workload and snapshot, restarts it each time, and requires convergence: whatever was
// acknowledged is durable and whatever was not is replayed harmlessly.
func TestStreamerKilled(t *testing.T) {
	seed := uint64(time.Now().UnixNano() % 1000)
	if s := os.Getenv("TANDEM_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (rerun with TANDEM_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	f := newFixture(t, mixedSchema, nil)
	if err := newWorkload(seed, f.src, 100).seedRows(f.ctx, 100); err != nil {
		t.Fatal(err)
	}
	f.plan()
	streamer, out := f.process("tandem/streamer")

	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	workDone := make(chan map[string]int, 1)
	go func() { workDone <- runWorkloads(ctx, t, seed, f.src, 100, 2, 200) }()
	snapDone := make(chan struct{})
	go func() {
		defer close(snapDone)
		for _, source := range mixedTables {
			f.snapshot(source)
		}
	}()

	// One large transaction, so that kills also land in the middle of applying it.
	go func() {
		_, _ = f.src.Exec(ctx, `INSERT INTO order_lines SELECT 100000 + g, 1, 'bulk', g, g FROM generate_series(1, 2000) g`)
	}()
	kills := 0
	for round := range crashRounds(3) {
		// Kill only a streamer that holds the lease and is applying changes.
		owner := fmt.Sprintf("%s/%d", hostname(), streamer.Process.Pid)
		eventually(t, "restarted streamer takes over", func() bool {
			cp, err := f.env.Control.Checkpoint(f.ctx)
			return err == nil && cp.Owner == owner
		})
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		if err := streamer.Process.Kill(); err != nil {
			t.Fatalf("round %d: kill: %v", round, err)
		}
		_ = streamer.Wait()
		kills++
		streamer, out = f.process("tandem/streamer")
	}
	ops := <-workDone
	<-snapDone
	f.waitCaughtUp()
	f.assertConverged(mixedTables...)

	// ECS stops a task with SIGTERM: the streamer drains, acknowledges what is durable,
	// releases its lease and exits 0.
	_ = streamer.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- streamer.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("streamer exit after SIGTERM: %v\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("streamer did not stop within 30 s of SIGTERM")
	}
	if cp, _ := f.env.Control.Checkpoint(f.ctx); cp.ConfirmedLSN != cp.AppliedLSN {
		t.Errorf("after SIGTERM confirmed %d != applied %d", cp.ConfirmedLSN, cp.AppliedLSN)
	}
	if t.Failed() {
		t.Logf("last streamer output:\n%s", out.String())
	}
	t.Logf("converged after %d SIGKILLs of the streamer; operations %v", kills, ops)
}

// TestSnapshotKilled SIGKILLs the real snapshot handler binary in the middle of a table
// and re-runs it: it resumes from the stored cursor (no chunk is copied twice), and the
// table converges while the workload and the streamer run.
func TestSnapshotKilled(t *testing.T) {
	f := newFixture(t, mixedSchema, func(c *config.Config) { c.ChunkSize = 10 })
	if err := newWorkload(5, f.src, 300).seedRows(f.ctx, 300); err != nil {
		t.Fatal(err)
	}
	f.plan()
	f.startStreamer(nil)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	workDone := make(chan struct{})
	go func() { defer close(workDone); runWorkloads(ctx, t, 5, f.src, 300, 1, 150) }()

	event := `{"table":"public.accounts"}`
	for round := range crashRounds(2) {
		cmd, out := f.process("tandem/functions/snapshot", event)
		// Kill once the handler has stored some progress and is inside a later chunk.
		var before int64
		eventually(t, "snapshot progress", func() bool {
			_, _, before, _ = f.progress("public.accounts")
			return before >= int64(2*(round+1))
		})
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		st, _, chunks, cursor := f.progress("public.accounts")
		if st.State == "done" {
			t.Fatalf("round %d: the snapshot finished before it was killed; output:\n%s", round, out)
		}
		if chunks < before || len(cursor) == 0 {
			t.Fatalf("round %d: progress lost: %d chunks (had %d), cursor %v", round, chunks, before, cursor)
		}
	}
	_, _, killedAt, _ := f.progress("public.accounts")
	cmd, out := f.process("tandem/functions/snapshot", event)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("re-run failed: %v\n%s", err, out)
	}
	var res snapshot.Result
	if err := json.Unmarshal(lastJSON(out.Bytes()), &res); err != nil || !res.Done {
		t.Fatalf("re-run result %+v (%v):\n%s", res, err, out)
	}
	if res.Chunks <= killedAt {
		t.Errorf("resume did not continue from stored progress: %d chunks before, %d after", killedAt, res.Chunks)
	}
	<-workDone
	for _, source := range mixedTables[1:] {
		f.snapshot(source)
	}
	f.waitCaughtUp()
	f.assertConverged(mixedTables...)
	t.Logf("snapshot killed %d times, resumed at chunk %d, done after %d chunks", crashRounds(2), killedAt, res.Chunks)
}

func hostname() string { h, _ := os.Hostname(); return h }

// lastJSON returns the JSON document a handler printed last (logs go before it).
func lastJSON(b []byte) []byte {
	if i := bytes.LastIndex(b, []byte("\n{\n")); i >= 0 {
		return b[i+1:]
	}
	if bytes.HasPrefix(b, []byte("{\n")) {
		return b
	}
	return []byte(fmt.Sprintf("%q", b))
}
