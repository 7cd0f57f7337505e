package testenv

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway PostgreSQL 15 cluster, by default with
// wal_level=logical, reachable over TCP on 127.0.0.1 with trust auth.
//
// pg_ctl daemonizes postgres, so unlike moto it does not die with the test
// binary: call Stop. If a test binary dies first, the next StartPostgres,
// StartMoto or Binary in any test binary stops the orphan (see owner.pid and
// data/postmaster.pid in Dir).
type Postgres struct {
	Dir  string // data/, the server log postgres.log and the unix socket
	Port int
	URL  string // postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable

	cred    *syscall.Credential // whom postgres runs as; nil: as ourselves
	mu      sync.Mutex          // serializes Restart and Stop
	stopped bool
}

// PostgresOptions configures StartPostgres. The zero value is what tests of
// the streamer need.
type PostgresOptions struct {
	WalLevel  string            // default "logical"; bad-input tests pass "replica"
	ExtraConf map[string]string // more postgresql.conf settings; values are quoted here
	// Files are written into the data directory before the server starts, readable by
	// the server only (a TLS key must be): ExtraConf names them relative to it
	// (ssl_cert_file = 'server.crt').
	Files map[string][]byte
	// HBA lines come first in pg_hba.conf, before initdb's trust-everyone lines: e.g.
	// "host all rotated 127.0.0.1/32 scram-sha-256" makes one role log in by password.
	HBA []string
}

const pgTimeout = 60 * time.Second

// StartPostgres creates a cluster in a fresh temp dir and starts it.
func StartPostgres(opts PostgresOptions) (*Postgres, error) {
	if opts.WalLevel == "" {
		opts.WalLevel = "logical"
	}
	cred, err := pgCredential()
	if err != nil {
		return nil, err
	}
	dir, err := newDir("pg")
	if err != nil {
		return nil, err
	}
	p := &Postgres{Dir: dir, cred: cred}
	if err := p.setUp(opts); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func (p *Postgres) setUp(opts PostgresOptions) error {
	if p.cred != nil {
		// initdb, running as postgres, creates data/ and the log in here.
		if err := os.Chown(p.Dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return err
		}
	}
	if err := p.initdb(); err != nil {
		return err
	}
	if err := p.writeConf(opts); err != nil {
		return err
	}
	if len(opts.HBA) > 0 {
		hba := filepath.Join(p.dataDir(), "pg_hba.conf")
		old, err := os.ReadFile(hba)
		if err != nil {
			return err
		}
		if err := os.WriteFile(hba, []byte(strings.Join(opts.HBA, "\n")+"\n"+string(old)), 0o600); err != nil {
			return err
		}
		if p.cred != nil {
			if err := os.Chown(hba, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				return err
			}
		}
	}
	for name, content := range opts.Files {
		path := filepath.Join(p.dataDir(), name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			return err
		}
		if p.cred != nil {
			if err := os.Chown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				return err
			}
		}
	}
	for attempt := 1; ; attempt++ {
		err := p.start()
		if err == nil || attempt == 3 || !addrInUse(err) {
			return err
		}
	}
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }
func (p *Postgres) logFile() string { return filepath.Join(p.Dir, "postgres.log") }

// CountInLog counts the lines of the server's log so far that contain s: tests count
// events only the server sees, such as refused logins ("password authentication failed
// for user"). A line is written before the client is told, so what a client saw is there.
func (p *Postgres) CountInLog(s string) (int, error) {
	b, err := os.ReadFile(p.logFile())
	if err != nil {
		return 0, err
	}
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n, nil
}

func (p *Postgres) initdb() error {
	var errs []error
	// Not every system has the C.UTF-8 locale; C exists everywhere.
	for _, locale := range []string{"C.UTF-8", "C"} {
		err := pgRun(p.Dir, p.cred, "initdb", "-D", p.dataDir(), "-A", "trust", "-U", "postgres",
			"--no-sync", "-E", "UTF8", "--locale="+locale)
		if err == nil {
			return nil
		}
		errs = append(errs, err) // initdb removes the data dir it failed to fill
	}
	return errors.Join(errs...)
}

// writeConf appends our settings to postgresql.conf, where later lines win.
// The port is not among them: start passes it, so a retry can pick another.
func (p *Postgres) writeConf(opts PostgresOptions) error {
	conf := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"unix_socket_directories": p.Dir, // the default /var/run/postgresql may not exist or be writable
		"wal_level":               opts.WalLevel,
		"max_wal_senders":         "10",
		"max_replication_slots":   "10",
		// Durability is pointless for a throwaway cluster; speed is not.
		"fsync":              "off",
		"synchronous_commit": "off",
		"full_page_writes":   "off",
		"shared_buffers":     "128MB",
		"max_connections":    "200",
	}
	for k, v := range opts.ExtraConf {
		conf[k] = v
	}
	var b strings.Builder
	b.WriteString("\n# testenv\n")
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(conf[k], "'", "''"))
	}
	f, err := os.OpenFile(filepath.Join(p.dataDir(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// start picks a port and starts the server on it.
func (p *Postgres) start() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	p.Port = port
	p.URL = p.url("postgres")
	return p.pgCtl("start")
}

// pgCtl runs pg_ctl start or restart (both take -l and -o) and waits until
// the server accepts connections over TCP.
func (p *Postgres) pgCtl(action string, extra ...string) error {
	deadline := time.Now().Add(pgTimeout)
	args := append([]string{action, "-D", p.dataDir(), "-l", p.logFile(), "-o", "-p " + strconv.Itoa(p.Port),
		"-w", "-t", strconv.Itoa(int(pgTimeout.Seconds()))}, extra...)
	if err := pgRun(p.Dir, p.cred, "pg_ctl", args...); err != nil {
		return err
	}
	// pg_ctl -w already waited for the postmaster; this is what clients see.
	var err error
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		var conn *pgx.Conn
		if conn, err = pgx.Connect(ctx, p.URL); err == nil {
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on port %d does not accept connections: %w%s", p.Port, err, tail(p.logFile()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart restarts the server on the same port and data dir, the way an
// operator would (fast shutdown: clients are disconnected, then a
// checkpoint), and waits until it accepts connections again.
func (p *Postgres) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errors.New("testenv: Restart after Stop")
	}
	return p.pgCtl("restart", "-m", "fast")
}

// Stop stops the server (immediate mode: nothing is worth keeping) and
// removes Dir. Calling it again does nothing.
func (p *Postgres) Stop() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	return stopCluster(p.Dir, p.cred)
}

// stopCluster stops the cluster under dir if one runs, then removes dir.
// It also serves reapStale, which knows dir only.
func stopCluster(dir string, cred *syscall.Credential) error {
	var err error
	data := filepath.Join(dir, "data")
	if pid, ok := readPid(filepath.Join(data, "postmaster.pid")); ok && processAlive(pid) {
		err = pgRun(dir, cred, "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w")
	}
	// Even if pg_ctl failed, a postmaster that survives shuts itself down
	// within a minute once it finds its lock file gone with the directory.
	return errors.Join(err, os.RemoveAll(dir))
}

// CreateDatabase creates a fresh database and returns a URL to it. It fails
// if the database exists (nothing is silently dropped), so tests that may
// run more than once per cluster (-count) need names unique per run.
func (p *Postgres) CreateDatabase(name string) (string, error) {
	if len(name) > 63 {
		// Postgres would truncate the name with a mere notice, and the
		// returned URL would name a database that does not exist.
		return "", fmt.Errorf("testenv: database name %q longer than 63 bytes", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %q: %w", name, err)
	}
	return p.url(name), nil
}

func (p *Postgres) url(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     fmt.Sprintf("127.0.0.1:%d", p.Port),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// pgCredential returns whom the server binaries must run as: initdb and
// postgres refuse to run as root.
func pgCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("testenv: running as root, and postgres refuses to; need a postgres user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// pgRun runs one of the server binaries in dir (a directory postgres can
// read: initdb fails if it cannot read its working directory, e.g. /root).
func pgRun(dir string, cred *syscall.Credential, name string, args ...string) error {
	cmd := exec.Command(pgBin(name), args...)
	cmd.Dir = dir
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	// pg_ctl sends the server's output to the log, so this returns as soon
	// as pg_ctl does.
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s%s", strings.Join(cmd.Args, " "), err, out, tail(filepath.Join(dir, "postgres.log")))
	}
	return nil
}

// pgBin finds a PostgreSQL 15 binary; Debian keeps them off PATH.
func pgBin(name string) string {
	p := filepath.Join("/usr/lib/postgresql/15/bin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return name
}
