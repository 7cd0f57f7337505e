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

	"tandem/localstack/motoserver"
)

// Moto is a moto server (DynamoDB API among others) on 127.0.0.1. It dies
// with the test binary even if Stop is never called.
type Moto struct {
	Endpoint string // http://127.0.0.1:PORT
	Dir      string // holds moto.log

	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has exited
	mu      sync.Mutex
	stopped bool
}

const (
	motoRegion = "us-east-1"
	motoKey    = "test" // moto accepts any credentials; the SDK wants some
)

// StartMoto starts a moto server on a free port and waits until it answers.
func StartMoto() (*Moto, error) {
	dir, err := newDir("moto")
	if err != nil {
		return nil, err
	}
	// The stand-in's moto_server.py: moto with the patches Tandem needs, so tests and the
	// local pipeline run against the same endpoint. Its second argument is the stand-in's
	// Lambda gateway, which plain DynamoDB tests do not use.
	script := filepath.Join(dir, "moto_server.py")
	if err := os.WriteFile(script, motoserver.Script, 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var errs []error
	for attempt := 1; attempt <= 3; attempt++ {
		m, err := startMoto(dir, func(port int) []string { return []string{"python3", script, strconv.Itoa(port), "0"} })
		if err == nil {
			return m, nil
		}
		errs = append(errs, err)
		if !addrInUse(err) {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, errors.Join(errs...)
}

func startMoto(dir string, argv func(port int) []string) (*Moto, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "moto.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child has its own copy of the descriptor
	args := argv(port)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // so Stop can kill whatever moto spawns, too
		Pdeathsig: syscall.SIGKILL, // so moto never outlives the test binary
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("moto: %w", err)
	}
	m := &Moto{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(m.exited)
	}()
	if err := m.waitReady(); err != nil {
		m.kill()
		return nil, fmt.Errorf("moto (%s): %w%s", strings.Join(cmd.Args, " "), err, tail(logPath))
	}
	return m, nil
}

// waitReady polls moto's own API until it answers, failing early if moto exits.
func (m *Moto) waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(m.Endpoint + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /moto-api/: %s", resp.Status)
		}
		select {
		case <-m.exited:
			return fmt.Errorf("exited: %v", m.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 60s: %w", err)
		}
	}
}

// kill kills moto's process group and waits until moto is gone.
func (m *Moto) kill() {
	syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL) // ESRCH if it is gone already
	<-m.exited
}

// Stop kills moto and removes Dir. Calling it again does nothing.
func (m *Moto) Stop() error {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return nil
	}
	m.stopped = true
	m.kill()
	return os.RemoveAll(m.Dir)
}

// Reset drops all state (tables, items) so the next test starts clean.
func (m *Moto) Reset() error {
	resp, err := http.Post(m.Endpoint+"/moto-api/reset", "application/json", nil)
	if err != nil {
		return fmt.Errorf("moto reset: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("moto reset: %s", resp.Status)
	}
	return nil
}

// AWSConfig returns a config that talks to this moto server and nothing
// else. It is built by hand, not with config.LoadDefaultConfig, because that
// reads the caller's AWS_* variables and ~/.aws even when told region,
// credentials and endpoint: AWS_PROFILE naming a profile unknown here makes
// it fail, and AWS_ENDPOINT_URL_DYNAMODB would beat our endpoint. Service
// clients fill in the rest (HTTP client, retryer) with their defaults.
func (m *Moto) AWSConfig(ctx context.Context) (aws.Config, error) {
	return awsConfig(m.Endpoint), nil
}

// EnvVars is what a subprocess (streamer, handler) needs to talk to this
// moto server through the SDK's default config; append it to os.Environ(),
// later entries win.
func (m *Moto) EnvVars() []string { return envVars(m.Endpoint) }
