package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/rds/auth"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5/pgconn"

	"tandem/shared/config"
	"tandem/shared/pg"
)

// secretMaxAge is how long a password read from the database secret is used for new
// connections before the secret is read again, when no login was refused meanwhile: a
// refused login has the next connection read it at once (secretPassword.Refused).
const secretMaxAge = time.Minute

// SourceFor is how cfg says to connect to the source database: its URL (or the database
// secret's), TLS mode and CA bundle, and the passwords of new connections (an IAM token
// per connection, or the secret's password, read again after a refused login). Nothing
// of it holds a password that a log line or an error could print, except Source.URL when
// the configuration itself carries one.
func SourceFor(ctx context.Context, cfg *config.Config, awsCfg aws.Config) (pg.Source, error) {
	src := pg.Source{URL: cfg.PostgresURL, SSLMode: cfg.PostgresSSLMode, SSLRootCert: cfg.PostgresSSLRootCert}
	if src.URL == "" {
		secret := &secretPassword{read: func(ctx context.Context) (string, error) {
			return postgresURLFromSecret(ctx, awsCfg, cfg.PostgresSecretARN)
		}}
		full, err := secret.refresh(ctx)
		if err != nil {
			return src, err
		}
		src.URL = withoutPassword(full)
		src.Credentials = secret
	}
	if cfg.PostgresIAMAuth {
		// Validate checked the configuration's URL; a secret's is known only now.
		if err := cfg.IAMAuthTLSError(src.URL); err != nil {
			return src, err
		}
		pc, err := pgconn.ParseConfig(src.URL)
		if err != nil {
			return src, fmt.Errorf("postgres_iam_auth: the connection string does not parse")
		}
		if awsCfg.Region == "" {
			return src, fmt.Errorf("postgres_iam_auth: no AWS region is configured to sign the IAM token with")
		}
		src.Credentials = &iamTokens{endpoint: fmt.Sprintf("%s:%d", pc.Host, pc.Port), user: pc.User, aws: awsCfg}
	}
	return src, nil
}

// iamTokens makes an RDS IAM authentication token per connection. A token is valid for
// 15 minutes and only needed to log in, so one made per connection is always fresh and
// nothing is cached.
type iamTokens struct {
	endpoint, user string
	aws            aws.Config
}

func (t *iamTokens) Password(ctx context.Context) (string, error) {
	token, err := auth.BuildAuthToken(ctx, t.endpoint, t.aws.Region, t.user, t.aws.Credentials)
	if err != nil {
		return "", fmt.Errorf("making the IAM authentication token for %s@%s: %w", t.user, t.endpoint, err)
	}
	return token, nil
}

// Refused needs nothing done: the next connection gets a new token anyway.
func (t *iamTokens) Refused(string) {}

// secretPassword is the password of the database secret, read again when it is older
// than secretMaxAge or a login with it was refused.
type secretPassword struct {
	read func(ctx context.Context) (string, error)
	// reading serialises reads of the secret, so the connections refused together after
	// a rotation cause one read, not one each.
	reading sync.Mutex
	mu      struct {
		sync.Mutex
		password string
		readAt   time.Time
		stale    bool // a login with password was refused
	}
}

// Password is the cached password, or the secret's as read now when the cached one is
// stale or old.
func (s *secretPassword) Password(ctx context.Context) (string, error) {
	if pw, ok := s.cached(); ok {
		return pw, nil
	}
	s.reading.Lock()
	defer s.reading.Unlock()
	if pw, ok := s.cached(); ok {
		return pw, nil // another connection read it while this one waited
	}
	full, err := s.refresh(ctx)
	if err != nil {
		return "", err
	}
	return passwordOf(full), nil
}

// Refused marks password stale when it is the cached one. A refusal of a password
// already replaced says nothing of the new one: connections that set out with the old
// one before the secret was read again are refused too.
func (s *secretPassword) Refused(password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if password == s.mu.password {
		s.mu.stale = true
	}
}

func (s *secretPassword) cached() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.password, !s.mu.stale && time.Since(s.mu.readAt) < secretMaxAge
}

// refresh reads the secret and returns its connection URL.
func (s *secretPassword) refresh(ctx context.Context) (string, error) {
	full, err := s.read(ctx)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	s.mu.password, s.mu.readAt, s.mu.stale = passwordOf(full), time.Now(), false
	s.mu.Unlock()
	return full, nil
}

// passwordOf is the password of a connection string ("" when it has none).
func passwordOf(connString string) string {
	pc, err := pgconn.ParseConfig(connString)
	if err != nil {
		return ""
	}
	return pc.Password
}

// withoutPassword is a postgres:// URL without its password (other forms are returned as
// they are: the secret's URL is built as a postgres:// URL or given as one).
func withoutPassword(connString string) string {
	u, err := url.Parse(connString)
	if err != nil || u.User == nil {
		return connString
	}
	u.User = url.User(u.User.Username())
	return u.String()
}

// postgresURLFromSecret reads the database connection from Secrets Manager: either a URL
// string, or the JSON secret RDS manages (host, port, username, password, dbname).
func postgresURLFromSecret(ctx context.Context, cfg aws.Config, arn string) (string, error) {
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: &arn})
	if err != nil {
		return "", fmt.Errorf("reading database secret %s: %w", arn, err)
	}
	value := aws.ToString(out.SecretString)
	if strings.HasPrefix(value, "postgres://") || strings.HasPrefix(value, "postgresql://") {
		return value, nil
	}
	var s struct {
		Host     string          `json:"host"`
		Port     json.RawMessage `json:"port"`
		Username string          `json:"username"`
		Password string          `json:"password"`
		DBName   string          `json:"dbname"`
		URL      string          `json:"url"`
	}
	if err := json.Unmarshal([]byte(value), &s); err != nil {
		// Not the JSON error: it quotes the secret.
		return "", fmt.Errorf("database secret %s is neither a postgres:// URL nor JSON with host, port, username, password, dbname", arn)
	}
	if s.URL != "" {
		return s.URL, nil
	}
	if s.Host == "" || s.Username == "" {
		return "", fmt.Errorf("database secret %s lacks host or username", arn)
	}
	port := strings.Trim(string(s.Port), `"`)
	if _, err := strconv.Atoi(port); err != nil {
		port = "5432"
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(s.Username, s.Password), Host: s.Host + ":" + port, Path: "/" + s.DBName}
	return u.String(), nil
}
