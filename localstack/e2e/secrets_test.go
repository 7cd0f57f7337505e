package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"tandem/localstack/testenv"
	"tandem/shared/pg"
)

// TestNoSecretInOutput runs the real binaries (plan, snapshot, the streamer, finalize,
// status, and the tandem command's check, status, verify and deadletters) with a
// connection URL holding a known password, then with the database secret holding it
// (postgres_secret_arn), and connection failures with it (nothing listening, a URL that
// does not parse, and a login the server refuses for a wrong password, 28P01, by URL and
// by secret), and asserts that the password appears nowhere: not in their output (logs,
// errors, metrics, results), the control table or the target.
func TestNoSecretInOutput(t *testing.T) {
	f := newFixture(t, `CREATE TABLE accounts (id int PRIMARY KEY, owner text);
		INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 50) g;`, nil)
	const password = "Known-Pa55word-7f3c9e"
	role := "leaky_" + f.name
	f.exec(fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'", role, password))
	port := strings.TrimPrefix(strings.Split(strings.Split(f.url, "@")[1], "/")[0], "127.0.0.1:")
	f.cfg.PostgresURL = fmt.Sprintf("postgres://%s:%s@127.0.0.1:%s/%s?sslmode=disable", role, password, port, f.name)

	var outputs []string
	run := func(pkg string, args ...string) string {
		t.Helper()
		cmd, out := f.process(pkg, args...)
		err := cmd.Wait()
		outputs = append(outputs, pkg+": "+out.String())
		if err != nil {
			t.Logf("%s %v: %v\n%s", pkg, args, err, out)
		}
		return out.String()
	}
	if out := run("tandem/functions/plan", "{}"); !strings.Contains(out, "public.accounts") {
		t.Fatalf("plan did not plan the table:\n%s", out)
	}
	run("tandem/functions/snapshot", `{"table":"public.accounts"}`)
	streamer, streamed := f.process("tandem/streamer")
	time.Sleep(2 * time.Second)
	f.exec("UPDATE accounts SET owner = 'changed' WHERE id <= 10")
	f.waitCaughtUp()
	_ = streamer.Process.Signal(syscall.SIGTERM)
	_ = streamer.Wait()
	outputs = append(outputs, "streamer: "+streamed.String())
	run("tandem/functions/finalize", `{"table":"public.accounts"}`)
	run("tandem/functions/status", "{}")
	// The operator's command: its checks, status (text and JSON), verification and dead letters.
	if out := run("tandem/cmd/tandem", "check"); !strings.Contains(out, "connected to "+role+"@") {
		t.Errorf("tandem check did not connect:\n%s", out)
	}
	if out := run("tandem/cmd/tandem", "status"); !strings.Contains(out, "public.accounts") {
		t.Errorf("tandem status did not show the table:\n%s", out)
	}
	run("tandem/cmd/tandem", "status", "--json")
	run("tandem/cmd/tandem", "verify")
	run("tandem/cmd/tandem", "deadletters")

	// The database secret (an RDS JSON secret) instead of a URL.
	awsCfg, err := env.Moto.AWSConfig(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.NewFromConfig(awsCfg)
	secret := func(port string, user, db string) string {
		t.Helper()
		value, _ := json.Marshal(map[string]any{"host": "127.0.0.1", "port": port, "username": user, "password": password, "dbname": db})
		name := fmt.Sprintf("leaky-%d", time.Now().UnixNano())
		out, err := sm.CreateSecret(f.ctx, &secretsmanager.CreateSecretInput{Name: &name, SecretString: aws.String(string(value))})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.ARN)
	}
	f.cfg.PostgresURL, f.cfg.PostgresSecretARN = "", secret(port, role, f.name)
	if out := run("tandem/functions/plan", "{}"); !strings.Contains(out, "public.accounts") {
		t.Errorf("plan did not plan the table with the secret:\n%s", out)
	}
	if out := run("tandem/cmd/tandem", "check"); !strings.Contains(out, "connected to "+role+"@") {
		t.Errorf("tandem check did not connect with the secret:\n%s", out)
	}
	run("tandem/cmd/tandem", "status")
	run("tandem/cmd/tandem", "verify")

	// A login refused for a wrong password (28P01), by URL and by secret: a server where
	// the role logs in by password, and a password it does not have. The secret is read
	// again and the login retried before the error.
	strict, err := testenv.StartPostgres(testenv.PostgresOptions{HBA: []string{"host all " + role + " 127.0.0.1/32 scram-sha-256"}})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Stop()
	admin, err := pg.Open(f.ctx, pg.Source{URL: strict.URL}, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = admin.Exec(f.ctx, fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD 'Another-Pa55word-1d2e'", role))
	admin.Close()
	if err != nil {
		t.Fatal(err)
	}
	strictPort := strconv.Itoa(strict.Port)
	for _, by := range []string{"URL", "secret"} {
		f.cfg.PostgresURL, f.cfg.PostgresSecretARN = fmt.Sprintf("postgres://%s:%s@127.0.0.1:%s/postgres?sslmode=disable", role, password, strictPort), ""
		if by == "secret" {
			f.cfg.PostgresURL, f.cfg.PostgresSecretARN = "", secret(strictPort, role, "postgres")
		}
		for _, args := range [][]string{{"tandem/functions/plan", "{}"}, {"tandem/cmd/tandem", "check"}, {"tandem/cmd/tandem", "status"}} {
			if out := run(args[0], args[1:]...); !strings.Contains(out, "28P01") {
				t.Errorf("by %s, %s %s: no refused login (28P01) in its output:\n%s", by, args[0], args[1], out)
			}
		}
	}
	f.cfg.PostgresSecretARN = ""

	// Connection failures: nothing listens on the port; the URL does not parse.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for i, url := range []string{
		fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", role, password, closed, f.name),
		fmt.Sprintf("postgres://%s:%s@127.0.0.1:notaport/%s", role, password, f.name),
		fmt.Sprintf("host=127.0.0.1 port=%s user=%s password=%s dbname=%s sslmode=bogus", port, role, password, f.name),
	} {
		f.cfg.PostgresURL = url
		if out := run("tandem/functions/plan", "{}"); !strings.Contains(out, "postgres") {
			t.Errorf("a failed connection's error does not say what failed:\n%s", out)
		}
		if i == 0 {
			run("tandem/cmd/tandem", "check")
			run("tandem/cmd/tandem", "status")
		}
	}

	for _, out := range outputs {
		if strings.Contains(out, password) {
			t.Errorf("the password appears in the output of %s", out)
		}
	}
	for _, table := range []string{f.cfg.ControlTable, f.table("public.accounts").Target} {
		p := dynamodb.NewScanPaginator(f.db, &dynamodb.ScanInput{TableName: aws.String(table)})
		items := 0
		for p.HasMorePages() {
			page, err := p.NextPage(f.ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, item := range page.Items {
				items++
				if bytes.Contains([]byte(fmt.Sprint(item)), []byte(password)) {
					t.Errorf("the password is stored in %s: %v", table, item)
				}
			}
		}
		if items == 0 {
			t.Errorf("%s is empty: the run did not write it", table)
		}
	}
}
