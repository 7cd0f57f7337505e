package pipeline

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/jackc/pgx/v5/pgproto3"

	"tandem/shared/config"
	"tandem/shared/pg"
)

// With IAM authentication every new connection gets its own token for the URL's user and
// endpoint, signed for rds-db:connect; nothing of the configured URL's password is used.
// A fake PostgreSQL (TLS, then a cleartext password exchange) records the password of
// each login: it refuses the first after holding it into the next second, so the pool's
// retry signs at a later time and must bring a new token, and accepts a valid token.
func TestIAMTokenPerConnection(t *testing.T) {
	server := startPasswordServer(t)
	endpoint := server.addr
	cfg := &config.Config{PostgresURL: "postgres://replicator:unused@" + endpoint + "/app", PostgresIAMAuth: true, PostgresSSLMode: "require"}
	awsCfg := aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secretkeyexample", "")}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := SourceFor(ctx, cfg, awsCfg)
	if err != nil {
		t.Fatal(err)
	}
	if src.Credentials == nil {
		t.Fatal("no password source for IAM authentication")
	}
	server.check = func(token string) error { return checkToken(token, endpoint) }
	server.refuseFirst = true

	pool, err := pg.Open(ctx, src, 2)
	if err != nil {
		t.Fatalf("the pool did not log in with a token: %v", err)
	}
	pool.Close()
	conn, err := pg.ConnectReplication(ctx, src)
	if err != nil {
		t.Fatalf("the replication connection did not log in with a token: %v", err)
	}
	conn.Close(ctx)

	logins := server.passwords()
	if len(logins) != 3 {
		t.Fatalf("%d logins, want 3 (the pool's refused one, its retry, the replication connection)", len(logins))
	}
	for i, token := range logins {
		if err := checkToken(token, endpoint); err != nil {
			t.Errorf("login %d: %v", i+1, err)
		}
	}
	if logins[0] == logins[1] {
		t.Fatalf("two connections a second apart got the same token: %s", logins[0])
	}
	if _, err := SourceFor(ctx, cfg, aws.Config{}); err == nil || !strings.Contains(err.Error(), "region") {
		t.Fatalf("no region: %v", err)
	}
}

// checkToken says why token is not an rds-db:connect token for replicator at endpoint in
// eu-west-1 (nil if it is one).
func checkToken(token, endpoint string) error {
	u, err := url.Parse("https://" + token)
	if err != nil {
		return fmt.Errorf("token %q: %v", token, err)
	}
	q := u.Query()
	if u.Host != endpoint || q.Get("Action") != "connect" || q.Get("DBUser") != "replicator" ||
		!strings.Contains(q.Get("X-Amz-Credential"), "/eu-west-1/rds-db/") || q.Get("X-Amz-Signature") == "" || q.Get("X-Amz-Expires") != "900" {
		return fmt.Errorf("not an rds-db:connect token for replicator@%s in eu-west-1: %s", endpoint, token)
	}
	if strings.Contains(token, "unused") {
		return errors.New("the token carries the URL's password")
	}
	return nil
}

// passwordServer is a fake PostgreSQL that takes TLS (any certificate will do for
// sslmode=require), asks for a cleartext password and records it; it answers simple
// queries (a ping) with nothing.
type passwordServer struct {
	addr        string
	check       func(password string) error // refuse the login when it returns an error
	refuseFirst bool                        // refuse the first login, after holding it into the next second
	mu          sync.Mutex
	logins      []string
}

func (s *passwordServer) passwords() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

func startPasswordServer(t *testing.T) *passwordServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &passwordServer{addr: ln.Addr().String()}
	cert := selfSigned(t)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				if err := s.serve(c, cert); err != nil {
					t.Logf("fake server: %v", err)
				}
			})
		}
	})
	return s
}

func (s *passwordServer) serve(c net.Conn, cert tls.Certificate) error {
	if msg, err := pgproto3.NewBackend(c, c).ReceiveStartupMessage(); err != nil {
		return err
	} else if _, ok := msg.(*pgproto3.SSLRequest); !ok {
		return fmt.Errorf("first message %T, want an SSLRequest", msg)
	}
	if _, err := c.Write([]byte("S")); err != nil {
		return err
	}
	tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
	be := pgproto3.NewBackend(tc, tc)
	if _, err := be.ReceiveStartupMessage(); err != nil {
		return err
	}
	be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	pm, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return fmt.Errorf("got %T, want a password", msg)
	}
	s.mu.Lock()
	s.logins = append(s.logins, pm.Password)
	first := len(s.logins) == 1
	s.mu.Unlock()
	var refuse error
	if first && s.refuseFirst {
		// Tokens are signed to the second: the retry must come in a later one.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1100 * time.Millisecond)))
		refuse = errors.New("the first login is refused")
	} else if s.check != nil {
		refuse = s.check(pm.Password)
	}
	if refuse != nil {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28P01", Message: "password authentication failed: " + refuse.Error()})
		return be.Flush()
	}
	be.Send(&pgproto3.AuthenticationOk{})
	be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: "16.0"})
	be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	for {
		if err := be.Flush(); err != nil {
			return err
		}
		msg, err := be.Receive()
		if err != nil {
			return nil // the client hung up
		}
		switch msg.(type) {
		case *pgproto3.Query:
			be.Send(&pgproto3.EmptyQueryResponse{})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Terminate:
			return nil
		default:
			return fmt.Errorf("unexpected %T", msg)
		}
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
