package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/config"
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
	url := cfg.PostgresURL
	if url == "" {
		if url, err = postgresURLFromSecret(ctx, awsCfg, cfg.PostgresSecretARN); err != nil {
			env.PGError = err
			return env, awsCfg, nil
		}
	}
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		env.PGError = fmt.Errorf("postgres: invalid connection URL: %w", err)
		return env, awsCfg, nil
	}
	pc.ConnConfig.ConnectTimeout = pgTimeout
	pc.ConnConfig.RuntimeParams["application_name"] = "tandem status"
	pc.MaxConns = 2
	pc.MaxConnIdleTime = time.Minute
	if env.PG, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		env.PGError = fmt.Errorf("postgres: %w", err)
	}
	return env, awsCfg, nil
}
