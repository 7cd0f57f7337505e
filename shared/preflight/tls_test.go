package preflight

import (
	"strings"
	"testing"

	"tandem/shared/pg"
)

// Anything weaker than verify-full is a warning across a network, and fine on this machine.
func TestTLSFinding(t *testing.T) {
	enc := pg.TLS{Encrypted: true, Version: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384"}
	cases := []struct {
		mode  string
		tls   pg.TLS
		local bool
		level Level
		says  string
	}{
		{"verify-full", enc, false, OK, "host name are verified"},
		{"verify-ca", enc, false, Warn, "not its host name"},
		{"require", enc, false, Warn, "not verified"},
		{"prefer", pg.TLS{}, false, Warn, "NOT encrypted"},
		{"disable", pg.TLS{}, false, Warn, "NOT encrypted"},
		{"require", enc, true, OK, "not verified"},
		{"disable", pg.TLS{}, true, OK, "a local connection"},
	}
	for _, c := range cases {
		level, msg := tlsFinding(c.mode, c.tls, c.local, "db.example.com")
		if level != c.level || !strings.Contains(msg, c.says) || !strings.Contains(msg, c.mode) {
			t.Errorf("%s encrypted=%v local=%v: %s %q, want %s saying %q", c.mode, c.tls.Encrypted, c.local, level, msg, c.level, c.says)
		}
	}
}
