package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5"
)

var env *Env

func TestMain(m *testing.M) {
	t0 := time.Now()
	var err error
	if env, err = Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "testenv: Start took %v\n", time.Since(t0).Round(time.Millisecond))
	code := m.Run()
	env.Stop()
	os.Exit(code)
}

// dbName makes database names unique per run, so -count=N works.
func dbName(t *testing.T) string {
	dbSeq++
	return fmt.Sprintf("%s_%d", strings.ToLower(t.Name()), dbSeq)
}

var dbSeq int

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func show(t *testing.T, conn *pgx.Conn, setting string) string {
	t.Helper()
	var v string
	if err := conn.QueryRow(context.Background(), "SHOW "+setting).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestPostgres(t *testing.T) {
	name := dbName(t)
	url, err := env.PG.CreateDatabase(name)
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, url)
	if got := show(t, conn, "wal_level"); got != "logical" {
		t.Errorf("wal_level = %q, want logical", got)
	}
	var db string
	if err := conn.QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil || db != name {
		t.Errorf("current_database() = %q, %v", db, err)
	}
	if _, err := env.PG.CreateDatabase(name); err == nil {
		t.Error("CreateDatabase of an existing database succeeded")
	}
	if _, err := env.PG.CreateDatabase(strings.Repeat("x", 64)); err == nil {
		t.Error("CreateDatabase accepted a name postgres would truncate")
	}
}

func TestPostgresRestart(t *testing.T) {
	url, err := env.PG.CreateDatabase(dbName(t))
	if err != nil {
		t.Fatal(err)
	}
	before := connect(t, url)
	port := env.PG.Port
	t0 := time.Now()
	if err := env.PG.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Restart took %v", time.Since(t0).Round(time.Millisecond))
	if env.PG.Port != port {
		t.Errorf("port changed from %d to %d", port, env.PG.Port)
	}
	if err := before.Ping(context.Background()); err == nil {
		t.Error("connection from before the restart still works")
	}
	if got := show(t, connect(t, url), "wal_level"); got != "logical" {
		t.Errorf("after restart wal_level = %q", got)
	}
}

func TestPostgresOptionsAndStop(t *testing.T) {
	pg, err := StartPostgres(PostgresOptions{WalLevel: "replica", ExtraConf: map[string]string{"application_name": "it's"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	conn := connect(t, pg.URL)
	if got := show(t, conn, "wal_level"); got != "replica" {
		t.Errorf("wal_level = %q, want replica", got)
	}
	if got := show(t, conn, "application_name"); got != "it's" {
		t.Errorf("application_name = %q, want it's (quoting)", got)
	}
	conn.Close(context.Background())

	pid, ok := readPid(filepath.Join(pg.Dir, "data", "postmaster.pid"))
	if !ok {
		t.Fatal("no postmaster.pid")
	}
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if processAlive(pid) {
		t.Errorf("postmaster %d still running after Stop", pid)
	}
	if _, err := os.Stat(pg.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Stop: %v", pg.Dir, err)
	}
	if err := pg.Restart(); err == nil {
		t.Error("Restart after Stop succeeded")
	}
}

// A component that cannot start must say why, with its log.
func TestPostgresBadConf(t *testing.T) {
	_, err := StartPostgres(PostgresOptions{ExtraConf: map[string]string{"shared_buffers": "lots"}})
	if err == nil || !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Fatalf("want an error quoting the server log, got %v", err)
	}
}

func TestMoto(t *testing.T) {
	// AWSConfig must reach moto whatever the caller's environment says.
	t.Setenv("AWS_PROFILE", "no-such-profile")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "wrong")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	t.Setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:1")
	ctx := context.Background()
	cfg, err := env.Moto.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := dynamodb.NewFromConfig(cfg)
	table := aws.String("things")
	_, err = db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            table,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	key := map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: "1"}}
	item := map[string]types.AttributeValue{"id": key["id"], "n": &types.AttributeValueMemberN{Value: "42"}}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: table, Item: item}); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: table, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := got.Item["n"].(*types.AttributeValueMemberN); !ok || n.Value != "42" {
		t.Fatalf("GetItem = %#v", got.Item)
	}

	if err := env.Moto.Reset(); err != nil {
		t.Fatal(err)
	}
	tables, err := db.ListTables(ctx, &dynamodb.ListTablesInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(tables.TableNames) != 0 {
		t.Errorf("tables after Reset: %v", tables.TableNames)
	}
}

func TestMotoStop(t *testing.T) {
	m, err := StartMoto()
	if err != nil {
		t.Fatal(err)
	}
	pid := m.cmd.Process.Pid
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if processAlive(pid) {
		t.Errorf("moto %d still running after Stop", pid)
	}
	if _, err := os.Stat(m.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after Stop: %v", m.Dir, err)
	}
}

func TestBinary(t *testing.T) {
	t0 := time.Now()
	bin, err := Binary("./testdata/hello")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Binary took %v", time.Since(t0).Round(time.Millisecond))
	if again, err := Binary("./testdata/hello"); err != nil || again != bin {
		t.Errorf("second Binary = %q, %v; want cached %q", again, err, bin)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env.Moto.EnvVars()...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello " + env.Moto.Endpoint + "\n"; string(out) != want {
		t.Errorf("output %q, want %q", out, want)
	}
	// By import path it is another key, so another build of the same code.
	if byPath, err := Binary("tandem/localstack/testenv/testdata/hello"); err != nil || byPath == bin {
		t.Errorf("Binary by import path = %q, %v", byPath, err)
	}
	if _, err := Binary("./testdata/nonexistent"); err == nil {
		t.Error("Binary of a missing package succeeded")
	}
}
