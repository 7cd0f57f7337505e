package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"tandem/localstack/testenv"
	"tandem/shared/config"
	"tandem/shared/ddb"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/schema"
)

// pipelineEnv is the pipeline in this process, on the fixture's database and moto: what
// the Lambda handlers would do, driven step by step so the binary sees a run mid-way.
func (f *cliFixture) pipelineEnv() *pipeline.Env {
	f.t.Helper()
	cfg := *f.cfg
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		f.t.Fatal(err)
	}
	pool, err := pg.Open(f.ctx, pg.Source{URL: f.url}, 12)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(pool.Close)
	awsCfg, err := env.Moto.AWSConfig(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	return pipeline.FromParts(&cfg, pool, ddb.FromConfig(awsCfg), pipeline.NewLogger())
}

// pausedSnapshot copies a table in this process and stops before writing its chunk
// number `at` (1-based), until resume is called; it returns once the copy is paused.
// wait waits for the copy to end.
func pausedSnapshot(t *testing.T, e *pipeline.Env, source string, at int) (resume func(), wait func()) {
	t.Helper()
	tbl, err := e.Describe(context.Background(), source)
	if err != nil {
		t.Fatal(err)
	}
	c := e.Copier()
	paused, release := make(chan struct{}), make(chan struct{})
	chunks := 0
	c.AfterRead = func(ctx context.Context, _ *schema.Table, _ *pg.Chunk) {
		if chunks++; chunks == at {
			close(paused)
			<-release
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := c.Run(context.Background(), tbl, time.Time{}); err != nil {
			t.Errorf("snapshot of %s: %v", source, err)
		}
	})
	select {
	case <-paused:
	case <-time.After(time.Minute):
		t.Fatalf("the snapshot of %s did not reach chunk %d", source, at)
	}
	var once sync.Once
	resume = func() { once.Do(func() { close(release) }) }
	t.Cleanup(func() { resume(); wg.Wait() })
	return resume, wg.Wait
}

// statusJSON is the part of `tandem status --json` the tests read.
type statusJSON struct {
	Tables []struct {
		Table         string   `json:"table"`
		State         string   `json:"state"`
		RowsCopied    int64    `json:"rows_copied"`
		RowsEstimate  *int64   `json:"rows_estimate"`
		Percent       *float64 `json:"percent"`
		RowsPerSecond *float64 `json:"rows_per_second"`
		SecondsLeft   *float64 `json:"seconds_left"`
		Ranges        *int     `json:"ranges"`
		RangesDone    *int     `json:"ranges_done"`
		Consistent    bool     `json:"consistent"`
		Error         string   `json:"error"`
		DeadLetters   *int     `json:"dead_letters"`
	} `json:"tables"`
	FailedTables []string `json:"failed_tables"`
	Failures     []struct {
		Table string `json:"table"`
		Error string `json:"error"`
	} `json:"failures"`
	Summary  string `json:"summary"`
	Streamer struct {
		State      string `json:"state"`
		Up         bool   `json:"up"`
		Why        string `json:"why"`
		AppliedLSN string `json:"applied_lsn"`
		Slot       string `json:"slot"`
	} `json:"streamer"`
	Execution *struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		State  string `json:"state"`
		Error  string `json:"error"`
		Cause  string `json:"cause"`
	} `json:"execution"`
}

func decodeStatus(t *testing.T, r result) statusJSON {
	t.Helper()
	var s statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, r.stdout)
	}
	return s
}

// tableLine is the status text's line of a table.
func tableLine(t *testing.T, text, source string) string {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, source+" ") {
			return l
		}
	}
	t.Fatalf("no line for %s in:\n%s", source, text)
	return ""
}

var (
	lsnForm  = regexp.MustCompile(`^[0-9A-F]+/[0-9A-F]+$`)
	minusOne = regexp.MustCompile(`(^|[\s:\[(])-1\b`)
)

// TestStatusWhileSnapshotRuns: two snapshots paused mid-way, one of a table with a row
// estimate (ANALYZEd: bar, percent, rows/s and time left) and one of a table PostgreSQL
// has no estimate for (never analysed: "unknown", null in JSON, never -1); then done.
func TestStatusWhileSnapshotRuns(t *testing.T) {
	f := newCLIFixture(t, `
		CREATE TABLE items (id int PRIMARY KEY, name text);
		INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
		ANALYZE items;
		CREATE TABLE notes (id int PRIMARY KEY, body text);
		INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 40) g;`,
		func(c *config.Config) { c.ChunkSize, c.MaxRanges = 10, 1 })
	e := f.pipelineEnv()
	if _, err := e.Plan(f.ctx, pipeline.PlanInput{}); err != nil {
		t.Fatal(err)
	}
	resumeItems, waitItems := pausedSnapshot(t, e, "public.items", 4) // 3 chunks of 10 stored
	resumeNotes, waitNotes := pausedSnapshot(t, e, "public.notes", 3) // 2 chunks of 10 stored
	time.Sleep(1100 * time.Millisecond)                               // a measurable rate

	r := f.tandem("status")
	if r.code != exitOK {
		t.Fatalf("status while snapshots run: exit %d, want %d", r.code, exitOK)
	}
	items := tableLine(t, r.stdout, "public.items")
	for _, want := range []string{"running", "[######--------------]  30%", "30 of ~100", "/s", "0/1", " no "} {
		if !strings.Contains(items, want) {
			t.Errorf("items line %q lacks %q", items, want)
		}
	}
	if strings.Contains(items, "unknown") {
		t.Errorf("items has an estimate and a rate, its time left is known: %q", items)
	}
	notes := tableLine(t, r.stdout, "public.notes")
	for _, want := range []string{"running", "estimate unknown", "20 of unknown", "unknown"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes line %q lacks %q", notes, want)
		}
	}
	if minusOne.MatchString(r.stdout) {
		t.Errorf("an unknown estimate printed as -1:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "Streamer: never started") {
		t.Errorf("no streamer ran, the status should say so:\n%s", r.stdout)
	}

	r = f.tandem("status", "--json")
	if r.code != exitOK {
		t.Fatalf("status --json: exit %d", r.code)
	}
	if minusOne.MatchString(r.stdout) {
		t.Errorf("an unknown estimate printed as -1:\n%s", r.stdout)
	}
	s := decodeStatus(t, r)
	if len(s.Tables) != 2 || s.Tables[0].Table != "public.items" || s.Tables[1].Table != "public.notes" {
		t.Fatalf("tables %+v, want items then notes", s.Tables)
	}
	it, nt := s.Tables[0], s.Tables[1]
	if it.State != "running" || it.RowsCopied != 30 || it.RowsEstimate == nil || *it.RowsEstimate != 100 ||
		it.Percent == nil || *it.Percent != 30 || it.RowsPerSecond == nil || *it.RowsPerSecond <= 0 ||
		it.SecondsLeft == nil || *it.SecondsLeft <= 0 || it.Ranges == nil || *it.Ranges != 1 || *it.RangesDone != 0 || it.Consistent {
		t.Errorf("items in JSON: %+v", it)
	}
	if nt.State != "running" || nt.RowsCopied != 20 || nt.RowsEstimate != nil || nt.Percent != nil || nt.SecondsLeft != nil ||
		nt.RowsPerSecond == nil || *nt.RowsPerSecond <= 0 {
		t.Errorf("notes in JSON: want rows_estimate, percent and seconds_left null: %+v", nt)
	}
	if s.Streamer.Up || s.Streamer.State != pipeline.StreamerNeverStarted || !lsnForm.MatchString(s.Streamer.AppliedLSN) {
		t.Errorf("streamer in JSON: %+v", s.Streamer)
	}
	if len(s.FailedTables) != 0 || len(s.Failures) != 0 || s.Summary != "0 of 2 tables consistent, 2 snapshotting" {
		t.Errorf("nothing failed: failed %v, failures %v, summary %q", s.FailedTables, s.Failures, s.Summary)
	}

	resumeItems()
	resumeNotes()
	waitItems()
	waitNotes()
	r = f.tandem("status")
	for _, source := range []string{"public.items", "public.notes"} {
		line := tableLine(t, r.stdout, source)
		if !strings.Contains(line, "done") || !strings.Contains(line, "[####################] 100%") || !strings.Contains(line, "1/1") {
			t.Errorf("%s after its snapshot: %q", source, line)
		}
	}
}

// TestStatusAfterFailure: a table whose snapshot failed (its primary key dropped after
// the plan; the failure recorded as the state machine's Catch records it) is shown with
// its reason in text and JSON, and the exit code says a table failed.
func TestStatusAfterFailure(t *testing.T) {
	f := newCLIFixture(t, `
		CREATE TABLE good (id int PRIMARY KEY);
		INSERT INTO good SELECT generate_series(1, 5);
		CREATE TABLE broken (id int CONSTRAINT broken_pk PRIMARY KEY);`, nil)
	e := f.pipelineEnv()
	if _, err := e.Plan(f.ctx, pipeline.PlanInput{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Snapshot(f.ctx, pipeline.TableInput{Table: "public.good"}); err != nil {
		t.Fatal(err)
	}
	f.exec("ALTER TABLE broken DROP CONSTRAINT broken_pk")
	_, snapErr := e.Snapshot(f.ctx, pipeline.TableInput{Table: "public.broken"})
	if snapErr == nil {
		t.Fatal("the snapshot of a table without its primary key succeeded")
	}
	// What Lambda and the Catch hand the Failed state: the error's type and a JSON cause.
	cause, _ := json.Marshal(map[string]string{"errorMessage": snapErr.Error(), "errorType": "PermanentError"})
	if _, err := e.FinalizeStep(f.ctx, pipeline.FinalizeInput{Table: "public.broken",
		Error: &pipeline.StateError{Error: "PermanentError", Cause: string(cause)}}); err != nil {
		t.Fatal(err)
	}
	reason := "PermanentError: " + snapErr.Error()

	r := f.tandem("status")
	if r.code != exitProblem {
		t.Errorf("status with a failed table: exit %d, want %d", r.code, exitProblem)
	}
	if line := tableLine(t, r.stdout, "public.broken"); !strings.Contains(line, "failed") {
		t.Errorf("broken line: %q", line)
	}
	if !strings.Contains(r.stdout, "public.broken failed: "+reason) {
		t.Errorf("the failure's reason %q is not shown:\n%s", reason, r.stdout)
	}
	if line := tableLine(t, r.stdout, "public.good"); !strings.Contains(line, "done") {
		t.Errorf("good line: %q", line)
	}

	r = f.tandem("status", "--json")
	if r.code != exitProblem {
		t.Errorf("status --json with a failed table: exit %d, want %d", r.code, exitProblem)
	}
	s := decodeStatus(t, r)
	if len(s.Failures) != 1 || s.Failures[0].Table != "public.broken" || s.Failures[0].Error != reason {
		t.Errorf("failures %+v, want public.broken with %q", s.Failures, reason)
	}
	if len(s.FailedTables) != 1 || s.FailedTables[0] != "public.broken" || !strings.Contains(s.Summary, "1 table failed: public.broken: "+reason) {
		t.Errorf("failed_tables %v, summary %q", s.FailedTables, s.Summary)
	}
	for _, tb := range s.Tables {
		if tb.Table == "public.broken" && (tb.State != "failed" || tb.Error != reason || tb.Percent != nil || tb.SecondsLeft != nil) {
			t.Errorf("broken in JSON: %+v", tb)
		}
	}

	// The status Lambda as the state machine's Report state calls it, with the Map's
	// results: the Failed state's (reason recorded), and Failure not recorded's (the
	// caught error is all there is).
	var in pipeline.StatusInput
	if err := json.Unmarshal([]byte(`{"results": [
		{"table": "public.good", "range": 0, "state": "done", "rows_copied": 5},
		{"table": "public.broken", "state": "failed", "error": "PermanentError"},
		{"table": "public.lost", "state": "failed", "error": "States.Timeout",
		 "failure": {"Error": "States.Timeout", "Cause": "{\"errorMessage\": \"Task timed out after 900.00 seconds\"}"}}]}`), &in); err != nil {
		t.Fatal(err)
	}
	report, err := e.Status(f.ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []pipeline.Failure{{Table: "public.broken", Error: reason}, {Table: "public.lost", Error: "States.Timeout: Task timed out after 900.00 seconds"}}
	if fmt.Sprint(report.Failures) != fmt.Sprint(want) || fmt.Sprint(report.FailedTables) != "[public.broken public.lost]" ||
		report.Summary != "2 tables failed: public.broken: "+reason+"; public.lost: States.Timeout: Task timed out after 900.00 seconds" {
		t.Errorf("report: failures %+v, failed %v, summary %q", report.Failures, report.FailedTables, report.Summary)
	}
}

// TestStatusNothingUp: no control table, an endpoint nothing listens on, a missing
// configuration file: one clear line, exit 3, nothing on stdout, no stack trace.
func TestStatusNothingUp(t *testing.T) {
	f := newCLIFixture(t, "", nil)
	check := func(name string, r result, want string) {
		t.Helper()
		if r.code != exitCantRun {
			t.Errorf("%s: exit %d, want %d", name, r.code, exitCantRun)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "tandem status: ") || !strings.Contains(lines[0], want) {
			t.Errorf("%s: stderr %q, want one line with %q", name, r.stderr, want)
		}
		if r.stdout != "" || strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, "panic") {
			t.Errorf("%s: stdout %q, stderr %q", name, r.stdout, r.stderr)
		}
	}
	check("no control table", f.tandem("status"),
		fmt.Sprintf("control table %s does not exist (DynamoDB at %s): nothing has been planned into it", f.cfg.ControlTable, env.Moto.Endpoint))
	check("no control table, --json", f.tandem("status", "--json"), "does not exist")
	down := append(env.Moto.EnvVars(), "AWS_ENDPOINT_URL=http://127.0.0.1:9")
	check("nothing listening", runBinary(t, down, "status", "--config", f.configFile),
		"DynamoDB at http://127.0.0.1:9 does not answer (connect: connection refused): is Tandem up?")
	check("no configuration file", runBinary(t, env.Moto.EnvVars(), "status", "--config", f.configFile+".missing"), "no such file")
}

// TestStatusFailedPlan: the state machine's latest execution failed at Plan (a
// misspelled table: nothing is recorded, not even the control table); the status shows
// the state and the plan's message, and exits 1, not "nothing is up".
func TestStatusFailedPlan(t *testing.T) {
	const message = "table public.nope does not exist: check the configured tables"
	awsCfg, err := env.Moto.AWSConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	client := sfn.NewFromConfig(awsCfg)
	// The deployed definition's first state, failing as the plan Lambda does: a
	// PermanentError with Lambda's JSON cause.
	cause, _ := json.Marshal(map[string]any{"errorMessage": message, "errorType": "PermanentError", "stackTrace": []string{}})
	def, _ := json.Marshal(map[string]any{"StartAt": "Plan", "States": map[string]any{
		"Plan": map[string]any{"Type": "Fail", "Error": "PermanentError", "Cause": string(cause)}}})
	sm, err := client.CreateStateMachine(context.Background(), &sfn.CreateStateMachineInput{Name: aws.String(fmt.Sprintf("plan-fails-%d", time.Now().UnixNano())),
		Definition: aws.String(string(def)), RoleArn: aws.String("arn:aws:iam::123456789012:role/sfn")})
	if err != nil {
		t.Fatal(err)
	}
	f := newCLIFixture(t, "", func(c *config.Config) { c.StateMachineARN = aws.ToString(sm.StateMachineArn) })

	if r := f.tandem("status"); r.code != exitCantRun || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("before any execution (nothing is up): exit %d, stderr %q", r.code, r.stderr)
	}
	for i, name := range []string{"older", "snapshot-1"} {
		x, err := client.StartExecution(context.Background(), &sfn.StartExecutionInput{StateMachineArn: sm.StateMachineArn, Name: aws.String(name), Input: aws.String("{}")})
		if err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			d, err := client.DescribeExecution(context.Background(), &sfn.DescribeExecutionInput{ExecutionArn: x.ExecutionArn})
			if err != nil {
				t.Fatal(err)
			}
			if d.Status != sfntypes.ExecutionStatusRunning {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the execution did not end")
			}
		}
		if i == 0 {
			time.Sleep(1100 * time.Millisecond) // start dates one second apart
		}
	}

	r := f.tandem("status")
	if r.code != exitProblem {
		t.Errorf("status after a failed plan: exit %d, want %d", r.code, exitProblem)
	}
	for _, want := range []string{"control table " + f.cfg.ControlTable + " does not exist",
		"latest execution snapshot-1 FAILED in Plan", "PermanentError: " + message} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status text lacks %q:\n%s", want, r.stdout)
		}
	}
	r = f.tandem("status", "--json")
	s := decodeStatus(t, r)
	if r.code != exitProblem || s.Execution == nil || s.Execution.Name != "snapshot-1" || s.Execution.Status != "FAILED" ||
		s.Execution.State != "Plan" || s.Execution.Error != "PermanentError" || s.Execution.Cause != message {
		t.Errorf("status --json after a failed plan: exit %d, execution %+v", r.code, s.Execution)
	}
}

// TestSnapshotProgressByHand: the snapshot handler run by hand (outside Lambda, as the
// pieces one by one run it) prints its progress to stderr as it goes, while stdout
// holds only its JSON result.
func TestSnapshotProgressByHand(t *testing.T) {
	f := newCLIFixture(t, `
		CREATE TABLE items (id int PRIMARY KEY, name text);
		INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g;
		ANALYZE items;`,
		func(c *config.Config) { c.ChunkSize, c.MaxRanges = 20, 1 })
	if _, err := f.pipelineEnv().Plan(f.ctx, pipeline.PlanInput{}); err != nil {
		t.Fatal(err)
	}
	handler, err := testenv.Binary("tandem/functions/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(f.ctx, handler, `{"table": "public.items"}`)
	cmd.Env = append(append(os.Environ(), env.Moto.EnvVars()...), "TANDEM_CONFIG_FILE="+f.configFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("snapshot handler: %v\n%s", err, stderr.String())
	}
	var res struct {
		Done       bool  `json:"done"`
		RowsCopied int64 `json:"rows_copied"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil || !res.Done || res.RowsCopied != 200 {
		t.Errorf("stdout is not the handler's result alone (%v): %q", err, stdout.String())
	}
	var progress []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.HasPrefix(l, "snapshot public.items: ") {
			progress = append(progress, l)
		}
	}
	t.Logf("progress lines:\n%s", strings.Join(progress, "\n"))
	if len(progress) < 2 || !strings.HasPrefix(progress[0], "snapshot public.items: 20 of ~200 rows (10%), ") ||
		!strings.Contains(progress[0], " rows/s") || !strings.Contains(progress[0], "; range 1/1: 20 rows") {
		t.Fatalf("progress lines %q: want the first chunk's, then more", progress)
	}
	if last := progress[len(progress)-1]; !strings.HasPrefix(last, "snapshot public.items: 200 of ~200 rows (100%), ") ||
		!strings.HasSuffix(last, "range 1/1: 200 rows, done") {
		t.Errorf("last progress line %q: want the range done, 100%%", last)
	}
}

// TestStatusWatch: --watch redraws in place (cursor home, lines cleared) every interval
// until interrupted, and ends with the last read's exit code.
func TestStatusWatch(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 5);`, nil)
	e := f.pipelineEnv()
	if _, err := e.Plan(f.ctx, pipeline.PlanInput{}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "status", "--config", f.configFile, "--watch", "--interval", "200ms")
	cmd.Env = append(os.Environ(), env.Moto.EnvVars()...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	frames := strings.Count(stdout.String(), "\x1b[H")
	if err != nil || frames < 3 || strings.Count(stdout.String(), "Tandem status at") != frames ||
		!strings.Contains(stdout.String(), "public.items  pending") || !strings.Contains(stdout.String(), "\x1b[K\n") {
		t.Errorf("watch: %v, %d frames, stdout %q, stderr %q", err, frames, stdout.String(), stderr.String())
	}
}

// TestStatusStreamerUpAndDown: with the streamer running, the status says it is up, who
// owns it, and the tables become consistent; once it stopped, down and why.
func TestStatusStreamerUpAndDown(t *testing.T) {
	f := newCLIFixture(t, `CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 30);`, nil)
	e := f.pipelineEnv()
	if _, err := e.Plan(f.ctx, pipeline.PlanInput{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Snapshot(f.ctx, pipeline.TableInput{Table: "public.items"}); err != nil {
		t.Fatal(err)
	}
	bin, err := testenv.Binary("tandem/streamer")
	if err != nil {
		t.Fatal(err)
	}
	streamer := exec.Command(bin)
	streamer.Env = append(append(os.Environ(), env.Moto.EnvVars()...), "TANDEM_CONFIG_FILE="+f.configFile,
		"TANDEM_STATUS_INTERVAL=200ms", "TANDEM_LEASE_TTL=3s")
	var logs bytes.Buffer
	streamer.Stdout, streamer.Stderr = &logs, &logs
	if err := streamer.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = streamer.Process.Signal(os.Interrupt)
			_ = streamer.Wait()
		}
	}
	t.Cleanup(stop)
	f.exec("INSERT INTO items VALUES (31)")

	var s statusJSON
	var r result
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(300 * time.Millisecond) {
		r = f.tandem("status", "--json")
		s = decodeStatus(t, r)
		if s.Streamer.Up && len(s.Tables) == 1 && s.Tables[0].Consistent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the streamer did not come up with the table consistent: %+v\n%s", s, logs.String())
		}
	}
	if r.code != exitOK || s.Streamer.State != pipeline.StreamerUp || !lsnForm.MatchString(s.Streamer.AppliedLSN) || s.Streamer.AppliedLSN == "0/0" {
		t.Errorf("streamer up: exit %d, %+v", r.code, s.Streamer)
	}
	r = f.tandem("status")
	if !strings.Contains(r.stdout, "Streamer: up (owner ") || !strings.Contains(r.stdout, "slot "+f.cfg.Slot+" active") ||
		!strings.Contains(tableLine(t, r.stdout, "public.items"), " yes ") {
		t.Errorf("status text with the streamer up:\n%s", r.stdout)
	}

	stop()
	r = f.tandem("status")
	want := "Streamer: down (slot " + f.cfg.Slot + " is not being consumed; owner "
	if r.code != exitOK || !strings.Contains(r.stdout, want) {
		t.Errorf("status after the streamer stopped: exit %d, want %q (a stopped streamer is no failure):\n%s", r.code, want, r.stdout)
	}
}
