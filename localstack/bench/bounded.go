package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bounded (bench-scale only): the longest transaction the snapshot of a boundedRows-row
// table holds open on the primary (sampled from pg_stat_activity while it copies), and the
// peak RSS (VmHWM) of a real streamer process through one transaction of boundedRows
// inserted rows.
func (b *bench) bounded() error {
	w, err := b.newWorld(tableDDL("huge", b.sz.boundedRows)+"CREATE TABLE onetx (id bigint PRIMARY KEY, n int NOT NULL, payload text NOT NULL);", nil)
	if err != nil {
		return err
	}
	defer w.close()
	if _, err := w.env.Plan(b.ctx, planInput()); err != nil {
		return err
	}
	if err := w.snapshotAll("public.onetx"); err != nil {
		return err
	}
	if err := w.finalizeAll("public.onetx"); err != nil {
		return err
	}

	// Longest transaction of the snapshot's backends (every client backend of this
	// database but the sampler's own: nothing else runs here meanwhile).
	ctx, stopSampling := context.WithCancel(b.ctx)
	defer stopSampling()
	longest := make(chan float64)
	go func() {
		worst := 0.0
		for ctx.Err() == nil {
			var s float64
			err := w.src.QueryRow(ctx, `SELECT COALESCE(max(extract(epoch FROM clock_timestamp() - xact_start)), 0)::float8
				FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
				AND backend_type = 'client backend' AND xact_start IS NOT NULL`).Scan(&s)
			if err == nil {
				worst = max(worst, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
		longest <- worst
	}()
	wall, _, err := measure(func() error { return w.snapshotAll("public.huge") })
	stopSampling()
	worst := <-longest
	if err != nil {
		return err
	}
	fmt.Printf("  snapshot of %d rows took %s (%.0f rows/s)\n", b.sz.boundedRows, wall.Round(time.Second), float64(b.sz.boundedRows)/wall.Seconds())
	b.absolute(fmt.Sprintf("longest snapshot transaction, %d-row table", b.sz.boundedRows), worst, "s", 5)

	// Streamer RSS: the real streamer binary, one transaction of boundedRows rows.
	binDir, err := os.MkdirTemp("", "tandem-bench-bin-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	bin := filepath.Join(binDir, "streamer")
	if out, err := exec.Command("go", "build", "-o", bin, "tandem/streamer").CombinedOutput(); err != nil {
		return fmt.Errorf("go build tandem/streamer: %w\n%s", err, out)
	}
	c := w.cfg
	cmd := exec.Command(bin)
	cmd.Env = append(append(os.Environ(), b.dyn.EnvVars()...),
		"TANDEM_PG_URL="+c.PostgresURL, "TANDEM_SLOT="+c.Slot, "TANDEM_PUBLICATION="+c.Publication,
		"TANDEM_CONTROL_TABLE="+c.ControlTable, "TANDEM_TABLE_PREFIX="+c.TablePrefix,
		"TANDEM_STREAM_WRITERS="+strconv.Itoa(c.StreamWriters), "TANDEM_STATUS_INTERVAL="+c.StatusInterval.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := w.exec(fmt.Sprintf("INSERT INTO onetx SELECT g, 0, repeat('p', %d) || g FROM generate_series(1, %d) g", payloadBytes-8, b.sz.boundedRows)); err != nil {
		return err
	}
	lsn, err := w.currentLSN()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := w.waitApplied(lsn, 30*time.Minute); err != nil {
		return fmt.Errorf("%w\nstreamer output:\n%s", err, tailString(out.String()))
	}
	hwm, err := vmHWM(cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("  streamer applied a %d-row transaction in %s\n", b.sz.boundedRows, time.Since(t0).Round(time.Second))
	b.absolute(fmt.Sprintf("streamer peak RSS (VmHWM) through a %d-row transaction", b.sz.boundedRows), hwm, "B", 150<<20)
	return nil
}

// vmHWM reads a process's peak resident set size from /proc.
func vmHWM(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func tailString(s string) string {
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s
}
