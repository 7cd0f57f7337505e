package preflight

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// dynamodbClient is a DynamoDB client that gives up quickly: the replication client
// retries for minutes, but check reports an unreachable endpoint instead of waiting.
func dynamodbClient(cfg aws.Config) *dynamodb.Client {
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = 2 })
	})
}

// checkDynamoDB reports whether DynamoDB answers and whether the control table exists.
func (c *checker) checkDynamoDB(ctx context.Context) {
	where := "region " + c.o.AWS.Region
	if c.o.AWS.BaseEndpoint != nil {
		where = aws.ToString(c.o.AWS.BaseEndpoint) + ", " + where
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := c.db.ListTables(cctx, &dynamodb.ListTablesInput{Limit: aws.Int32(1)}); err != nil {
		c.r.add(Fail, "dynamodb", "not reachable ("+where+"): "+err.Error())
		return
	}
	c.dbOK = true
	c.r.add(OK, "dynamodb", "reachable ("+where+")")
	name := c.cfg.ControlTable
	_, err := c.db.DescribeTable(cctx, &dynamodb.DescribeTableInput{TableName: &name})
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		c.r.add(OK, "control table "+name, "does not exist yet: plan creates it")
	case err != nil:
		c.r.add(Fail, "control table "+name, "cannot describe it: "+err.Error())
	default:
		c.control = true
		c.r.add(OK, "control table "+name, "exists: Tandem resumes from the state it holds")
	}
}
