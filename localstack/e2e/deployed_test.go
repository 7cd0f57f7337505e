package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"tandem/localstack/standin"
	"tandem/localstack/verify"
	"tandem/shared/control"
	"tandem/shared/ddb"
	"tandem/shared/pipeline"
)

// deployment is the real template.yaml deployed into a stand-in, against the fixture's
// database, with the streamer running as a process from its ECS task definition.
type deployment struct {
	f     *fixture
	aws   *standin.StandIn
	stack *standin.Stack
	sfn   *sfn.Client
	// env reads the deployed control and target tables.
	env  *pipeline.Env
	runs int
}

func (f *fixture) deploy(t *testing.T) *deployment {
	t.Helper()
	dir := t.TempDir()
	if d := os.Getenv("TANDEM_STANDIN_DIR"); d != "" { // kept after the test, to read moto.log

		dir = d
	}
	s, err := standin.Start(standin.Options{Addr: "127.0.0.1:0", Dir: dir})
	if err != nil {
		t.Fatalf("stand-in: %v", err)
	}
	t.Cleanup(s.Stop)
	root, err := standin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	prefix := f.name + "-"
	st, err := s.Deploy(f.ctx, standin.DeployOptions{Stack: f.name, Template: filepath.Join(root, "template.yaml"), PostgresURL: f.url,
		Params: map[string]string{"Slot": f.cfg.Slot, "TablePrefix": prefix, "ChunkSize": "40", "MaxConcurrency": "4",
			"RangeRows": "25", "MaxRanges": "6", "SweepSegmentItems": "40"}})
	if err != nil {
		t.Fatal(err)
	}
	awsCfg := s.AWSConfig()
	cfg := *f.cfg
	cfg.ControlTable, cfg.TablePrefix = st.Outputs["ControlTableName"], prefix
	d := &deployment{f: f, aws: s, stack: st, sfn: sfn.NewFromConfig(awsCfg),
		env: pipeline.FromParts(&cfg, f.env.PG, ddb.FromConfig(awsCfg), testLogger())}
	streamer, err := s.StartStreamer(f.ctx, st, "TANDEM_LEASE_TTL=3s", "TANDEM_STATUS_INTERVAL=200ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(streamer.Stop)
	return d
}

// run starts an execution of the deployed state machine and waits for its end.
func (d *deployment) run(t *testing.T) (*sfn.DescribeExecutionOutput, []sfntypes.HistoryEvent) {
	t.Helper()
	return d.runInput(t, "{}")
}

// runInput is run with the execution's input (plan's).
func (d *deployment) runInput(t *testing.T, input string) (*sfn.DescribeExecutionOutput, []sfntypes.HistoryEvent) {
	t.Helper()
	ctx := d.f.ctx
	d.runs++
	arn, err := d.aws.StartExecution(ctx, d.stack, fmt.Sprintf("run-%d", d.runs), input)
	if err != nil {
		t.Fatal(err)
	}
	ex := &sfn.StartExecutionOutput{ExecutionArn: aws.String(arn)}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		out, err := d.sfn.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: ex.ExecutionArn})
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != sfntypes.ExecutionStatusRunning {
			var events []sfntypes.HistoryEvent
			p := sfn.NewGetExecutionHistoryPaginator(d.sfn, &sfn.GetExecutionHistoryInput{ExecutionArn: ex.ExecutionArn})
			for p.HasMorePages() {
				page, err := p.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				events = append(events, page.Events...)
			}
			return out, events
		}
		if time.Now().After(deadline) {
			t.Fatalf("execution still running after 5 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (d *deployment) waitCaughtUp(t *testing.T) {
	t.Helper()
	lsn := d.f.currentLSN()
	eventually(t, "deployed streamer applied past "+lsn.String(), func() bool {
		cp, err := d.env.Control.Checkpoint(d.f.ctx)
		return err == nil && cp.AppliedLSN >= uint64(lsn)
	})
}

func (d *deployment) assertConverged(t *testing.T, sources ...string) {
	t.Helper()
	for _, source := range sources {
		tbl, err := d.env.Describe(d.f.ctx, source)
		if err != nil {
			t.Fatal(err)
		}
		res, err := verify.Compare(d.f.ctx, d.f.env.PG, d.env.DB, tbl)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Equal() {
			t.Errorf("%s", res)
		}
	}
}

// countIn counts the Map iteration events of the Map state named name.
func count(events []sfntypes.HistoryEvent, typ sfntypes.HistoryEventType) int {
	n := 0
	for _, e := range events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TestDeployedStateMachine runs the snapshot through the deployed state machine (Plan
// splitting tables into key ranges, a Distributed Map with one child execution per range,
// snapshot loops, one Finalize per table in parallel-scan segments) while the streamer
// process applies a live workload, and requires DynamoDB to equal PostgreSQL afterwards.
func TestDeployedStateMachine(t *testing.T) {
	f := newFixture(t, mixedSchema, nil)
	if err := newWorkload(3, f.src, 100).seedRows(f.ctx, 100); err != nil {
		t.Fatal(err)
	}
	d := f.deploy(t)
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	work := make(chan map[string]int, 1)
	go func() { work <- runWorkloads(ctx, t, 3, f.src, 100, 2, 120) }()

	out, events := d.run(t)
	if out.Status != sfntypes.ExecutionStatusSucceeded {
		t.Fatalf("execution %s: %s %s", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause))
	}
	if n := count(events, sfntypes.HistoryEventTypeMapRunStarted); n != 1 {
		t.Errorf("%d Distributed Map runs, want 1", n)
	}
	ops := <-work
	d.waitCaughtUp(t)
	d.assertConverged(t, mixedTables...)
	split, segmented := 0, 0
	for _, source := range mixedTables {
		st, _, err := d.env.Control.Table(f.ctx, source)
		if err != nil || st.State != control.Done || st.FinalizedEpoch != st.Epoch {
			t.Errorf("%s: state %+v %v", source, st, err)
		}
		if len(st.Ranges) > 1 {
			split++
		}
		// Finalize ran in segments: the child executions' inner Map is not in this history.
		job, _, err := d.env.Control.Sweep(f.ctx, source)
		if err != nil || !job.Finished {
			t.Errorf("%s: finalize sweep %+v %v: want it finished", source, job, err)
		}
		if job.Segments > 1 {
			segmented++
		}
	}
	if segmented < 3 {
		t.Errorf("only %d tables were finalized in several segments (40 items a segment)", segmented)
	}
	if split < 3 {
		t.Errorf("only %d tables were split into ranges (RangeRows 25): the run did not copy ranges in parallel", split)
	}
	t.Logf("deployed run converged: %d tables, workload %v", len(mixedTables), ops)
	// A second run of the same state machine (moto's #10077) re-plans and finishes.
	if out, _ := d.run(t); out.Status != sfntypes.ExecutionStatusSucceeded {
		t.Errorf("second execution %s: %s %s", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause))
	}
}

// TestDeployedTableFailure: a table with a row DynamoDB cannot store is copied with that
// row dead-lettered; the run ends TablesDegraded (in the console, with the reason in the
// control table) while the other tables complete and converge.
func TestDeployedTableFailure(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE good (id int PRIMARY KEY, v text);
		INSERT INTO good SELECT g, 'v' || g FROM generate_series(1, 80) g;
		CREATE TABLE bad (code text PRIMARY KEY, v text);
		INSERT INTO bad VALUES ('a', 'fine'), ('', 'an empty string cannot be a DynamoDB key');`, nil)
	d := f.deploy(t)
	out, events := d.run(t)
	if out.Status != sfntypes.ExecutionStatusFailed || aws.ToString(out.Error) != "TablesDegraded" {
		t.Fatalf("execution %s %s (%s), want FAILED with TablesDegraded", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause))
	}
	if cause := aws.ToString(out.Cause); !strings.Contains(cause, "public.bad: dead letter at LSN ") || !strings.Contains(cause, "empty") {
		t.Errorf("the execution's cause %q does not name public.bad and its reason", cause)
	}
	st, _, err := d.env.Control.Table(f.ctx, "public.bad")
	if err != nil || st.State != control.Done || !strings.Contains(st.Degraded, "empty") || st.Consistent {
		t.Errorf("control table for public.bad: want done, degraded by the empty key, not consistent: %+v %v", st, err)
	}
	reported := false
	for _, e := range events {
		if d := e.StateExitedEventDetails; d != nil && aws.ToString(d.Name) == "Report" {
			var report struct {
				Report struct {
					DegradedTables []string `json:"degraded_tables"`
				} `json:"report"`
			}
			reported = json.Unmarshal([]byte(aws.ToString(d.Output)), &report) == nil &&
				slices.Equal(report.Report.DegradedTables, []string{"public.bad"})
		}
	}
	if !reported {
		t.Error("the execution history does not show the report naming public.bad as degraded")
	}
	good, _, err := d.env.Control.Table(f.ctx, "public.good")
	if err != nil || good.State != control.Done || good.Degraded != "" {
		t.Errorf("public.good should complete: %+v %v", good, err)
	}

	f.exec("UPDATE good SET v = 'after' WHERE id < 5")
	d.waitCaughtUp(t)
	d.assertConverged(t, "public.good")
}

// scan reads every item of a deployed target table, by key.
func (d *deployment) scan(t *testing.T, source string) map[string]map[string]types.AttributeValue {
	t.Helper()
	tbl, err := d.env.Describe(d.f.ctx, source)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]types.AttributeValue{}
	p := dynamodb.NewScanPaginator(d.env.DB, &dynamodb.ScanInput{TableName: aws.String(tbl.Target), ConsistentRead: aws.Bool(true)})
	for p.HasMorePages() {
		page, err := p.NextPage(d.f.ctx)
		if err != nil {
			t.Fatalf("scanning %s: %v", tbl.Target, err)
		}
		for _, it := range page.Items {
			out[it["id"].(*types.AttributeValueMemberN).Value] = it
		}
	}
	return out
}

// TestDeployedResnapshotOneTable: the deployed state machine (the real ASL) started with
// plan's tables input, as tandem resnapshot starts it, copies the named table again as a
// new epoch, while every item of the other table, snapshotted or streamed, keeps the
// position and epoch it was written with.
func TestDeployedResnapshotOneTable(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE again (id int PRIMARY KEY, v text);
		INSERT INTO again SELECT g, 'a' || g FROM generate_series(1, 60) g;
		CREATE TABLE kept (id int PRIMARY KEY, v text);
		INSERT INTO kept SELECT g, 'k' || g FROM generate_series(1, 60) g;
		ANALYZE;`, nil)
	d := f.deploy(t)
	if out, _ := d.run(t); out.Status != sfntypes.ExecutionStatusSucceeded {
		t.Fatalf("first execution %s: %s %s", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause))
	}
	// Stream items in both tables, which only the re-snapshotted one's new epoch may not
	// replace either: a change before the re-snapshot's floor is already applied.
	f.exec("UPDATE again SET v = 'streamed' WHERE id <= 5")
	f.exec("UPDATE kept SET v = 'streamed' WHERE id <= 5")
	d.waitCaughtUp(t)
	kept := d.scan(t, "public.kept")
	before, _, err := d.env.Control.Table(f.ctx, "public.again")
	if err != nil {
		t.Fatal(err)
	}
	keptBefore, _, err := d.env.Control.Table(f.ctx, "public.kept")
	if err != nil {
		t.Fatal(err)
	}

	out, _ := d.runInput(t, `{"tables": ["public.again"]}`)
	if out.Status != sfntypes.ExecutionStatusSucceeded {
		t.Fatalf("re-snapshot execution %s: %s %s", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause))
	}
	after, _, err := d.env.Control.Table(f.ctx, "public.again")
	if err != nil || after.Epoch <= before.Epoch || after.State != control.Done || after.FinalizedEpoch != after.Epoch {
		t.Fatalf("public.again after the re-snapshot: epoch %d (was %d), state %s, finalized %d; %v", after.Epoch, before.Epoch, after.State, after.FinalizedEpoch, err)
	}
	// Every item was copied again by the new epoch, except a streamed one the slot had not
	// confirmed when plan floored the epoch (that change still wins).
	epoch, rewritten := fmt.Sprint(after.Epoch), 0
	for id, it := range d.scan(t, "public.again") {
		src := it["__src"].(*types.AttributeValueMemberS).Value
		e, ok := it["__epoch"].(*types.AttributeValueMemberN)
		switch {
		case ok && e.Value == epoch:
			rewritten++
		case src != "stream":
			t.Errorf("public.again item %s was not rewritten by epoch %s: %v", id, epoch, it)
		}
	}
	if rewritten < 55 {
		t.Errorf("%d items of public.again rewritten by epoch %s, want at least the 55 never streamed", rewritten, epoch)
	}
	keptAfter, _, err := d.env.Control.Table(f.ctx, "public.kept")
	if err != nil || keptAfter.Epoch != keptBefore.Epoch || keptAfter.State != control.Done {
		t.Errorf("public.kept was re-planned: epoch %d (was %d), state %s; %v", keptAfter.Epoch, keptBefore.Epoch, keptAfter.State, err)
	}
	now := d.scan(t, "public.kept")
	if len(now) != len(kept) || len(kept) != 60 {
		t.Errorf("public.kept holds %d items, had %d, want 60", len(now), len(kept))
	}
	for id, it := range kept {
		if !reflect.DeepEqual(now[id], it) {
			t.Errorf("public.kept item %s changed:\nbefore %v\nafter  %v", id, it, now[id])
		}
	}
	d.assertConverged(t, "public.again", "public.kept")
}

// TestDeployedTableFailsPermanently: a table whose snapshot fails for good ends the
// deployed run TablesFailed, the execution's cause naming the table and the reason. The
// bad input is a repair filter PostgreSQL accepts when plan checks it (it plans the
// query, reading no row) but which fails on one row's value when a chunk runs it: a cast
// of text that is not a number, a data exception no retry can fix.
func TestDeployedTableFailsPermanently(t *testing.T) {
	f := newFixture(t, `
		CREATE TABLE good (id int PRIMARY KEY, v text);
		INSERT INTO good SELECT g, 'g' || g FROM generate_series(1, 30) g;
		CREATE TABLE frail (id int PRIMARY KEY, v text);
		INSERT INTO frail SELECT g, g::text FROM generate_series(1, 60) g;
		UPDATE frail SET v = 'n/a' WHERE id = 30;
		ANALYZE;`, nil)
	d := f.deploy(t)
	if out, _ := d.run(t); out.Status != sfntypes.ExecutionStatusSucceeded {
		t.Fatalf("first execution %s: %s %s", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause))
	}
	out, _ := d.runInput(t, `{"tables": ["public.frail"], "where": "v::int > 10"}`)
	if out.Status != sfntypes.ExecutionStatusFailed || aws.ToString(out.Error) != "TablesFailed" {
		t.Fatalf("execution %s %s (%s), want FAILED with TablesFailed", out.Status, aws.ToString(out.Error), aws.ToString(out.Cause))
	}
	const reason = `invalid input syntax for type integer: "n/a"`
	if cause := aws.ToString(out.Cause); !strings.Contains(cause, "public.frail") || !strings.Contains(cause, reason) || strings.Contains(cause, "public.good") {
		t.Errorf("the execution's cause %q does not name public.frail (only) and %s", cause, reason)
	}
	st, _, err := d.env.Control.Table(f.ctx, "public.frail")
	if err != nil || st.State != control.Failed || !strings.Contains(st.Error, reason) {
		t.Errorf("control table for public.frail: want failed with %q: state %s, error %q, %v", reason, st.State, st.Error, err)
	}
	good, _, err := d.env.Control.Table(f.ctx, "public.good")
	if err != nil || good.State != control.Done {
		t.Errorf("public.good should stay done: %+v %v", good, err)
	}
}
