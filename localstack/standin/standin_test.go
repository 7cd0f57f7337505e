package standin

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"tandem/localstack/testenv"
)

func start(t *testing.T) *StandIn {
	t.Helper()
	s, err := Start(Options{Addr: "127.0.0.1:0", Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("stand-in: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// awsCLI runs the AWS CLI (python) against the stand-in and decodes its JSON output.
func awsCLI(t *testing.T, s *StandIn, out any, args ...string) {
	t.Helper()
	cmd := exec.Command("aws", append(args, "--output", "json")...)
	cmd.Env = append(os.Environ(), s.EnvVars()...)
	b, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("aws %s: %v: %s", strings.Join(args, " "), err, b)
		}
	}
}

// TestGatewayRunsFunctions deploys a function's zip into the stand-in and invokes it
// through the Lambda API: results, errors typed as Lambda types them (what Step
// Functions' Retry and Catch match on), the function's environment, and timeouts.
func TestGatewayRunsFunctions(t *testing.T) {
	s := start(t)
	bin, err := testenv.Binary("./testdata/probe")
	if err != nil {
		t.Fatal(err)
	}
	code, _ := os.ReadFile(bin)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("bootstrap")
	_, _ = w.Write(code)
	_ = zw.Close()
	zipPath := filepath.Join(t.TempDir(), "probe.zip")
	_ = os.WriteFile(zipPath, buf.Bytes(), 0o644)
	awsCLI(t, s, nil, "s3api", "create-bucket", "--bucket", "tandem-artifacts")
	awsCLI(t, s, nil, "s3api", "put-object", "--bucket", "tandem-artifacts", "--key", "functions/probe.zip", "--body", zipPath)
	awsCLI(t, s, nil, "iam", "create-role", "--role-name", "probe", "--assume-role-policy-document", "{}")
	awsCLI(t, s, nil, "lambda", "create-function", "--function-name", "probe", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", "arn:aws:iam::123456789012:role/probe", "--timeout", "2", "--environment", "Variables={PROBE_SETTING=from-config}",
		"--code", "S3Bucket=tandem-artifacts,S3Key=functions/probe.zip")

	awsCLI(t, s, nil, "lambda", "create-function", "--function-name", "crasher", "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", "arn:aws:iam::123456789012:role/probe", "--timeout", "2", "--environment", "Variables={PROBE_CRASH_AT_INIT=1}",
		"--code", "S3Bucket=tandem-artifacts,S3Key=functions/probe.zip")

	invokeFn := func(fn, payload string) (map[string]any, string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out.json")
		var meta struct{ FunctionError string }
		awsCLI(t, s, &meta, "lambda", "invoke", "--function-name", "arn:aws:lambda:us-east-1:123456789012:function:"+fn,
			"--payload", payload, out)
		var body map[string]any
		b, _ := os.ReadFile(out)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("payload %q: %v", b, err)
		}
		return body, meta.FunctionError
	}
	invoke := func(payload string) (map[string]any, string) { t.Helper(); return invokeFn("probe", payload) }
	if body, fe := invoke(`{"echo": "hi"}`); fe != "" || body["echo"] != "hi" || body["env"] != "from-config" {
		t.Errorf("echo: %v %q", body, fe)
	}
	if body, fe := invoke(`{"fail": true}`); fe != "Unhandled" || body["errorType"] != "ProbeError" || body["errorMessage"] != "asked to fail" {
		t.Errorf("error: %v %q", body, fe)
	}
	if body, fe := invoke(`{"sleep_ms": 5000}`); fe != "Unhandled" || body["errorType"] != "Sandbox.Timedout" {
		t.Errorf("timeout: %v %q", body, fe)
	}
	// The worker that timed out was killed; the next invocation gets a fresh one.
	if body, fe := invoke(`{"echo": "again"}`); fe != "" || body["echo"] != "again" {
		t.Errorf("after timeout: %v %q", body, fe)
	}
	// Concurrent invocations each get a worker; waiting does not count against the timeout.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if body, fe := invoke(`{"sleep_ms": 1500, "echo": "parallel"}`); fe != "" || body["echo"] != "parallel" {
				t.Errorf("parallel: %v %q", body, fe)
			}
		})
	}
	wg.Wait()
	// A function whose runtime dies at init fails its invocations instead of hanging them.
	if body, fe := invokeFn("crasher", `{}`); fe != "Unhandled" || body["errorType"] != "Runtime.ExitError" {
		t.Errorf("crash at init: %v %q", body, fe)
	}
}

// TestStateMachineDefinition has the stand-in's Step Functions (moto's ASL parser) accept
// infra/statemachine.asl.json, and reject a broken definition, so the check can fail.
func TestStateMachineDefinition(t *testing.T) {
	s := start(t)
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	def, err := os.ReadFile(filepath.Join(root, "infra", "statemachine.asl.json"))
	if err != nil {
		t.Fatal(err)
	}
	client := sfn.NewFromConfig(s.AWSConfig())
	create := func(name, definition string) error {
		_, err := client.CreateStateMachine(context.Background(), &sfn.CreateStateMachineInput{
			Name: aws.String(name), Definition: aws.String(definition), RoleArn: aws.String("arn:aws:iam::123456789012:role/sfn")})
		return err
	}
	resolved := string(def)
	for _, fn := range []string{"Plan", "Snapshot", "Finalize", "Status"} {
		resolved = strings.ReplaceAll(resolved, "${"+fn+"FunctionArn}", "arn:aws:lambda:us-east-1:123456789012:function:"+fn)
	}
	if err := create("tandem", resolved); err != nil {
		t.Fatalf("the definition was rejected: %v", err)
	}
	broken := strings.Replace(resolved, `"Type": "Choice"`, `"Type": "Choise"`, 1)
	if err := create("broken", broken); err == nil {
		t.Fatal("a definition with an unknown state type was accepted: the check cannot fail")
	}
}

// TestTemplateLints runs cfn-lint (with the SAM translator) on template.yaml.
func TestTemplateLints(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cfn-lint", filepath.Join(root, "template.yaml")).CombinedOutput()
	if err != nil {
		t.Fatalf("cfn-lint template.yaml: %v\n%s", err, out)
	}
}

// TestStopRemovesTemporaryDir: a stand-in started without a Dir (make demo) keeps its
// logs, function code and scripts in a temporary directory that Stop removes, as does a
// Start that fails, so runs do not pile up tandem-standin-* directories; a Dir the caller
// gave (make up's .standin) keeps its logs.
func TestStopRemovesTemporaryDir(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	leftovers := func() []string {
		t.Helper()
		m, err := filepath.Glob(filepath.Join(tmp, "tandem-standin-*"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	s, err := Start(Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("stand-in: %v", err)
	}
	if got := leftovers(); len(got) != 1 || got[0] != s.Dir {
		s.Stop()
		t.Fatalf("the stand-in's directory is %s, want the one temporary directory of %v", s.Dir, got)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "moto.log")); err != nil {
		s.Stop()
		t.Fatalf("the temporary directory holds no moto.log: %v", err)
	}
	s.Stop()
	if got := leftovers(); len(got) > 0 {
		t.Errorf("Stop left %v", got)
	}

	// A Start that fails (its address taken) removes what it created too.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if s, err := Start(Options{Addr: taken.Addr().String()}); err == nil {
		s.Stop()
		t.Fatalf("Start on a taken address succeeded")
	}
	if got := leftovers(); len(got) > 0 {
		t.Errorf("a failed Start left %v", got)
	}

	given := t.TempDir()
	s, err = Start(Options{Addr: "127.0.0.1:0", Dir: given})
	if err != nil {
		t.Fatalf("stand-in: %v", err)
	}
	s.Stop()
	if _, err := os.Stat(filepath.Join(given, "moto.log")); err != nil {
		t.Errorf("Stop removed the logs of a directory it was given: %v", err)
	}
}
