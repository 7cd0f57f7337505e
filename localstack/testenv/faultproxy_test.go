package testenv

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// TestFaultProxy checks each fault the proxy injects looks to the SDK like DynamoDB's own
// (throttling and 5xx are retryable API errors, a dropped response is a connection error
// after the write happened), that the outage switch works, and that draws follow the seed.
func TestFaultProxy(t *testing.T) {
	ctx := context.Background()
	direct := dynamodb.NewFromConfig(awsConfig(env.Moto.Endpoint))
	name := "faultproxy_probe"
	if _, err := direct.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            &name,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		BillingMode:          types.BillingModePayPerRequest,
	}); err != nil {
		t.Fatal(err)
	}
	p, err := StartFaultProxy(env.Moto.Endpoint, 1, FaultRates{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// One attempt per call, so each call sees the injected fault itself.
	c := dynamodb.NewFromConfig(p.AWSConfig(), func(o *dynamodb.Options) { o.Retryer = aws.NopRetryer{} })
	put := func(id string) error {
		_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: &name, Item: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}}})
		return err
	}
	exists := func(id string) bool {
		out, err := direct.GetItem(ctx, &dynamodb.GetItemInput{TableName: &name, Key: map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: id}}, ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		return out.Item != nil
	}
	code := func(err error) string {
		var api smithy.APIError
		if errors.As(err, &api) {
			return api.ErrorCode()
		}
		return ""
	}

	if err := put("clean"); err != nil || !exists("clean") {
		t.Fatalf("no faults: %v", err)
	}
	p.SetRates(FaultRates{Throttle: 1})
	seen := map[string]bool{}
	for range 20 {
		err := put("throttled")
		seen[code(err)] = true
		if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) != aws.TrueTernary {
			t.Fatalf("throttling not recognised by the SDK as throttling: %v", err)
		}
	}
	if !seen["ProvisionedThroughputExceededException"] || !seen["ThrottlingException"] || exists("throttled") {
		t.Fatalf("throttling codes seen %v (want both, and no write)", seen)
	}
	p.SetRates(FaultRates{ServerError: 1})
	if err := put("5xx"); retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) != aws.TrueTernary || exists("5xx") {
		t.Fatalf("5xx not retryable: %v", err)
	}
	p.SetRates(FaultRates{Reset: 1})
	if err := put("reset"); err == nil || exists("reset") {
		t.Fatalf("reset: %v", err)
	}
	p.SetRates(FaultRates{Drop: 1})
	if err := put("dropped"); err == nil || !exists("dropped") {
		t.Fatalf("a dropped response must fail the call after the write happened: err %v, written %v", err, exists("dropped"))
	}
	p.SetRates(FaultRates{})
	p.SetOutage(true)
	if err := put("outage"); code(err) != "ServiceUnavailable" {
		t.Fatalf("outage: %v", err)
	}
	p.SetOutage(false)
	if err := put("after"); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	n := p.Counts()
	if n.Throttled != 20 || n.ServerErrors != 1 || n.Resets != 1 || n.Dropped != 1 || n.Outage != 1 {
		t.Fatalf("counts %v", n)
	}
	t.Log(n)

	a, _ := StartFaultProxy(env.Moto.Endpoint, 42, FaultRates{Throttle: 0.3, Drop: 0.2, Latency: 0.1})
	b, _ := StartFaultProxy(env.Moto.Endpoint, 42, FaultRates{Throttle: 0.3, Drop: 0.2, Latency: 0.1})
	defer a.Close()
	defer b.Close()
	for i := range 200 {
		ka, da := a.draw()
		kb, db := b.draw()
		if ka != kb || da != db {
			t.Fatalf("draw %d differs under one seed", i)
		}
	}
}
