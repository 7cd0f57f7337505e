// Package pipeline holds the Lambda handlers' logic (plan, snapshot, finalize) on top of
// the shared packages, so each functions/<name>/main.go is only wiring. The JSON shapes
// of their inputs and outputs are what the state machine passes between states.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/ddb"
	"tandem/shared/ident"
	"tandem/shared/invoke"
	"tandem/shared/pg"
	"tandem/shared/schema"
	"tandem/shared/snapshot"
	"tandem/shared/target"
)

// Env is what every handler uses: configuration and clients, created once per process
// (a Lambda container reuses them across invocations).
type Env struct {
	Config *config.Config
	// Source is how to connect to the source database (the streamer's replication
	// connection uses it too).
	Source pg.Source
	PG     *pgxpool.Pool
	// PGError says why PG is nil (NewStatusEnv: the status is read without PostgreSQL).
	PGError error
	DB      *dynamodb.Client
	Control *control.Store
	Writer  *target.Writer
	Types   *pg.Types
	Log     *slog.Logger
	// Metrics receives CloudWatch EMF records (nil: none). Lambda sends stdout to its logs.
	Metrics io.Writer
	// OnChunk, when set, is told each snapshot range's progress after every chunk
	// (snapshot.Copier.OnChunk).
	OnChunk func(snapshot.ChunkProgress)
}

// NewEnv loads the configuration and connects to PostgreSQL and DynamoDB.
func NewEnv(ctx context.Context) (*Env, error) {
	cfg, err := config.Load()
	if err != nil {
		return nil, err
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	return Connect(ctx, cfg, awsCfg)
}

// Connect is NewEnv with the configuration and the AWS configuration given: what a
// handler or the streamer has once connected, in tests too.
func Connect(ctx context.Context, cfg *config.Config, awsCfg aws.Config) (*Env, error) {
	src, err := SourceFor(ctx, cfg, awsCfg)
	if err != nil {
		return nil, err
	}
	db := ddb.FromConfig(awsCfg)
	pool, err := pg.Open(ctx, src, int32(cfg.SnapshotWriters)+2)
	if err != nil {
		return nil, err
	}
	env := FromParts(cfg, pool, db, NewLogger())
	env.Source = src
	if invoke.InLambda() {
		env.Metrics = os.Stdout // outside Lambda, stdout carries the handler's JSON result
	}
	return env, nil
}

// FromParts assembles an Env from existing clients (tests, the benchmarks); its Source is
// cfg's URL and TLS settings.
func FromParts(cfg *config.Config, pool *pgxpool.Pool, db *dynamodb.Client, log *slog.Logger) *Env {
	return &Env{
		Config:  cfg,
		Source:  pg.Source{URL: cfg.PostgresURL, SSLMode: cfg.PostgresSSLMode, SSLRootCert: cfg.PostgresSSLRootCert},
		PG:      pool,
		DB:      db,
		Control: control.New(db, cfg.ControlTable),
		Writer:  &target.Writer{DB: db, TombstoneTTL: cfg.TombstoneTTL.Duration, PassWriters: cfg.SweepWriters},
		Types:   &pg.Types{},
		Log:     log,
	}
}

// NewLogger is Tandem's structured JSON logger (README "Reading its status").
func NewLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Describe is DescribeTable for a table named in its canonical text form (package ident),
// as the state machine and the control table carry it.
func (e *Env) Describe(ctx context.Context, source string) (*schema.Table, error) {
	id, err := ident.Parse(source)
	if err != nil {
		return nil, err
	}
	return e.DescribeTable(ctx, id)
}

// DescribeTable reads a replicated table's definition, with its configured target and
// key, and validates it.
func (e *Env) DescribeTable(ctx context.Context, id ident.Table) (*schema.Table, error) {
	tc, ok := e.Config.TableFor(id)
	if !ok {
		return nil, fmt.Errorf("table %s is not in the configured tables", id)
	}
	t, err := pg.DescribeTable(ctx, e.PG, e.Types, id.Schema, id.Name, tc.KeyColumns)
	if err != nil {
		return nil, err
	}
	t.Target = tc.Target
	return t, t.Validate()
}

// Main is a handler binary's whole main: configuration and clients, then the handler
// served as a Lambda function (or run once, outside Lambda; see package invoke).
func Main[In, Out any](name string, handler func(*Env, context.Context, In) (Out, error)) {
	env, err := NewEnv(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	if !invoke.InLambda() {
		// Run by hand (the pieces one by one): a long snapshot says how far it is, on
		// stderr, while stdout keeps only the JSON result.
		env.OnChunk = NewProgressPrinter(os.Stderr).Chunk
	}
	invoke.Start(func(ctx context.Context, in In) (Out, error) {
		out, err := handler(env, ctx, in)
		return out, classify(err)
	})
}
