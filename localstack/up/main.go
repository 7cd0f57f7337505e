// Command up runs the whole local pipeline against any PostgreSQL: the AWS stand-in on
// 127.0.0.1:4566 with template.yaml deployed, the streamer, and one execution of the
// snapshot state machine. It waits for the execution's plan step: when plan refuses the
// configuration (a misspelt table, a table without a primary key), it stops everything
// and exits 1 with plan's message. Otherwise it writes state/up.json (endpoint, stack,
// execution) and state/tandem.json (a configuration for the tandem command: `tandem
// status --config .standin/tandem.json` with the stand-in's AWS environment) and stays up
// for inspection until SIGTERM or Ctrl-C (make down), then stops everything it started.
//
// The database itself is left alone, except for Tandem's publication and slot. On the
// way down the slot is dropped with the publication Tandem created when --drop-slot was
// given or the file state/drop-slot exists (make down DROP_SLOT=1 creates it); otherwise
// up says how much WAL the slot still retains and how to drop it, and remembers in
// state/publication.json that Tandem created the publication it leaves (see
// publicationRecord).
//
// --config takes a Tandem configuration file (tables with key_columns and targets,
// table_prefix, slot, publication, chunk_size, ...). The template's parameters are set
// from it, and the functions and the streamer read the file itself through
// TANDEM_CONFIG_FILE (the template's TANDEM_* variables, which apply on top, carry the
// same values), as a deployment would build it into the function package and the image.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/localstack/standin"
	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/ddb"
	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/teardown"
)

func main() {
	pgURL := flag.String("pg-url", os.Getenv("TANDEM_PG_URL"), "PostgreSQL connection URL (wal_level=logical, a role with REPLICATION); default: the config file's postgres_url")
	tables := flag.String("tables", "", "comma-separated schema.table list (default: the config file's tables, or every table)")
	configFile := flag.String("config", "", "a Tandem configuration `file` (tables with key_columns and targets, table_prefix, slot, publication, ...)")
	addr := flag.String("addr", "127.0.0.1:4566", "where the AWS endpoint listens")
	state := flag.String("state", ".standin", "directory for logs, up.json and tandem.json")
	dropSlot := flag.Bool("drop-slot", false, "drop Tandem's slot and publication when stopping (also: the file STATE/drop-slot exists then)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := options(*pgURL, *tables, *configFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "up:", err)
		os.Exit(2)
	}
	o.addr, o.state, o.dropSlot = *addr, *state, *dropSlot
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "up:", err)
		os.Exit(1)
	}
}

type upOptions struct {
	cfg *config.Config
	// file is the user's configuration file ("" for none).
	file        string
	addr, state string
	dropSlot    bool
	// explicitTables is --tables, the template's Tables parameter.
	explicitTables string
}

// options reads the configuration the deployment gets: the file, with --pg-url and
// --tables on top.
func options(pgURL, tables, file string) (*upOptions, error) {
	cfg := &config.Config{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	if pgURL != "" {
		cfg.PostgresURL = pgURL
	}
	if cfg.PostgresURL == "" {
		return nil, errors.New("PG_URL (--pg-url), or postgres_url in the CONFIG file, is required")
	}
	if tables != "" && len(cfg.Tables) > 0 {
		return nil, fmt.Errorf("both TABLES and the tables of %s are given: list the tables in one place (the config file can give them key_columns and targets)", file)
	}
	if tables != "" {
		// The same parsing as TANDEM_TABLES, which the deployed functions read.
		ids, err := ident.ParseList(tables)
		if err != nil {
			return nil, fmt.Errorf("TABLES: %w", err)
		}
		for _, id := range ids {
			cfg.Tables = append(cfg.Tables, config.Table{Source: id.String()})
		}
	}
	// The rule make up's tandem check --deployment applies too, so that it names the
	// targets this deployment creates.
	cfg.DeploymentDefaults()
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	abs := ""
	if file != "" {
		var err error
		if abs, err = filepath.Abs(file); err != nil {
			return nil, err
		}
	}
	return &upOptions{cfg: cfg, file: abs, explicitTables: tables}, nil
}

func run(ctx context.Context, o *upOptions) error {
	dir, err := filepath.Abs(o.state)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Nothing of the previous run is left to mix with this one's logs and state.
	for _, name := range []string{"streamer.log", "moto.log", "lambda", "code", "up.json", "tandem.json", "down.log", "drop-slot", "functions.json"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	defer cleanTemporary(dir)
	cfg := o.cfg
	remembered := readPublicationRecord(dir)
	var env []string
	if o.file != "" {
		// The functions and the streamer read the user's file less the settings the
		// deployment supplies itself (the database secret, the control table).
		fc := *cfg
		fc.PostgresURL, fc.PostgresSecretARN, fc.ControlTable, fc.StateMachineARN = "", "", "", ""
		path := filepath.Join(dir, "functions.json")
		if err := writeJSON(path, fc, 0o600); err != nil {
			return err
		}
		env = append(env, "TANDEM_CONFIG_FILE="+path)
	}
	s, err := standin.Start(standin.Options{Addr: o.addr, Dir: dir, Env: env})
	if err != nil {
		return err
	}
	defer s.Stop()
	root, err := standin.ModuleRoot()
	if err != nil {
		return err
	}
	params := map[string]string{"Tables": o.explicitTables, "TablePrefix": cfg.TablePrefix, "Publication": cfg.Publication, "Slot": cfg.Slot,
		"ChunkSize": strconv.Itoa(cfg.ChunkSize), "MaxConcurrency": strconv.Itoa(cfg.MaxConcurrency), "RangeRows": strconv.Itoa(cfg.RangeRows),
		"MaxRanges": strconv.Itoa(cfg.MaxRanges), "SweepSegmentItems": strconv.Itoa(cfg.SweepSegmentItems)}
	stack, err := s.Deploy(ctx, standin.DeployOptions{Stack: "tandem", Template: filepath.Join(root, "template.yaml"),
		PostgresURL: cfg.PostgresURL, Params: params})
	if err != nil {
		return err
	}
	cfg.ControlTable, cfg.StateMachineARN = stack.Outputs["ControlTableName"], stack.Outputs["StateMachineArn"]
	if err := writeCLIConfig(filepath.Join(dir, "tandem.json"), cfg); err != nil {
		return err
	}
	if err := restorePublicationRecord(ctx, cfg, s, remembered); err != nil {
		return err
	}
	streamer, err := s.StartStreamer(ctx, stack, env...)
	if err != nil {
		return err
	}
	defer streamer.Stop()
	select {
	case <-streamer.Done():
		log, _ := os.ReadFile(streamer.Log)
		return fmt.Errorf("the streamer exited at once:\n%s", log)
	case <-time.After(2 * time.Second):
	}
	execution, err := s.StartExecution(ctx, stack, "snapshot-1", "{}")
	if err != nil {
		return err
	}
	if err := waitForPlan(ctx, sfn.NewFromConfig(s.AWSConfig()), execution); err != nil {
		// Plan may have created the slot before it refused a table.
		streamer.Stop()
		return fmt.Errorf("%w\n%s", err, shutdown(cfg, s, o.dropSlot))
	}
	summary := map[string]any{"endpoint": s.Endpoint, "execution": execution, "stack": stack.Outputs, "logs": dir,
		"tandem_config": filepath.Join(dir, "tandem.json")}
	b, _ := json.MarshalIndent(summary, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "up.json"), b, 0o644); err != nil {
		return err
	}
	fmt.Printf("Tandem is up: the plan succeeded, the snapshot runs.\n%s\n", b)

	select {
	case <-ctx.Done():
	case <-streamer.Done():
		fmt.Fprintf(os.Stderr, "up: the streamer exited; see %s\n", streamer.Log)
	}
	streamer.Stop()
	_, err = os.Stat(filepath.Join(dir, "drop-slot"))
	down := shutdown(cfg, s, o.dropSlot || err == nil)
	fmt.Print(down)
	_ = os.WriteFile(filepath.Join(dir, "down.log"), []byte(down), 0o644)
	_ = os.Remove(filepath.Join(dir, "up.json"))
	return nil
}

// waitForPlan waits until the execution's Plan state has finished; it returns plan's
// error when the execution failed before (or in) it.
func waitForPlan(ctx context.Context, client *sfn.Client, arn string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var events []sfntypes.HistoryEvent
		p := sfn.NewGetExecutionHistoryPaginator(client, &sfn.GetExecutionHistoryInput{ExecutionArn: &arn})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("reading the execution's history: %w", err)
			}
			events = append(events, page.Events...)
		}
		for _, e := range events {
			if e.Type == sfntypes.HistoryEventTypeTaskStateExited && e.StateExitedEventDetails != nil && aws.ToString(e.StateExitedEventDetails.Name) == "Plan" {
				return nil
			}
		}
		out, err := client.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: &arn})
		if err != nil {
			return fmt.Errorf("reading the execution: %w", err)
		}
		if out.Status != sfntypes.ExecutionStatusRunning {
			return fmt.Errorf("the plan failed (execution %s): %s", out.Status, planError(aws.ToString(out.Error), aws.ToString(out.Cause)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the plan did not finish within 5 minutes (see the Lambda logs in %s)", "lambda/")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// planError is the message of a failed Lambda task: its cause is the function's error
// as JSON ({"errorMessage": ..., "errorType": ...}).
func planError(errName, cause string) string {
	var c struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}
	if json.Unmarshal([]byte(cause), &c) == nil && c.ErrorMessage != "" {
		return c.ErrorMessage
	}
	if cause != "" {
		return cause
	}
	return errName
}

// cliConfig is state/tandem.json: what the tandem command needs to find this deployment.
type cliConfig struct {
	PostgresURL     string         `json:"postgres_url"`
	ControlTable    string         `json:"control_table"`
	TablePrefix     string         `json:"table_prefix"`
	Slot            string         `json:"slot"`
	Publication     string         `json:"publication"`
	Tables          []config.Table `json:"tables"`
	StateMachineARN string         `json:"state_machine_arn"`
}

func writeCLIConfig(path string, cfg *config.Config) error {
	return writeJSON(path, cliConfig{PostgresURL: cfg.PostgresURL, ControlTable: cfg.ControlTable, TablePrefix: cfg.TablePrefix,
		Slot: cfg.Slot, Publication: cfg.Publication, Tables: cfg.Tables, StateMachineARN: cfg.StateMachineARN}, 0o600)
}

func writeJSON(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), mode)
}

// shutdown drops the slot and the publication Tandem created (drop), or says how much
// WAL the slot still retains; it returns what to tell the user. Either way it records
// whether Tandem's publication is left for the next run (see publicationRecord).
func shutdown(cfg *config.Config, s *standin.StandIn, drop bool) string {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, pg.Source{URL: cfg.PostgresURL}, 2)
	if err != nil {
		return fmt.Sprintf("Tandem's replication slot %s may still retain WAL on the database (it cannot be reached: %v); drop it with: SELECT pg_drop_replication_slot('%s');\n", cfg.Slot, err, cfg.Slot)
	}
	defer pool.Close()
	msg := stopMessage(ctx, cfg, s, pool, drop)
	if err := rememberPublication(ctx, cfg, s, pool); err != nil {
		msg += "remembering that Tandem created publication " + cfg.Publication + ": " + err.Error() + "\n"
	}
	return msg
}

func stopMessage(ctx context.Context, cfg *config.Config, s *standin.StandIn, pool *pgxpool.Pool, drop bool) string {
	if drop {
		o := teardown.Options{Config: cfg, PG: pool, DB: ddb.FromConfig(s.AWSConfig()), Force: true}
		plan, err := teardown.Inspect(ctx, o)
		if err != nil {
			return "dropping the slot and publication: " + err.Error() + "\n"
		}
		done, err := teardown.Run(ctx, o, plan)
		var b strings.Builder
		for _, obj := range done {
			b.WriteString(teardown.Describe(obj, true) + "\n")
		}
		if err != nil {
			b.WriteString("dropping the slot and publication: " + err.Error() + "\n")
		}
		return b.String()
	}
	slot, err := pg.ReadSlot(ctx, pool, cfg.Slot)
	switch {
	case errors.Is(err, pg.ErrSlotMissing):
		return fmt.Sprintf("Tandem's replication slot %s does not exist (nothing retains WAL).\n", cfg.Slot)
	case err != nil && slot.Name == "":
		return fmt.Sprintf("Tandem's replication slot %s may still retain WAL on the database (%v)\n", cfg.Slot, err)
	}
	return fmt.Sprintf("Tandem's replication slot %s still retains %d bytes of WAL on the database, and retains more as the database "+
		"is written to, until it is dropped. Drop it and publication %s now with: .build/tandem teardown --config %s "+
		"(or next time stop with: make down DROP_SLOT=1)\n",
		cfg.Slot, slot.RetainedBytes(), cfg.Publication, relative(filepath.Join(s.Dir, "tandem.json")))
}

// publicationRecord is state/publication.json: that Tandem created the publication a run
// left behind. Each run's DynamoDB (moto, in memory) starts empty, so without it the next
// make up would take that publication for one the user created, which Tandem never
// alters nor drops: a table added to TABLES would be refused, and make down DROP_SLOT=1
// would keep the publication. The object id tells it from a publication of the same name
// created since by someone else.
type publicationRecord struct {
	Database    string `json:"database"`
	Publication string `json:"publication"`
	OID         uint32 `json:"oid"`
}

const publicationFile = "publication.json"

// readPublicationRecord reads the previous run's record (nil for none). It stays until
// this run's shutdown rewrites or removes it, so a run that fails earlier loses nothing.
func readPublicationRecord(dir string) *publicationRecord {
	b, err := os.ReadFile(filepath.Join(dir, publicationFile))
	if err != nil {
		return nil
	}
	var r publicationRecord
	if json.Unmarshal(b, &r) != nil || r.Publication == "" {
		return nil
	}
	return &r
}

// readPublicationOID finds the publication (found false when it does not exist).
func readPublicationOID(ctx context.Context, pool *pgxpool.Pool, name string) (rec publicationRecord, found bool, err error) {
	rec.Publication = name
	err = pool.QueryRow(ctx, "SELECT current_database(), p.oid FROM pg_publication p WHERE p.pubname = $1", name).Scan(&rec.Database, &rec.OID)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, false, nil
	}
	return rec, err == nil, err
}

// restorePublicationRecord records in the new control table that Tandem created the
// publication, when the previous run left that very publication (same database, name
// and object id), before plan looks at it.
func restorePublicationRecord(ctx context.Context, cfg *config.Config, s *standin.StandIn, prev *publicationRecord) error {
	if prev == nil || prev.Publication != cfg.Publication {
		return nil
	}
	pool, err := pg.Open(ctx, pg.Source{URL: cfg.PostgresURL}, 1)
	if err != nil {
		return err
	}
	defer pool.Close()
	now, found, err := readPublicationOID(ctx, pool, cfg.Publication)
	if err != nil || !found || now != *prev {
		return err
	}
	return control.New(ddb.FromConfig(s.AWSConfig()), cfg.ControlTable).RecordPublication(ctx, cfg.Publication)
}

// rememberPublication writes state/publication.json when the publication exists and this
// run's control table records that Tandem created it, and removes the file otherwise.
func rememberPublication(ctx context.Context, cfg *config.Config, s *standin.StandIn, pool *pgxpool.Pool) error {
	path := filepath.Join(s.Dir, publicationFile)
	rec, found, err := readPublicationOID(ctx, pool, cfg.Publication)
	if err != nil {
		return err
	}
	if found {
		var ctl control.PublicationRecord
		ctl, found, err = control.New(ddb.FromConfig(s.AWSConfig()), cfg.ControlTable).Publication(ctx)
		if err != nil {
			return err
		}
		found = found && ctl.CreatedByTandem && ctl.Publication == cfg.Publication
	}
	if !found {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	return writeJSON(path, rec, 0o644)
}

// cleanTemporary removes what the run built and unpacked (function code, bootstraps, the
// streamer binary, helper scripts), keeping the logs.
func cleanTemporary(dir string) {
	for _, name := range []string{"code", "streamer", "moto_server.py", "deploy.py", "functions.json"} {
		_ = os.RemoveAll(filepath.Join(dir, name))
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "lambda"))
	for _, e := range entries {
		if e.IsDir() {
			_ = os.RemoveAll(filepath.Join(dir, "lambda", e.Name()))
		}
	}
}

// relative is path relative to the working directory where it is below it (make up's
// .standin/tandem.json), else path.
func relative(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	if rel, err := filepath.Rel(wd, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}
