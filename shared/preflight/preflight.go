// Package preflight is `tandem check`: it inspects the configured database and DynamoDB
// before anything is created and reports one finding per check. It changes nothing. Each
// rule is the one plan, the streamer or the schema validation applies (the same
// functions), so what check passes, plan accepts, and what plan would refuse check
// reports with plan's message.
package preflight

import (
	"context"
	"log/slog"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/config"
	"tandem/shared/pipeline"
)

// Level is a finding's severity.
type Level string

// Levels: FAIL is a blocker (plan would refuse, or Tandem could not run); WARN works but
// deserves a look; OK passed.
const (
	OK   Level = "OK"
	Warn Level = "WARN"
	Fail Level = "FAIL"
)

// Finding is one check's outcome. Subject names what was checked ("wal_level", "table
// public.orders"); Message says what was found and, for a problem, the fix.
type Finding struct {
	Level   Level  `json:"level"`
	Subject string `json:"subject"`
	Message string `json:"message"`
}

// Report is every finding of one run.
type Report struct {
	Findings []Finding `json:"findings"`
	Blockers int       `json:"blockers"`
	Warnings int       `json:"warnings"`
}

func (r *Report) add(level Level, subject, message string) {
	r.Findings = append(r.Findings, Finding{Level: level, Subject: subject, Message: message})
	switch level {
	case Fail:
		r.Blockers++
	case Warn:
		r.Warnings++
	}
}

// check adds FAIL with err's message, or OK with ok; it reports whether err was nil.
func (r *Report) check(subject string, err error, ok string) bool {
	if err != nil {
		r.add(Fail, subject, err.Error())
		return false
	}
	r.add(OK, subject, ok)
	return true
}

// Options says what to check.
type Options struct {
	Config *config.Config
	// AWS is the SDK configuration (DynamoDB, and Secrets Manager for
	// postgres_secret_arn).
	AWS aws.Config
	// NoDynamoDB checks as against an empty DynamoDB, without calling it: make up checks
	// before it starts the stand-in whose DynamoDB Tandem will use.
	NoDynamoDB bool
	// Deployment checks the configuration as a deployment of template.yaml runs it: its
	// roles may only create and write DynamoDB tables named with the table prefix, so a
	// target outside it is a blocker.
	Deployment bool
}

// Run performs every check and returns the findings; it fails only when it cannot run at
// all. Checks that depend on a failed one (the tables, when PostgreSQL is unreachable)
// are left out.
func Run(ctx context.Context, o Options) *Report {
	r := &Report{}
	c := &checker{o: o, r: r, cfg: o.Config}
	defer c.close()
	connected := c.connect(ctx)
	if connected {
		c.checkServer(ctx)
	}
	if !o.NoDynamoDB {
		c.db = dynamodbClient(o.AWS)
		c.checkDynamoDB(ctx)
	}
	if connected {
		c.env = pipeline.FromParts(c.cfg, c.pg, c.db, silent)
		c.checkTables(ctx)
	}
	return r
}

// checker holds one run's connections.
type checker struct {
	o   Options
	r   *Report
	cfg *config.Config
	pg  *pgxpool.Pool
	db  *dynamodb.Client
	// dbOK: DynamoDB answered; control: the control table exists.
	dbOK, control bool
	env           *pipeline.Env
	// password is scrubbed from every message (pgx errors may quote the connection string).
	password string
}

func (c *checker) close() {
	if c.pg != nil {
		c.pg.Close()
	}
}

// scrub removes the password from a message.
func (c *checker) scrub(s string) string {
	if c.password == "" {
		return s
	}
	return strings.ReplaceAll(s, c.password, "xxxxx")
}

// silent is a logger for the Env check builds: findings are the output, not logs.
var silent = slog.New(slog.DiscardHandler)
