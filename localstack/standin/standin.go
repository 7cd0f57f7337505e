package standin

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"tandem/localstack/motoserver"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
)

var (
	//go:embed deploy.py
	deployPy []byte
)

// Region and credentials of the stand-in (moto accepts any).
const (
	Region = "us-east-1"
	key    = "test"
)

// Options configures Start.
type Options struct {
	// Addr is where the AWS endpoint listens; default 127.0.0.1:4566 (LocalStack's).
	Addr string
	// Dir holds logs, function code and the helper scripts. When empty, Start creates a
	// temporary directory and Stop removes it.
	Dir string
	// MaxWorkers per Lambda function; default 8.
	MaxWorkers int
	Log        *slog.Logger
	// Env is added to every Lambda function's environment, as what a real deployment
	// builds into the functions (make up: TANDEM_CONFIG_FILE, a config file on this machine).
	Env []string
}

// StandIn is a running local AWS endpoint.
type StandIn struct {
	Endpoint   string
	Dir        string
	moto       *exec.Cmd
	motoExited chan struct{}
	gateway    *Gateway
	server     *http.Server
	// tempDir: Start created Dir, so Stop removes it (make demo would otherwise leave a
	// tandem-standin-* directory of logs and binaries behind on every run).
	tempDir bool
}

// Start starts moto and the gateway and waits until both answer.
func Start(o Options) (*StandIn, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:4566"
	}
	if o.MaxWorkers == 0 {
		o.MaxWorkers = 8
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	tempDir := false
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "tandem-standin-")
		if err != nil {
			return nil, err
		}
		o.Dir, tempDir = dir, true
	}
	s, err := startIn(o, tempDir)
	if err != nil && tempDir {
		_ = os.RemoveAll(o.Dir)
	}
	return s, err
}

func startIn(o Options, tempDir bool) (*StandIn, error) {
	for name, body := range map[string][]byte{"moto_server.py": motoserver.Script, "deploy.py": deployPy} {
		if err := os.WriteFile(filepath.Join(o.Dir, name), body, 0o644); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("stand-in: cannot listen on %s (another stand-in or LocalStack running?): %w", o.Addr, err)
	}
	s := &StandIn{Endpoint: "http://" + ln.Addr().String(), Dir: o.Dir}
	motoPort, err := freePort()
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := s.startMoto(motoPort, ln.Addr().(*net.TCPAddr).Port); err != nil {
		ln.Close()
		return nil, err
	}
	motoURL, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(motoPort))
	s.gateway = &Gateway{Moto: motoURL, CodeBucket: "tandem-artifacts", WorkDir: filepath.Join(o.Dir, "lambda"),
		Env: append(s.EnvVars(), o.Env...), MaxWorkers: o.MaxWorkers, Log: o.Log}
	if err := os.MkdirAll(s.gateway.WorkDir, 0o755); err != nil {
		ln.Close()
		s.Stop()
		return nil, err
	}
	s.server = &http.Server{Handler: s.gateway}
	go func() { _ = s.server.Serve(ln) }()
	s.tempDir = tempDir
	return s, nil
}

func (s *StandIn) startMoto(port, gatewayPort int) error {
	logFile, err := os.Create(filepath.Join(s.Dir, "moto.log"))
	if err != nil {
		return err
	}
	s.moto = exec.Command("python3", filepath.Join(s.Dir, "moto_server.py"), strconv.Itoa(port), strconv.Itoa(gatewayPort))
	s.moto.Stdout, s.moto.Stderr = logFile, logFile
	s.moto.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.moto.Start(); err != nil {
		return fmt.Errorf("stand-in: starting moto: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = s.moto.Wait(); close(exited) }()
	s.motoExited = exited
	deadline := time.After(60 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/moto-api/", port))
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
		case <-deadline:
		case <-time.After(100 * time.Millisecond):
			continue
		}
		_ = syscall.Kill(-s.moto.Process.Pid, syscall.SIGKILL)
		log, _ := os.ReadFile(logFile.Name())
		return fmt.Errorf("stand-in: moto did not start: %v\n%s", err, tail(log))
	}
}

// EnvVars is the environment that points AWS SDKs and CLIs at the stand-in.
func (s *StandIn) EnvVars() []string {
	return []string{"AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_REGION=" + Region, "AWS_DEFAULT_REGION=" + Region,
		"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + key}
}

// Stop stops the gateway, the Lambda workers and moto, and removes Dir if Start created
// it (a Dir given to Start is the caller's, left with its logs).
func (s *StandIn) Stop() {
	if s.server != nil {
		_ = s.server.Close()
	}
	if s.gateway != nil {
		s.gateway.Close()
	}
	if s.moto != nil && s.moto.Process != nil {
		_ = syscall.Kill(-s.moto.Process.Pid, syscall.SIGKILL)
		<-s.motoExited
	}
	if s.tempDir {
		_ = os.RemoveAll(s.Dir)
	}
}

// Stack is what a deploy produced.
type Stack struct {
	Outputs             map[string]string
	Resources           map[string]string
	StreamerEnvironment map[string]string
}

// DeployOptions says what to deploy.
type DeployOptions struct {
	Stack       string
	Template    string // path of template.yaml
	PostgresURL string // stored in the database secret
	Params      map[string]string
}

// functionDirs maps the template's function logical IDs to their packages.
var functionDirs = map[string]string{
	"PlanFunction": "plan", "SnapshotFunction": "snapshot", "FinalizeFunction": "finalize", "StatusFunction": "status",
}

// Deploy builds the function bootstraps for this machine and deploys the template through
// the stand-in's CloudFormation.
func (s *StandIn) Deploy(ctx context.Context, o DeployOptions) (*Stack, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	code := filepath.Join(s.Dir, "code")
	for id, pkg := range functionDirs {
		if err := goBuild(ctx, root, filepath.Join(code, id, "bootstrap"), "./functions/"+pkg); err != nil {
			return nil, err
		}
	}
	args := []string{filepath.Join(s.Dir, "deploy.py"), "--endpoint", s.Endpoint, "--stack", o.Stack,
		"--template", o.Template, "--code-dir", code, "--pg-url", o.PostgresURL}
	params := map[string]string{"DatabaseSSLMode": "url"} // local servers: the URL says
	for k, v := range o.Params {
		params[k] = v
	}
	for k, v := range params {
		args = append(args, "--param", k+"="+v)
	}
	cmd := exec.CommandContext(ctx, "python3", args...)
	cmd.Env = append(environ(), s.EnvVars()...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("deploying %s: %v\n%s", o.Template, err, tail(stderr.Bytes()))
	}
	var st Stack
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return nil, fmt.Errorf("deploy output: %w: %s", err, tail(stdout.Bytes()))
	}
	return &st, nil
}

// Process is a running local process standing in for a task.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
	// Log is where its output goes.
	Log string
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Stop stops it as ECS stops a task: SIGTERM, then SIGKILL after 30 seconds.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// StartStreamer runs the streamer as a local process with its ECS task definition's
// environment, as Fargate would; its output goes to streamer.log in the stand-in's dir.
func (s *StandIn) StartStreamer(ctx context.Context, st *Stack, extraEnv ...string) (*Process, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(s.Dir, "streamer")
	if err := goBuild(ctx, root, bin, "./streamer"); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(environ(), s.EnvVars()...)
	for k, v := range st.StreamerEnvironment {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	logFile, err := os.OpenFile(filepath.Join(s.Dir, "streamer.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{}), Log: logFile.Name()}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// ModuleRoot is the directory of this Go module (the repository).
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", errors.New("stand-in: run it from the Tandem repository (go env GOMOD is empty)")
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

func goBuild(ctx context.Context, root, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// environ is this process's environment without TANDEM_* and AWS_* settings: what runs
// in the stand-in gets its configuration from the stack, never from the operator's shell
// (an exported TANDEM_PG_URL would otherwise point it at another database).
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TANDEM_") && !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// AWSConfig is an SDK configuration for the stand-in.
func (s *StandIn) AWSConfig() aws.Config {
	return aws.Config{Region: Region, Credentials: credentials.NewStaticCredentialsProvider(key, key, ""), BaseEndpoint: aws.String(s.Endpoint)}
}

// StartExecution starts a run of the deployed state machine.
func (s *StandIn) StartExecution(ctx context.Context, st *Stack, name, input string) (string, error) {
	out, err := sfn.NewFromConfig(s.AWSConfig()).StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(st.Outputs["StateMachineArn"]), Name: aws.String(name), Input: aws.String(input)})
	if err != nil {
		return "", fmt.Errorf("starting the state machine: %w", err)
	}
	return aws.ToString(out.ExecutionArn), nil
}
