package testenv

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// DynaliteVersion is the npm version of dynalite the harness installs. Measured on this
// machine it takes about 8x moto's conditional PutItem rate, so it is the endpoint the
// benchmarks use: on moto one snapshot worker already saturates the endpoint and no
// scaling can be seen.
const DynaliteVersion = "4.0.0"

// Dynalite is a dynalite server (DynamoDB API only, LevelDB semantics, in memory) on
// 127.0.0.1. It dies with the process that started it even if Stop is never called.
//
// dynalite has no TTL and no transaction API. Tandem enables TTL on every target table
// (the tombstone backstop, README "The contract"); the wrapper script answers UpdateTimeToLive with
// success and does nothing, which is the only difference from dynalite itself. That is
// scoped to this harness endpoint: Tandem's own code still calls UpdateTimeToLive and
// fails if a real endpoint refuses it. Tests that need tombstones to expire, or
// transactions, stay on moto.
type Dynalite struct {
	Endpoint string // http://127.0.0.1:PORT
	Dir      string // holds dynalite.log and the wrapper script

	cmd     *exec.Cmd
	exited  chan struct{}
	mu      sync.Mutex
	stopped bool
}

// dynaliteWrapper starts dynalite in memory (no LevelDB directory), with tables active at
// once, and answers UpdateTimeToLive itself. argv: node wrapper.js MODULE_DIR PORT.
//
// It also loads dynalite's expression parsers with packrat caching. They are PEG.js 0.10
// parsers generated without --cache, and they backtrack exponentially in the nesting of
// parentheses: Tandem's snapshot guard as the SDK's expression builder writes it, (a) OR
// ((b) AND ((c) OR (d) OR ((e) AND (f)))), took ~70 ms of dynalite's single thread per
// PutItem, capping the endpoint near 15 writes/s. The transformation is the one PEG.js's
// own --cache option generates (memoize each rule's result by input position, per parse),
// so the grammar and every result are unchanged; only the time goes.
const dynaliteWrapper = `'use strict';
const fs = require('fs');
const path = require('path');
const Module = require('module');
const modDir = path.join(process.argv[2], 'node_modules', 'dynalite');
for (const name of ['conditionParser', 'updateParser', 'projectionParser']) {
  const file = path.join(modDir, 'db', name + '.js');
  let src = fs.readFileSync(file, 'utf8');
  let rules = 0;
  src = src.replace(/(function peg\$parse\(input, options\) \{\n)/, '$1  var peg$resultsCache = {};\n');
  src = src.replace(/(  function peg\$parse[A-Za-z0-9_]+\(\) \{\n    var [^;]*;\n)/g, (m) => m +
    '    var key = peg$currPos * 256 + ' + (rules++) + ', cached = peg$resultsCache[key];\n' +
    '    if (cached) { peg$currPos = cached.nextPos; return cached.result; }\n');
  src = src.replace(/\n    return s0;\n  \}\n/g, '\n    peg$resultsCache[key] = { nextPos: peg$currPos, result: s0 };\n    return s0;\n  }\n');
  if (rules === 0 || rules > 255 || !src.includes('peg$resultsCache = {}')) throw new Error('cannot add caching to ' + file);
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  m._compile(src, file);
  m.loaded = true;
  require.cache[file] = m;
}
const dynalite = require(modDir);
const port = Number(process.argv[3]);
const srv = dynalite({createTableMs: 0, deleteTableMs: 0, updateTableMs: 0});
const handler = srv.listeners('request')[0];
srv.removeAllListeners('request');
srv.on('request', (req, res) => {
  const target = String(req.headers['x-amz-target'] || '');
  if (target.endsWith('.CreateTable')) {
    // dynalite answers CREATING and turns the table ACTIVE a timer tick later; a
    // DescribeTable right after the answer (the SDK's table-exists waiter) would see
    // CREATING and wait its 20 s minimum delay. Answer once the table is ACTIVE.
    const end = res.end.bind(res);
    res.end = (...args) => { setTimeout(() => end(...args), 50); };
    return handler(req, res);
  }
  if (!target.endsWith('.UpdateTimeToLive')) return handler(req, res);
  // dynalite has no TTL: accept the call (a no-op) so Tandem's table creation succeeds.
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    let spec = {};
    try { spec = JSON.parse(body).TimeToLiveSpecification || {}; } catch (e) {}
    res.writeHead(200, {'Content-Type': 'application/x-amz-json-1.0'});
    res.end(JSON.stringify({TimeToLiveSpecification: spec}));
  });
});
srv.on('error', (e) => { console.error(String(e && e.stack || e)); process.exit(1); });
srv.listen(port, '127.0.0.1', () => console.log('dynalite ready on ' + port));
`

// dynaliteModuleDir returns the directory dynalite is installed into (npm --prefix), under
// the user's cache directory so it is installed once per machine, not once per run.
func dynaliteModuleDir() (string, error) {
	if d := os.Getenv("TANDEM_DYNALITE_DIR"); d != "" {
		return d, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("dynalite: no cache directory to install into (set TANDEM_DYNALITE_DIR): %w", err)
	}
	return filepath.Join(cache, "tandem", "dynalite-"+DynaliteVersion), nil
}

// installDynalite installs dynalite with npm into dir unless that version is there already.
// An exclusive lock on dir/.lock keeps parallel test binaries from installing at once.
func installDynalite(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("dynalite: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("dynalite: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("dynalite: locking %s: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	pkg, err := os.ReadFile(filepath.Join(dir, "node_modules", "dynalite", "package.json"))
	if err == nil && strings.Contains(string(pkg), `"version": "`+DynaliteVersion+`"`) {
		return nil
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("dynalite needs Node.js and npm on PATH: %w", err)
		}
	}
	cmd := exec.Command("npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "--no-save", "--loglevel=error", "dynalite@"+DynaliteVersion)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("dynalite: npm install dynalite@%s into %s: %w\n%s", DynaliteVersion, dir, err, out)
	}
	return nil
}

// DynaliteOptions tune a dynalite server.
type DynaliteOptions struct {
	// CPUs, when set, confines the server to these CPUs (taskset's list form, e.g. "1"),
	// so that a benchmark can give the endpoint a core of its own, as a remote service
	// has, instead of letting it compete with PostgreSQL and the code it measures.
	CPUs string
}

// StartDynalite installs dynalite if needed, starts it on a free port and waits until it
// answers. It never falls back to another endpoint: the error says why it could not start.
func StartDynalite() (*Dynalite, error) { return StartDynaliteWith(DynaliteOptions{}) }

// StartDynaliteWith is StartDynalite with options.
func StartDynaliteWith(opts DynaliteOptions) (*Dynalite, error) {
	modDir, err := dynaliteModuleDir()
	if err != nil {
		return nil, err
	}
	if err := installDynalite(modDir); err != nil {
		return nil, err
	}
	dir, err := newDir("dynalite")
	if err != nil {
		return nil, err
	}
	script := filepath.Join(dir, "wrapper.js")
	if err := os.WriteFile(script, []byte(dynaliteWrapper), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var errs []error
	for attempt := 1; attempt <= 3; attempt++ {
		d, err := startDynalite(dir, modDir, script, opts)
		if err == nil {
			return d, nil
		}
		errs = append(errs, err)
		if !strings.Contains(err.Error(), "EADDRINUSE") {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, errors.Join(errs...)
}

func startDynalite(dir, modDir, script string, opts DynaliteOptions) (*Dynalite, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "dynalite.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	args := []string{"node", script, modDir, strconv.Itoa(port)}
	if opts.CPUs != "" {
		// Through taskset rather than sched_setaffinity after the start: node starts its
		// threads at once, and each keeps the mask it was created with.
		if _, err := exec.LookPath("taskset"); err != nil {
			return nil, fmt.Errorf("dynalite: pinning to CPUs %s needs taskset (util-linux): %w", opts.CPUs, err)
		}
		args = append([]string{"taskset", "-c", opts.CPUs}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("dynalite: %w", err)
	}
	d := &Dynalite{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(d.exited)
	}()
	if err := d.waitReady(); err != nil {
		d.kill()
		return nil, fmt.Errorf("dynalite (%s): %w%s", strings.Join(cmd.Args, " "), err, tail(logPath))
	}
	return d, nil
}

// waitReady polls until dynalite answers an HTTP request (any DynamoDB error reply counts:
// it means the server parses requests), failing early if it exits.
func (d *Dynalite) waitReady() error {
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Post(d.Endpoint, "application/x-amz-json-1.0", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("exited: %v", d.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 30s: %w", err)
		}
	}
}

func (d *Dynalite) kill() {
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.exited
}

// Pid is the process id of the dynalite server, for measuring its CPU from outside.
func (d *Dynalite) Pid() int { return d.cmd.Process.Pid }

// Stop kills dynalite and removes Dir. Calling it again does nothing.
func (d *Dynalite) Stop() error {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil
	}
	d.stopped = true
	d.kill()
	return os.RemoveAll(d.Dir)
}

// AWSConfig returns a config that talks to this dynalite server and nothing else (see
// Moto.AWSConfig for why it is built by hand).
func (d *Dynalite) AWSConfig(ctx context.Context) (aws.Config, error) {
	return awsConfig(d.Endpoint), nil
}

// EnvVars is what a subprocess needs to talk to this dynalite server.
func (d *Dynalite) EnvVars() []string { return envVars(d.Endpoint) }
