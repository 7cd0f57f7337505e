package standin

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// function is one deployed Lambda function and its warm workers.
type function struct {
	name, arn string
	bootstrap string
	env       []string
	timeout   time.Duration
	max       int
	logFile   *os.File
	log       *slog.Logger

	queue  chan *invocation
	nextID atomic.Int64

	// mu guards the accounting that decides when to start a worker: every queued
	// invocation must have a worker that is waiting for work or about to.
	mu       sync.Mutex
	workers  []*worker
	queued   int // invocations not yet taken by a worker
	idle     int // workers waiting in /next
	starting int // workers started that have not asked for work yet
	closed   bool
}

type invocation struct {
	id      string
	payload []byte
	done    chan result
	once    sync.Once
}

type result struct {
	payload       []byte
	functionError string
}

func (inv *invocation) finish(r result) { inv.once.Do(func() { inv.done <- r }) }

// load reads the function's configuration and code from moto and extracts the bootstrap.
func (g *Gateway) load(ctx context.Context, name string) (*function, error) {
	var desc struct {
		Configuration struct {
			FunctionArn string
			Timeout     int
			MemorySize  int
			Environment struct{ Variables map[string]any }
		}
		Code struct{ Location string }
	}
	if err := g.motoJSON(ctx, "/2015-03-31/functions/"+url.PathEscape(name), &desc); err != nil {
		return nil, fmt.Errorf("function %s: %w", name, err)
	}
	loc, err := url.Parse(desc.Code.Location)
	if err != nil || loc.Path == "" {
		return nil, fmt.Errorf("function %s: no code location in %q", name, desc.Code.Location)
	}
	zipped, err := g.motoGet(ctx, "/"+g.CodeBucket+loc.Path)
	if err != nil {
		return nil, fmt.Errorf("function %s: code: %w", name, err)
	}
	dir := filepath.Join(g.WorkDir, name)
	bootstrap, err := extractBootstrap(zipped, dir)
	if err != nil {
		return nil, fmt.Errorf("function %s: %w", name, err)
	}
	logFile, err := os.Create(filepath.Join(g.WorkDir, name+".log"))
	if err != nil {
		return nil, err
	}
	env := append([]string{}, g.Env...)
	for k, v := range desc.Configuration.Environment.Variables {
		env = append(env, fmt.Sprintf("%s=%v", k, v))
	}
	env = append(env, "AWS_LAMBDA_FUNCTION_NAME="+name, "AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="+strconv.Itoa(desc.Configuration.MemorySize), "_HANDLER=bootstrap")
	timeout := time.Duration(desc.Configuration.Timeout) * time.Second
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	g.Log.Info("lambda function loaded", "function", name, "timeout", timeout.String())
	return &function{name: name, arn: desc.Configuration.FunctionArn, bootstrap: bootstrap, env: env, timeout: timeout,
		max: max(1, g.MaxWorkers), logFile: logFile, log: g.Log.With("function", name), queue: make(chan *invocation, 1024)}, nil
}

func extractBootstrap(zipped []byte, dir string) (string, error) {
	zr, err := zip.NewReader(bytes.NewReader(zipped), int64(len(zipped)))
	if err != nil {
		return "", fmt.Errorf("code is not a zip: %w", err)
	}
	for _, f := range zr.File {
		if f.Name != "bootstrap" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return "", err
		}
		defer rc.Close()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		path := filepath.Join(dir, "bootstrap")
		out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
		if err != nil {
			return "", err
		}
		if _, err := io.Copy(out, rc); err != nil {
			out.Close()
			return "", err
		}
		return path, out.Close()
	}
	return "", fmt.Errorf("the code zip has no bootstrap (provided.al2023 runtime)")
}

// enqueue queues an invocation and makes sure a worker will take it: warm workers are
// reused; new ones start while queued invocations outnumber the workers free for them.
func (f *function) enqueue(payload []byte) *invocation {
	inv := &invocation{id: fmt.Sprintf("%s-%d", f.name, f.nextID.Add(1)), payload: payload, done: make(chan result, 1)}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		inv.finish(errorResult("ServiceException", "the stand-in is shutting down"))
		return inv
	}
	f.queued++
	f.ensureWorkers()
	f.mu.Unlock()
	f.queue <- inv
	return inv
}

// ensureWorkers starts workers for queued invocations; f.mu is held.
func (f *function) ensureWorkers() {
	for !f.closed && f.queued > f.idle+f.starting && len(f.workers) < f.max {
		if err := f.startWorker(); err != nil {
			f.log.Error("cannot start worker", "error", err.Error())
			return
		}
	}
}

// worker is one bootstrap process with its own Runtime API endpoint, so a timed-out
// invocation can be stopped by killing exactly the process that runs it.
type worker struct {
	f       *function
	cmd     *exec.Cmd
	server  *http.Server
	exited  chan struct{}
	mu      sync.Mutex
	current *invocation
	timer   *time.Timer
	asked   bool // it has called /next at least once
}

func (f *function) startWorker() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	w := &worker{f: f, exited: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", w.next)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", w.respond)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", w.fail)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", w.initError)
	w.server = &http.Server{Handler: mux}
	go func() { _ = w.server.Serve(ln) }()

	w.cmd = exec.Command(f.bootstrap)
	w.cmd.Env = append(append(environ(), f.env...), "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String())
	w.cmd.Stdout, w.cmd.Stderr = f.logFile, f.logFile
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		_ = w.server.Close()
		return err
	}
	f.workers = append(f.workers, w)
	f.starting++
	f.log.Info("worker started", "pid", w.cmd.Process.Pid, "workers", len(f.workers))
	go w.wait()
	return nil
}

// wait reaps the process. An invocation it held fails as Lambda reports a crashed
// runtime; a worker that died before asking for work (its init failed) fails one queued
// invocation the same way, so a broken function cannot hang its callers; and queued work
// gets a replacement worker.
func (w *worker) wait() {
	err := w.cmd.Wait()
	close(w.exited)
	_ = w.server.Close()
	w.mu.Lock()
	inv, asked := w.current, w.asked
	w.current = nil
	w.mu.Unlock()
	if inv != nil {
		inv.finish(errorResult("Runtime.ExitError", fmt.Sprintf("RequestId: %s Error: Runtime exited: %v", inv.id, err)))
	}
	f := w.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.workers {
		if x == w {
			f.workers = append(f.workers[:i], f.workers[i+1:]...)
			break
		}
	}
	if !asked {
		f.starting--
		select {
		case queued := <-f.queue:
			f.queued--
			queued.finish(errorResult("Runtime.ExitError", fmt.Sprintf("RequestId: %s Error: Runtime exited before asking for work: %v", queued.id, err)))
		default:
		}
	}
	f.ensureWorkers()
}

func (w *worker) next(rw http.ResponseWriter, r *http.Request) {
	f := w.f
	f.mu.Lock()
	w.mu.Lock()
	if !w.asked {
		w.asked = true
		f.starting--
	}
	w.mu.Unlock()
	f.idle++
	f.mu.Unlock()
	var inv *invocation
	select {
	case inv = <-f.queue:
	case <-r.Context().Done():
	}
	f.mu.Lock()
	f.idle--
	if inv != nil {
		f.queued--
	} else {
		// This worker is going away while waiting: make sure queued work still has one.
		f.ensureWorkers()
	}
	f.mu.Unlock()
	if inv == nil {
		return
	}
	// The timeout runs from when a worker takes the invocation, as in Lambda.
	deadline := time.Now().Add(f.timeout)
	w.mu.Lock()
	w.current = inv
	w.timer = time.AfterFunc(f.timeout, func() { w.timeout(inv) })
	w.mu.Unlock()
	h := rw.Header()
	h.Set("Lambda-Runtime-Aws-Request-Id", inv.id)
	h.Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(deadline.UnixMilli(), 10))
	h.Set("Lambda-Runtime-Invoked-Function-Arn", f.arn)
	h.Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
	h.Set("Content-Type", "application/json")
	_, _ = rw.Write(inv.payload)
}

func (w *worker) take(id string) *invocation {
	w.mu.Lock()
	defer w.mu.Unlock()
	inv := w.current
	if inv == nil || inv.id != id {
		return nil
	}
	w.current = nil
	w.timer.Stop()
	return inv
}

func (w *worker) respond(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if inv := w.take(r.PathValue("id")); inv != nil {
		inv.finish(result{payload: body})
	}
	rw.WriteHeader(http.StatusAccepted)
}

func (w *worker) fail(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if inv := w.take(r.PathValue("id")); inv != nil {
		inv.finish(result{payload: body, functionError: "Unhandled"})
	}
	rw.WriteHeader(http.StatusAccepted)
}

func (w *worker) initError(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.f.log.Error("function init failed", "error", strings.TrimSpace(string(body)))
	rw.WriteHeader(http.StatusAccepted)
}

// timeout stops the worker running an invocation past its deadline, as Lambda does.
func (w *worker) timeout(inv *invocation) {
	if w.take(inv.id) == nil {
		return
	}
	inv.finish(errorResult("Sandbox.Timedout", fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.id, w.f.timeout.Seconds())))
	_ = w.cmd.Process.Kill()
}

func errorResult(errorType, msg string) result {
	b, _ := json.Marshal(map[string]string{"errorType": errorType, "errorMessage": msg})
	return result{payload: b, functionError: "Unhandled"}
}

func (f *function) close() {
	f.mu.Lock()
	f.closed = true
	workers := append([]*worker(nil), f.workers...)
	f.mu.Unlock()
	for {
		select {
		case inv := <-f.queue:
			inv.finish(errorResult("ServiceException", "the stand-in is shutting down"))
			continue
		default:
		}
		break
	}
	for _, w := range workers {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, w := range workers {
		select {
		case <-w.exited:
		case <-time.After(time.Until(deadline)):
			_ = w.cmd.Process.Kill()
		}
	}
	_ = f.logFile.Close()
}
