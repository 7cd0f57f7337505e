package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, env map[string]string, file string) (*Config, error) {
	t.Helper()
	for _, k := range []string{"TANDEM_CONFIG_FILE", "TANDEM_PG_URL", "TANDEM_PG_SECRET_ARN", "TANDEM_TABLES", "TANDEM_CHUNK_SIZE", "TANDEM_CREATE_TABLES", "TANDEM_TOMBSTONE_TTL", "TANDEM_SLOT"} {
		t.Setenv(k, "")
	}
	if file != "" {
		path := filepath.Join(t.TempDir(), "tandem.json")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("TANDEM_CONFIG_FILE", path)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	return Load()
}

func TestDefaultsAndOverrides(t *testing.T) {
	c, err := load(t, map[string]string{"TANDEM_PG_URL": "postgres://x", "TANDEM_CHUNK_SIZE": "250", "TANDEM_TABLES": "orders, audit.events"},
		`{"slot": "from_file", "chunk_size": 10, "tombstone_ttl": "48h"}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Slot != "from_file" || c.ChunkSize != 250 || c.Publication != "tandem" || c.TombstoneTTL.Duration != 48*time.Hour || !*c.CreateTables {
		t.Fatalf("unexpected config: %+v", c)
	}
	if len(c.Tables) != 2 || c.Tables[1].Source != "audit.events" {
		t.Fatalf("tables: %+v", c.Tables)
	}
	tbl, ok := c.TableFor("public", "orders")
	if !ok || tbl.Target != "orders" {
		t.Fatalf("TableFor(orders) = %+v %v", tbl, ok)
	}
	if tbl, _ := c.TableFor("audit", "events"); tbl.Target != "audit.events" {
		t.Fatalf("schema-qualified default target = %q", tbl.Target)
	}
	if _, ok := c.TableFor("public", "other"); ok {
		t.Fatal("an unlisted table must not replicate when tables are listed")
	}
}

func TestEveryTableWhenNoneListed(t *testing.T) {
	c := &Config{PostgresURL: "x", TablePrefix: "prod-"}
	c.Defaults()
	if tbl, ok := c.TableFor("public", "a"); !ok || tbl.Target != "prod-a" {
		t.Fatalf("TableFor = %+v %v", tbl, ok)
	}
}

func TestValidationErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		env  map[string]string
		file string
		want []string
	}{
		{nil, "", []string{"postgres_url (TANDEM_PG_URL) or postgres_secret_arn (TANDEM_PG_SECRET_ARN) is required"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_CHUNK_SIZE": "lots"}, "", []string{"TANDEM_CHUNK_SIZE", "not an integer"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_CHUNK_SIZE": "0"}, "", []string{"TANDEM_CHUNK_SIZE=0 must be positive"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_SLOT": "Bad-Slot"}, "", []string{"slot", "Bad-Slot"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_TOMBSTONE_TTL": "5m"}, "", []string{"tombstone_ttl"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_CREATE_TABLES": "maybe"}, "", []string{"TANDEM_CREATE_TABLES"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"tables": [{"source": "a.b.c"}]}`, []string{"tables[0]", "a.b.c"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"tables": [{"source": "t"}, {"source": "public.t"}]}`, []string{"listed twice"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"tables": [{"source": "t", "target": "x"}]}`, []string{"target \"x\""}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"chunk_sise": 5}`, []string{"unknown field", "chunk_sise"}},
	}
	for _, c := range cases {
		_, err := load(t, c.env, c.file)
		if err == nil {
			t.Errorf("%v %s: no error, want %q", c.env, c.file, c.want)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v %s: error %q should mention %q", c.env, c.file, err, w)
			}
		}
	}
}
