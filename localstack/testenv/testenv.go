// Package testenv starts the real components integration tests run against:
// a throwaway PostgreSQL 15 cluster, a moto server speaking the DynamoDB API,
// and binaries of this module for tests that run them as subprocesses.
//
// Nothing is ever skipped: if a component cannot start, the error says why
// and carries the tail of the component's log.
//
// Typical use, once per test binary:
//
//	func TestMain(m *testing.M) {
//		env, err := testenv.Start()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		code := m.Run()
//		env.Stop() // os.Exit skips deferred calls, so not deferred
//		os.Exit(code)
//	}
package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Env holds one of each component.
type Env struct {
	PG   *Postgres
	Moto *Moto
}

// Start starts PostgreSQL (wal_level=logical) and moto side by side.
func Start() (*Env, error) {
	var e Env
	var pgErr, motoErr error
	var wg sync.WaitGroup
	wg.Go(func() { e.PG, pgErr = StartPostgres(PostgresOptions{}) })
	e.Moto, motoErr = StartMoto()
	wg.Wait()
	if err := errors.Join(pgErr, motoErr); err != nil {
		e.Stop()
		return nil, err
	}
	return &e, nil
}

// Stop stops both components and removes the binaries Binary built. It has
// no error to return because TestMain could do nothing with it but print it.
func (e *Env) Stop() {
	if e == nil {
		return
	}
	if err := errors.Join(e.PG.Stop(), e.Moto.Stop(), removeBinaries()); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stop:", err)
	}
}

const dirPrefix = "tandem-testenv-"

var reapOnce sync.Once

// newDir makes a fresh directory for one component and records which process
// owns it. A test binary that dies without calling Stop (panic, -timeout,
// SIGKILL) leaves its directory, and maybe a running postgres, behind; the
// next run uses owner.pid to tell those from directories of test binaries
// still running in parallel.
func newDir(kind string) (string, error) {
	reapOnce.Do(reapStale)
	dir, err := os.MkdirTemp("", dirPrefix+kind+"-*")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// reapStale cleans up after earlier test binaries that died without Stop.
// Moto needs no help (Pdeathsig kills it with its test binary), but pg_ctl
// daemonizes postgres, so an orphaned cluster runs on until stopped here.
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		owner, ok := readPid(filepath.Join(dir, "owner.pid"))
		if !ok || processAlive(owner) {
			continue // still in use, or being created right now
		}
		cred, _ := pgCredential()
		stopCluster(dir, cred) // best effort: nobody waits for this error
	}
}

// readPid reads the pid on the first line of a pid file (owner.pid, or the
// postmaster.pid postgres writes into its data directory).
func readPid(path string) (int, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	return pid, err == nil && pid > 0
}

// processAlive reports whether pid runs. It counts zombies as dead: the
// machine's init need not reap orphans (postmasters are orphans by design).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name in parentheses may hold anything
	return i >= 0 && !strings.HasPrefix(s[i+1:], " Z")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Someone else may take it before our server binds it; callers retry then
// (see addrInUse).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// addrInUse reports whether a start failed because the port was taken; the
// text comes from the component's log tail in err.
func addrInUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Address already in use")
}

// tail returns the end of a component's log, to append to an error.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("\n(no log: %v)", err)
	}
	const limit = 4096
	if len(b) > limit {
		b = b[len(b)-limit:]
	}
	return fmt.Sprintf("\n--- tail of %s ---\n%s", path, b)
}
