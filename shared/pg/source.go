package pg

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Source is how Tandem connects to the source database: the connection string, the TLS
// mode, and where each new connection's password comes from.
type Source struct {
	// URL is a libpq/pgx connection string (a postgres:// URL or keyword=value pairs).
	URL string
	// SSLMode and SSLRootCert, when set, replace the connection string's sslmode and
	// sslrootcert (libpq's meanings: verify-full checks the server's certificate against
	// the CA bundle SSLRootCert and its host name; require and stronger never fall back to
	// plain text).
	SSLMode, SSLRootCert string
	// Credentials, when set, gives every new connection its password, replacing the
	// connection string's (an IAM token made for that connection, or the database
	// secret's password), and is told of every login the server refuses.
	Credentials Credentials
}

// Credentials supplies the passwords of new connections. One value serves every
// connection a process makes (its pools and its replication connections), so that a
// refusal met by one connection spares the others the stale password.
type Credentials interface {
	// Password is the password for a new connection.
	Password(ctx context.Context) (string, error)
	// Refused is told the password of a login the server refused (28P01, 28000): a
	// rotated secret's old password, an expired token. Password must not hand it out
	// again before reading its source anew, so that a rotation costs one refused login
	// per connection attempt already under way, not every attempt until a cache expires.
	Refused(password string)
}

// SSLModes are the TLS modes a Source takes, weakest first.
var SSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// connString is s.URL with s's TLS settings applied.
func (s Source) connString() (string, error) {
	if s.SSLMode == "" && s.SSLRootCert == "" {
		return s.URL, nil
	}
	set := map[string]string{}
	if s.SSLMode != "" {
		set["sslmode"] = s.SSLMode
	}
	if s.SSLRootCert != "" {
		set["sslrootcert"] = s.SSLRootCert
	}
	if strings.HasPrefix(s.URL, "postgres://") || strings.HasPrefix(s.URL, "postgresql://") {
		u, err := url.Parse(s.URL)
		if err != nil {
			return "", fmt.Errorf("postgres: invalid connection URL: %s", redactedURLError(err))
		}
		q := u.Query()
		for k, v := range set {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	// keyword=value: a later setting of a keyword wins.
	out := s.URL
	for _, k := range []string{"sslmode", "sslrootcert"} {
		if v, ok := set[k]; ok {
			out += " " + k + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
		}
	}
	return out, nil
}

// redactedURLError keeps a URL parse error's reason without the URL, which may hold a
// password.
func redactedURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "malformed"
}

// parse is pgconn.ParseConfig of s's connection string. A parse error never repeats the
// string: it may hold a password.
func (s Source) parse() (*pgconn.Config, error) {
	cs, err := s.connString()
	if err != nil {
		return nil, err
	}
	cfg, err := pgconn.ParseConfig(cs)
	if err != nil {
		return nil, fmt.Errorf("postgres: invalid connection string: %s", parseReason(err))
	}
	return cfg, nil
}

// parseReason is the reason of a pgconn parse error, without the connection string.
func parseReason(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if pe.Unwrap() != nil {
			return pe.Unwrap().Error()
		}
		return strings.TrimPrefix(pe.Error(), "cannot parse `"+pe.ConnString+"`: ")
	}
	return "malformed"
}

// IsAuthFailure reports whether err is the server refusing the connection's credentials
// (a wrong or rotated password, an expired IAM token).
func IsAuthFailure(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "28P01" || pe.Code == "28000")
}

// TLSMode is the sslmode a connection made from s uses: s.SSLMode, else the connection
// string's, else PGSSLMODE's, else pgx's default, prefer (TLS if the server offers it,
// else plain text).
func (s Source) TLSMode() string {
	mode, _ := s.TLSModeOrigin()
	return mode
}

// TLSModeOrigin is TLSMode and which setting it comes from, for messages that tell the
// operator what to change.
func (s Source) TLSModeOrigin() (mode, origin string) {
	if s.SSLMode != "" {
		return s.SSLMode, "the configured sslmode"
	}
	if strings.HasPrefix(s.URL, "postgres://") || strings.HasPrefix(s.URL, "postgresql://") {
		if u, err := url.Parse(s.URL); err == nil {
			mode = u.Query().Get("sslmode")
		}
	} else {
		for _, f := range strings.Fields(s.URL) {
			if v, ok := strings.CutPrefix(f, "sslmode="); ok {
				mode = strings.Trim(v, "'")
			}
		}
	}
	if mode != "" {
		return mode, "the connection URL's sslmode"
	}
	if mode = os.Getenv("PGSSLMODE"); mode != "" {
		return mode, "PGSSLMODE"
	}
	return "prefer", "pgx's default, no sslmode being set"
}

// NoPlainText reports whether every connection made from s is encrypted: its TLS mode is
// require, verify-ca or verify-full, which never fall back to plain text.
func (s Source) NoPlainText() bool {
	return slices.Contains(SSLModes[slices.Index(SSLModes, "require"):], s.TLSMode())
}

// Endpoint describes where s connects, without the password: user@host:port/database.
func (s Source) Endpoint() string {
	cfg, err := s.parse()
	if err != nil {
		return "(an invalid connection string)"
	}
	return cfg.User + "@" + cfg.Host + ":" + strconv.Itoa(int(cfg.Port)) + "/" + cfg.Database
}
