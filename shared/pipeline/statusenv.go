package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"tandem/shared/config"
	"tandem/shared/pg"
)

// NewStatusEnv is an Env for reading the status from outside the pipeline (the tandem
// command). Unlike NewEnv it does not need PostgreSQL to answer: the control table says
// most of what an operator wants to know when the database is down, so the pool
// connects lazily (each attempt bounded) and Status reports the slot as unreadable.
// Without a pool at all (the secret could not be read, a bad URL), env.PGError says why.
// The error is for what prevents reading any status (the AWS configuration).
func NewStatusEnv(ctx context.Context, cfg *config.Config) (*Env, aws.Config, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, awsCfg, fmt.Errorf("aws config: %w", err)
	}
	// A read for people: a few quick retries, not the pipeline's patience with an outage
	// (an endpoint nothing listens on is said so within seconds).
	db := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts, so.MaxBackoff = 3, 2*time.Second
		})
	})
	env := FromParts(cfg, nil, db, NewLogger())
	src, err := SourceFor(ctx, cfg, awsCfg)
	if err != nil {
		env.PGError = err
		return env, awsCfg, nil
	}
	env.Source = src
	// PostgreSQL down is shown, not fatal: the rest of the status does not need it.
	pctx, cancel := context.WithTimeout(ctx, pgTimeout)
	defer cancel()
	if env.PG, err = pg.Open(pctx, src, 2); err != nil {
		env.PG, env.PGError = nil, err
	}
	return env, awsCfg, nil
}
