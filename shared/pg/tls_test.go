package pg_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/localstack/testenv"
	"tandem/shared/pg"
)

// authority is a certificate authority made for one test.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newAuthority(t *testing.T, name string) authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a server certificate for the DNS names, and its key, as PEM.
func (a authority) issue(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// TestVerifiedTLS runs a PostgreSQL with ssl=on and a certificate for "localhost" issued
// by a CA made here, and connects as Tandem does (a pool and a replication connection).
func TestVerifiedTLS(t *testing.T) {
	ca, other := newAuthority(t, "tandem test CA"), newAuthority(t, "some other CA")
	certPEM, keyPEM := ca.issue(t, "localhost")
	server, err := testenv.StartPostgres(testenv.PostgresOptions{
		ExtraConf: map[string]string{"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key"},
		Files:     map[string][]byte{"server.crt": certPEM, "server.key": keyPEM},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Stop()
	dir := t.TempDir()
	caFile, otherFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherFile, other.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	// The URL asks for no TLS at all: the Source's mode must win over it.
	byName := fmt.Sprintf("postgres://postgres@localhost:%d/postgres?sslmode=disable", server.Port)
	byIP := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", server.Port)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	connects := func(name string, src pg.Source) {
		t.Helper()
		pool, err := pg.Open(ctx, src, 2)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		defer pool.Close()
		var encrypted bool
		if err := pool.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&encrypted); err != nil || !encrypted {
			t.Fatalf("%s: connected, but encrypted=%v (%v)", name, encrypted, err)
		}
		conn, err := pg.ConnectReplication(ctx, src)
		if err != nil {
			t.Fatalf("%s: replication connection: %v", name, err)
		}
		conn.Close(ctx)
	}
	refused := func(name string, src pg.Source, want string) {
		t.Helper()
		if pool, err := pg.Open(ctx, src, 2); err == nil {
			pool.Close()
			t.Fatalf("%s: connected", name)
		} else if !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: error %q does not say %q", name, err, want)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if conn, err := pg.ConnectReplication(ctx, src); err == nil {
			conn.Close(ctx)
			t.Fatalf("%s: replication connection made", name)
		}
	}
	connects("verify-full, the right CA and host", pg.Source{URL: byName, SSLMode: "verify-full", SSLRootCert: caFile})
	connects("verify-ca, the right CA, another host name", pg.Source{URL: byIP, SSLMode: "verify-ca", SSLRootCert: caFile})
	connects("require", pg.Source{URL: byIP, SSLMode: "require"})
	refused("verify-full, a wrong CA", pg.Source{URL: byName, SSLMode: "verify-full", SSLRootCert: otherFile}, "certificate")
	refused("verify-ca, a wrong CA", pg.Source{URL: byIP, SSLMode: "verify-ca", SSLRootCert: otherFile}, "certificate")
	refused("verify-full, a host name the certificate does not name", pg.Source{URL: byIP, SSLMode: "verify-full", SSLRootCert: caFile}, "127.0.0.1")
}

// TestNoFallbackToPlainText: a server that refuses TLS gets nothing in plain text from a
// Source that asks for TLS, whatever the URL says. For each mode that promises TLS, and
// for a pool and a replication connection, a fake server sees a connection arrive, its
// first message be an SSLRequest, and, once it answers 'N' (no TLS here), nothing more:
// no StartupMessage, which would carry the user and database, then the password.
func TestNoFallbackToPlainText(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	connects := map[string]func(pg.Source) error{
		"pool": func(src pg.Source) error {
			pool, err := pg.Open(ctx, src, 1)
			if err == nil {
				pool.Close()
			}
			return err
		},
		"replication connection": func(src pg.Source) error {
			conn, err := pg.ConnectReplication(ctx, src)
			if err == nil {
				conn.Close(ctx)
			}
			return err
		},
	}
	for _, how := range []string{"pool", "replication connection"} {
		for _, mode := range []string{"require", "verify-ca", "verify-full"} {
			name := how + ", " + mode
			addr, attempts := refuseTLS(t)
			url := fmt.Sprintf("postgres://tandem:secret@%s/app?sslmode=prefer", addr)
			if err := connects[how](pg.Source{URL: url, SSLMode: mode}); err == nil {
				t.Fatalf("%s: connected to a server without TLS", name)
			} else if strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: the error shows the password: %v", name, err)
			} else {
				t.Logf("%s: %v", name, err)
			}
			all := attempts()
			if len(all) == 0 {
				t.Fatalf("%s: no connection reached the server", name)
			}
			for i, a := range all {
				if len(a.first) != 8 || binary.BigEndian.Uint32(a.first) != 8 || binary.BigEndian.Uint32(a.first[4:]) != 80877103 {
					t.Errorf("%s: connection %d: the first message is not an SSLRequest: % x", name, i+1, a.first)
				}
				if a.after > 0 {
					t.Errorf("%s: connection %d: %d bytes were sent in plain text after the server refused TLS", name, i+1, a.after)
				}
			}
		}
	}
}

// refused is what a client sent to refuseTLS's server on one connection.
type refused struct {
	first []byte // the first 8 bytes: an SSLRequest is length 8 and code 80877103
	after int    // bytes sent after the server's 'N'
}

// refuseTLS starts a server that answers 'N' to whatever first 8 bytes arrive and records
// what each connection sends. attempts stops it and returns every connection's record.
func refuseTLS(t *testing.T) (addr string, attempts func() []refused) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		got      []refused
		handlers sync.WaitGroup
	)
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handlers.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				r := refused{first: make([]byte, 8)}
				n, _ := io.ReadFull(c, r.first)
				r.first = r.first[:n]
				if n == 8 {
					_, _ = c.Write([]byte("N"))
					// Until the client hangs up, or a second: a StartupMessage would come at once.
					_ = c.SetReadDeadline(time.Now().Add(time.Second))
					r.after, _ = io.ReadFull(c, make([]byte, 1024))
				}
				mu.Lock()
				got = append(got, r)
				mu.Unlock()
			})
		}
	}()
	var once sync.Once
	attempts = func() []refused {
		once.Do(func() {
			ln.Close()
			<-accepting
			handlers.Wait()
		})
		mu.Lock()
		defer mu.Unlock()
		return got
	}
	t.Cleanup(func() { attempts() })
	return ln.Addr().String(), attempts
}
