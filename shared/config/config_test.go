package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tandem/shared/ident"
)

func load(t *testing.T, env map[string]string, file string) (*Config, error) {
	t.Helper()
	for _, k := range []string{"TANDEM_CONFIG_FILE", "TANDEM_PG_URL", "TANDEM_PG_SECRET_ARN", "TANDEM_PG_SSLMODE", "TANDEM_PG_SSLROOTCERT", "TANDEM_PG_IAM_AUTH", "TANDEM_TABLES", "TANDEM_CHUNK_SIZE", "TANDEM_CREATE_TABLES", "TANDEM_TOMBSTONE_TTL", "TANDEM_SLOT", "TANDEM_WARM_READ_UNITS", "TANDEM_WARM_WRITE_UNITS"} {
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
	tbl, ok := c.TableFor(ident.Table{Schema: "public", Name: "orders"})
	if !ok || tbl.Target != "orders" {
		t.Fatalf("TableFor(orders) = %+v %v", tbl, ok)
	}
	if tbl, _ := c.TableFor(ident.Table{Schema: "audit", Name: "events"}); tbl.Target != "audit.events" {
		t.Fatalf("schema-qualified default target = %q", tbl.Target)
	}
	if _, ok := c.TableFor(ident.Table{Schema: "public", Name: "other"}); ok {
		t.Fatal("an unlisted table must not replicate when tables are listed")
	}
}

// TestWarmThroughput: created target tables get warm throughput only when it is set, each
// of its two values on its own.
func TestWarmThroughput(t *testing.T) {
	c, err := load(t, map[string]string{"TANDEM_PG_URL": "x", "TANDEM_WARM_WRITE_UNITS": "40000"}, `{"warm_read_units_per_second": 50000}`)
	if err != nil {
		t.Fatal(err)
	}
	w := c.WarmThroughput()
	if w == nil || w.ReadUnitsPerSecond == nil || *w.ReadUnitsPerSecond != 50000 || w.WriteUnitsPerSecond == nil || *w.WriteUnitsPerSecond != 40000 {
		t.Fatalf("warm throughput %+v, want 50000 read and 40000 write units per second", w)
	}
	c, err = load(t, map[string]string{"TANDEM_PG_URL": "x", "TANDEM_WARM_WRITE_UNITS": "40000"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if w := c.WarmThroughput(); w == nil || w.ReadUnitsPerSecond != nil || *w.WriteUnitsPerSecond != 40000 {
		t.Fatalf("write units only: %+v", w)
	}
	c, err = load(t, map[string]string{"TANDEM_PG_URL": "x"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if w := c.WarmThroughput(); w != nil {
		t.Fatalf("unset warm throughput must be omitted, got %+v", w)
	}
}

func TestEveryTableWhenNoneListed(t *testing.T) {
	c := &Config{PostgresURL: "x", TablePrefix: "prod-"}
	c.Defaults()
	if tbl, ok := c.TableFor(ident.Table{Schema: "public", Name: "a"}); !ok || tbl.Target != "prod-a" {
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
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_TABLES": `orders, public."open`}, "", []string{"TANDEM_TABLES", `public.\"open`, "unterminated quote"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"tables": [{"source": "my table"}]}`, []string{"tables[0]", `"my table"`, "double-quoting"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"tables": [{"source": "\"a\".b"}, {"source": "a.\"b\""}]}`, []string{"listed twice"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"table_prefix": "my prefix "}`, []string{"table_prefix"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"chunk_sise": 5}`, []string{"unknown field", "chunk_sise"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_WARM_WRITE_UNITS": "0"}, "", []string{"TANDEM_WARM_WRITE_UNITS", "positive"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"warm_read_units_per_second": -5}`, []string{"warm_read_units_per_second", "positive"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"max_sweep_segments": -1}`, []string{"max_sweep_segments"}},
		{map[string]string{"TANDEM_PG_URL": "x"}, `{"slot": "a"} {"slot": "b"}`, []string{"more after the settings' JSON object"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_PG_SSLMODE": "verify"}, "", []string{"postgres_sslmode (TANDEM_PG_SSLMODE)", `"verify"`, "verify-full"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_PG_IAM_AUTH": "yes please"}, "", []string{"TANDEM_PG_IAM_AUTH"}},
		{map[string]string{"TANDEM_PG_URL": "x", "TANDEM_PG_IAM_AUTH": "true", "TANDEM_PG_SSLMODE": "prefer"}, "", []string{"postgres_iam_auth", "require, verify-ca or verify-full"}},
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

func TestQuotedTableNames(t *testing.T) {
	c, err := load(t, map[string]string{"TANDEM_PG_URL": "x", "TANDEM_TABLES": `"Odd, ""Schema"""."a.b c", orders,"x,y"`}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []ident.Table{{Schema: `Odd, "Schema"`, Name: "a.b c"}, {Schema: "public", Name: "orders"}, {Schema: "public", Name: "x,y"}}
	got := c.SourceTables()
	if len(got) != len(want) {
		t.Fatalf("tables = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("tables[%d] = %#v, want %#v", i, got[i], want[i])
		}
		if tbl, ok := c.TableFor(want[i]); !ok || tbl.Source != want[i].String() {
			t.Errorf("TableFor(%s) = %+v, %v", want[i], tbl, ok)
		}
	}
	if _, ok := c.TableFor(ident.Table{Schema: "public", Name: "x"}); ok {
		t.Error("public.x is not configured")
	}
}

func TestDefaultTargets(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		id     ident.Table
		want   string
	}{
		{"", ident.Table{Schema: "public", Name: "orders"}, "orders"},
		{"prod-", ident.Table{Schema: "public", Name: "Orders_2"}, "prod-Orders_2"},
		{"", ident.Table{Schema: "audit", Name: "events"}, "audit.events"},
		{"p.", ident.Table{Schema: "audit", Name: "events"}, "p.audit.events"},
	} {
		if got := DefaultTarget(tc.prefix, tc.id); got != tc.want {
			t.Errorf("DefaultTarget(%q, %s) = %q, want %q", tc.prefix, tc.id, got, tc.want)
		}
	}
	// Names DynamoDB refuses, or that would collide once cleaned, get a valid name with a
	// hash of the exact identity; every pair differs.
	ids := []ident.Table{
		{Schema: "public", Name: "orders"}, {Schema: "public", Name: "a b"}, {Schema: "public", Name: "a_b"},
		{Schema: "public", Name: "a.b"}, {Schema: "a", Name: "b"}, {Schema: "a.b", Name: "c"}, {Schema: "a", Name: "b.c"},
		{Schema: "public", Name: "ab"}, {Schema: "public", Name: "ab_"}, {Schema: "public", Name: "über"}, {Schema: "public", Name: "_ber"},
		{Schema: "s p", Name: `Odd "Table".v1 #[x]:ü`}, {Schema: "s_p", Name: `Odd "Table".v1 #[x]:ü`},
		{Schema: "public", Name: strings.Repeat("x", 63)}, {Schema: strings.Repeat("ß", 31), Name: strings.Repeat("é", 31)},
		{Schema: "public", Name: "public.ab"}, {Schema: "public", Name: "x"},
	}
	for _, prefix := range []string{"", "t_", strings.Repeat("p", 200)} {
		seen := map[string]ident.Table{}
		for _, id := range ids {
			name := DefaultTarget(prefix, id)
			if !dynamoTable.MatchString(name) {
				t.Errorf("DefaultTarget(%q, %s) = %q is not a valid DynamoDB table name", prefix, id, name)
			}
			if other, dup := seen[name]; dup {
				t.Errorf("DefaultTarget(%q, ...) = %q for both %s and %s", prefix, name, other, id)
			}
			seen[name] = id
			if again := DefaultTarget(prefix, id); again != name {
				t.Errorf("DefaultTarget is not deterministic: %q then %q", name, again)
			}
		}
	}
	if got := DefaultTarget("", ident.Table{Schema: "public", Name: "a b"}); !strings.HasPrefix(got, "public.a_b.") {
		t.Errorf("cleaned name = %q, want public.a_b.<hash>", got)
	}
}

// TestBadDurations: a duration that does not parse names its setting, and intervals that
// the streamer ticks on must be positive.
func TestBadDurations(t *testing.T) {
	_, err := load(t, map[string]string{"TANDEM_PG_URL": "x"}, `{"tombstone_ttl": "forever"}`)
	if err == nil || !strings.Contains(err.Error(), "tombstone_ttl") || !strings.Contains(err.Error(), `"forever"`) {
		t.Fatalf("bad tombstone_ttl: %v", err)
	}
	_, err = parse("", nil, env{"TANDEM_PG_URL": "x", "TANDEM_STATUS_INTERVAL": "-1s", "TANDEM_CATALOG_INTERVAL": "-1s"}.get)
	if err == nil || !strings.Contains(err.Error(), "config: status_interval -1s must be positive") || !strings.Contains(err.Error(), "config: catalog_interval -1s must be positive") {
		t.Fatalf("negative intervals: %v", err)
	}
}

type env map[string]string

func (e env) get(k string) string { return e[k] }

// TestIAMAuthNeedsTLS: IAM authentication is refused unless the TLS mode connections
// actually use never falls back to plain text, whether that mode is set in
// postgres_sslmode, in the URL, by PGSSLMODE, or left to pgx's default (prefer).
func TestIAMAuthNeedsTLS(t *testing.T) {
	const iam = "TANDEM_PG_IAM_AUTH"
	cases := []struct {
		env  map[string]string
		want []string // nil: accepted
	}{
		{map[string]string{"TANDEM_PG_URL": "postgres://u@db/app", iam: "true"},
			[]string{"postgres_iam_auth", `sslmode "prefer"`, "pgx's default", "set postgres_sslmode (TANDEM_PG_SSLMODE) to require, verify-ca or verify-full"}},
		{map[string]string{"TANDEM_PG_URL": "postgres://u@db/app?sslmode=allow", iam: "true"}, []string{`sslmode "allow"`, "the connection URL's sslmode"}},
		{map[string]string{"TANDEM_PG_URL": "host=db user=u sslmode=disable", iam: "true"}, []string{`sslmode "disable"`, "the connection URL's sslmode"}},
		{map[string]string{"TANDEM_PG_URL": "postgres://u@db/app?sslmode=require", iam: "true", "TANDEM_PG_SSLMODE": "prefer"}, []string{`sslmode "prefer"`, "the configured sslmode"}},
		{map[string]string{"TANDEM_PG_URL": "postgres://u@db/app", iam: "true", "PGSSLMODE": "disable"}, []string{`sslmode "disable"`, "PGSSLMODE"}},
		// A secret's URL is read only when connecting: without postgres_sslmode the mode is unknown.
		{map[string]string{"TANDEM_PG_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:db", iam: "true"}, []string{`sslmode "prefer"`, "postgres_sslmode"}},

		{map[string]string{"TANDEM_PG_URL": "postgres://u@db/app?sslmode=verify-full", iam: "true"}, nil},
		{map[string]string{"TANDEM_PG_URL": "postgres://u@db/app?sslmode=disable", iam: "true", "TANDEM_PG_SSLMODE": "require"}, nil},
		{map[string]string{"TANDEM_PG_URL": "postgres://u@db/app", iam: "true", "PGSSLMODE": "verify-ca"}, nil},
		{map[string]string{"TANDEM_PG_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:1:secret:db", iam: "true", "TANDEM_PG_SSLMODE": "verify-full"}, nil},
		{map[string]string{"TANDEM_PG_URL": "postgres://u@db/app"}, nil}, // no IAM: prefer is allowed
	}
	for _, c := range cases {
		t.Setenv("PGSSLMODE", "")
		_, err := load(t, c.env, "")
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%v: %v", c.env, err)
		case c.want != nil && err == nil:
			t.Errorf("%v: accepted, want an error mentioning %q", c.env, c.want)
		case c.want != nil:
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: error %q should mention %q", c.env, err, w)
				}
			}
		}
	}
}

// TestDeploymentDefaults: a configuration without table_prefix gets template.yaml's
// default TablePrefix (read from the template itself, so the two cannot drift apart);
// one with a prefix keeps it.
func TestDeploymentDefaults(t *testing.T) {
	tpl, err := os.ReadFile(filepath.Join("..", "..", "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^  TablePrefix:\n(?:    .*\n)*?    Default: (\S+)\n`).FindSubmatch(tpl)
	if m == nil {
		t.Fatal("template.yaml has no TablePrefix parameter with a Default")
	}
	if string(m[1]) != DeployedTablePrefix {
		t.Errorf("template.yaml's TablePrefix defaults to %s, DeployedTablePrefix is %s", m[1], DeployedTablePrefix)
	}
	c := &Config{}
	c.DeploymentDefaults()
	id := ident.Table{Schema: "public", Name: "orders"}
	if got, _ := c.TableFor(id); got.Target != DeployedTablePrefix+"orders" {
		t.Errorf("no table_prefix, deployed: target %s, want %sorders", got.Target, DeployedTablePrefix)
	}
	c = &Config{TablePrefix: "prod_"}
	c.DeploymentDefaults()
	if got, _ := c.TableFor(id); got.Target != "prod_orders" {
		t.Errorf("table_prefix prod_, deployed: target %s, want prod_orders", got.Target)
	}
}
