package pipeline

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"tandem/shared/config"
)

// With IAM authentication every new connection gets its own token for the URL's user and
// endpoint, signed for rds-db:connect; nothing of the configured URL's password is used.
func TestIAMTokenPerConnection(t *testing.T) {
	cfg := &config.Config{PostgresURL: "postgres://replicator:unused@db.example.internal:6543/app", PostgresIAMAuth: true, PostgresSSLMode: "verify-full"}
	awsCfg := aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secretkeyexample", "")}
	src, err := SourceFor(context.Background(), cfg, awsCfg)
	if err != nil {
		t.Fatal(err)
	}
	if src.Credentials == nil {
		t.Fatal("no password source for IAM authentication")
	}
	token, err := src.Credentials.Password(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse("https://" + token)
	if err != nil {
		t.Fatalf("token %q: %v", token, err)
	}
	q := u.Query()
	if u.Host != "db.example.internal:6543" || q.Get("Action") != "connect" || q.Get("DBUser") != "replicator" ||
		!strings.Contains(q.Get("X-Amz-Credential"), "/eu-west-1/rds-db/") || q.Get("X-Amz-Signature") == "" || q.Get("X-Amz-Expires") != "900" {
		t.Fatalf("token is not an rds-db:connect token for replicator@db.example.internal:6543 in eu-west-1: %s", token)
	}
	if strings.Contains(token, "unused") {
		t.Fatal("the token carries the URL's password")
	}
	if _, err := SourceFor(context.Background(), cfg, aws.Config{}); err == nil || !strings.Contains(err.Error(), "region") {
		t.Fatalf("no region: %v", err)
	}
}
