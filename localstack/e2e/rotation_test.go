package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"tandem/localstack/testenv"
	"tandem/shared/config"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
)

// TestSecretRotation: the database password is rotated (the role's password changed, the
// secret updated) while Tandem runs. New connections, of a pool or for replication, cost
// at most one refused login: the secret is read again and the login retried.
func TestSecretRotation(t *testing.T) {
	server, err := testenv.StartPostgres(testenv.PostgresOptions{HBA: []string{"host all rotated 127.0.0.1/32 scram-sha-256"}})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pg.Open(ctx, pg.Source{URL: server.URL}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const first, second = "first-Pa55word", "second-Pa55word"
	if _, err := admin.Exec(ctx, "CREATE ROLE rotated LOGIN REPLICATION PASSWORD '"+first+"'"); err != nil {
		t.Fatal(err)
	}
	awsCfg, err := env.Moto.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.NewFromConfig(awsCfg)
	secretValue := func(password string) *string {
		b, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": server.Port, "username": "rotated", "password": password, "dbname": "postgres"})
		return aws.String(string(b))
	}
	name := fmt.Sprintf("rotation-%d", time.Now().UnixNano())
	created, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: &name, SecretString: secretValue(first)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{PostgresSecretARN: aws.ToString(created.ARN), PostgresSSLMode: "disable"}
	src, err := pipeline.SourceFor(ctx, cfg, awsCfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(src.URL, first) {
		t.Fatalf("the source's URL holds the password: %s", src.URL)
	}
	pool, err := pg.Open(ctx, src, 2)
	if err != nil {
		t.Fatalf("before the rotation: %v", err)
	}
	defer pool.Close()

	// Rotate: the role first, then the secret (as a rotation Lambda does).
	if _, err := admin.Exec(ctx, "ALTER ROLE rotated PASSWORD '"+second+"'"); err != nil {
		t.Fatal(err)
	}
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: created.ARN, SecretString: secretValue(second)}); err != nil {
		t.Fatal(err)
	}
	// A new pool (what a restarted handler opens) and a replication connection (what a
	// reconnecting streamer opens) work at once: the first login with the cached password
	// is refused, the secret read again, the login retried.
	fresh, err := pg.Open(ctx, src, 2)
	if err != nil {
		t.Fatalf("a new pool after the rotation: %v", err)
	}
	fresh.Close()
	conn, err := pg.ConnectReplication(ctx, src)
	if err != nil {
		t.Fatalf("a replication connection after the rotation: %v", err)
	}
	conn.Close(ctx)
	// The running pool's next new connection uses the password read again above.
	pool.Reset()
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the running pool after the rotation: %v", err)
	}

	// The role's password changed and the secret not: the error says so after the
	// secret was read again, and never shows a password.
	if _, err := admin.Exec(ctx, "ALTER ROLE rotated PASSWORD 'third-Pa55word'"); err != nil {
		t.Fatal(err)
	}
	_, err = pg.Open(ctx, src, 1)
	if err == nil {
		t.Fatal("connected with a wrong password")
	}
	if !pg.IsAuthFailure(err) || strings.Contains(err.Error(), second) || strings.Contains(err.Error(), first) {
		t.Fatalf("error: %v", err)
	}
	t.Logf("wrong password: %v", err)
}
