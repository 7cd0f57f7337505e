// Package ddb holds the DynamoDB plumbing both the target writer and the control table
// use: the client with Tandem's retry policy, table creation, and error classification.
package ddb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// idleConnections is how many connections the client keeps open to DynamoDB: one for each
// write a process keeps in flight (every range's writers, the stream's, background
// removal's). The SDK's default transport keeps 10 per host, so with more in flight most
// requests opened a new connection (a TLS handshake on AWS), and throughput fell as
// concurrency rose.
const idleConnections = 1024

// FromConfig returns a DynamoDB client for an AWS configuration (the default one honours
// AWS_ENDPOINT_URL, so it points at LocalStack or moto as well). Throttling and 5xx
// errors are retried by the SDK's standard retryer with jittered exponential backoff,
// patiently: a replication stream would rather slow down than fail.
func FromConfig(cfg aws.Config) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if bc, ok := o.HTTPClient.(*awshttp.BuildableClient); ok || o.HTTPClient == nil {
			if bc == nil {
				bc = awshttp.NewBuildableClient()
			}
			o.HTTPClient = bc.WithTransportOptions(func(t *http.Transport) {
				t.MaxIdleConns, t.MaxIdleConnsPerHost = idleConnections, idleConnections
			})
		}
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 12
			so.MaxBackoff = 20 * time.Second
			// The client-side rate limiter would fail requests outright under sustained
			// throttling; backoff alone is the behaviour we want.
			so.RateLimiter = ratelimit.None
		})
	})
}

// IsConditionFailed reports a write refused by its condition expression.
func IsConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// ConditionFailedItem reports whether err is a write refused by its condition and, if
// so, the item that refused it, as returned with ReturnValuesOnConditionCheckFailure
// ALL_OLD (nil: no item under that key).
func ConditionFailedItem(err error) (map[string]types.AttributeValue, bool) {
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return nil, false
	}
	if len(ccf.Item) == 0 {
		return nil, true
	}
	return ccf.Item, true
}

// EnsureTable creates a table with on-demand capacity if it does not exist and waits
// until it is active. ttlAttr, when set, enables TTL on that attribute; warm, when set,
// is the warm throughput the new table starts with (an existing table is left as is).
func EnsureTable(ctx context.Context, c *dynamodb.Client, name string, keys []types.KeySchemaElement, attrs []types.AttributeDefinition, ttlAttr string, warm *types.WarmThroughput) error {
	_, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &name})
	var notFound *types.ResourceNotFoundException
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &notFound):
		return fmt.Errorf("dynamodb: describing table %s: %w", name, err)
	}
	_, err = c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &name,
		KeySchema:            keys,
		AttributeDefinitions: attrs,
		BillingMode:          types.BillingModePayPerRequest,
		WarmThroughput:       warm,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("dynamodb: creating table %s: %w", name, err)
	}
	if err := dynamodb.NewTableExistsWaiter(c).Wait(ctx, &dynamodb.DescribeTableInput{TableName: &name}, 5*time.Minute); err != nil {
		return fmt.Errorf("dynamodb: waiting for table %s: %w", name, err)
	}
	if ttlAttr != "" {
		_, err := c.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
			TableName:               &name,
			TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: &ttlAttr, Enabled: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("dynamodb: enabling TTL on %s.%s: %w", name, ttlAttr, err)
		}
	}
	return nil
}
