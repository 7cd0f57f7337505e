package config

import (
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"tandem/shared/ident"
)

// settingNames is every name a setting goes by: its JSON key and its TANDEM_* variable.
func settingNames() []string {
	names := []string{"TANDEM_", "tables["}
	rt := reflect.TypeFor[Config]()
	for i := range rt.NumField() {
		if tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ","); tag != "" {
			names = append(names, tag)
		}
	}
	return names
}

// FuzzConfig loads a configuration file and TANDEM_* variables (env: NAME=value lines,
// read through a fake getenv) as Load does: it must never panic; an error must name the
// setting at fault (or the file, for JSON that does not parse); a configuration that
// validates must be one the processes can run with (positive intervals, every table's
// target a valid DynamoDB table name, its source read back the same).
func FuzzConfig(f *testing.F) {
	f.Add([]byte(`{"postgres_url": "postgres://x", "slot": "s1", "chunk_size": 10, "tombstone_ttl": "48h", "tables": [{"source": "public.\"a.b\"", "key_columns": ["k"]}]}`), "TANDEM_CHUNK_SIZE=250\nTANDEM_TABLES=orders, audit.events")
	f.Add([]byte(`{"tombstone_ttl": "forever"}`), "TANDEM_PG_URL=x")
	f.Add([]byte(`{"status_interval": "-1s", "lease_ttl": "1m"}`), "TANDEM_PG_URL=x")
	f.Add([]byte(`{"catalog_interval": "-5s"}`), "TANDEM_PG_URL=x")
	f.Add([]byte(`{"chunk_size": "ten"}`), "")
	f.Add([]byte(`{"unknown": 1}`), "")
	f.Add([]byte(`{`), "")
	f.Add([]byte(`{} {"slot": "x"}`), "TANDEM_PG_URL=x")
	f.Add([]byte(nil), "TANDEM_PG_SECRET_ARN=arn:x\nTANDEM_TABLE_PREFIX=p-\nTANDEM_TABLES=\"My Schema\".\"x \"\"y\"\"\",a")
	f.Add([]byte(nil), "TANDEM_PG_URL=x\nTANDEM_STATUS_INTERVAL=-1h\nTANDEM_LEASE_TTL=1s")
	f.Add([]byte(nil), "TANDEM_PG_URL=x\nTANDEM_MAX_IN_FLIGHT=abc\nTANDEM_CREATE_TABLES=maybe")
	f.Add([]byte(`{"postgres_url": "x", "table_prefix": "", "tables": [{"source": "a"}, {"source": "public.a"}]}`), "")
	f.Fuzz(func(t *testing.T, file []byte, env string) {
		vars := map[string]string{}
		for _, line := range strings.Split(env, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				vars[k] = v
			}
		}
		path := ""
		if file != nil {
			path = "tandem.json"
		}
		c, err := parse(path, file, func(k string) string { return vars[k] })
		if err != nil {
			checkConfigError(t, err)
			return
		}
		checkUsable(t, c)
	})
}

func checkConfigError(t *testing.T, err error) {
	t.Helper()
	// What is wrong with the file as a whole (not JSON, not an object, empty) names the file.
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	whole := errors.As(err, &typeErr) && typeErr.Field == ""
	if whole || errors.As(err, &syntax) || errors.Is(err, io.ErrUnexpectedEOF) || err.Error() == "config: tandem.json is empty (write {} for no settings)" ||
		strings.HasPrefix(err.Error(), "config: tandem.json: more after the settings' JSON object") {
		if !strings.HasPrefix(err.Error(), "config: tandem.json") {
			t.Fatalf("a JSON syntax error must name the file: %v", err)
		}
		return
	}
	names := settingNames()
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, "config: ") {
			t.Fatalf("error line %q does not start with config:", line)
		}
		named := strings.Contains(line, "unknown field")
		for _, n := range names {
			named = named || strings.Contains(line, n)
		}
		if !named {
			t.Fatalf("error line %q names no setting", line)
		}
	}
}

func checkUsable(t *testing.T, c *Config) {
	t.Helper()
	for name, d := range map[string]time.Duration{"tombstone_ttl": c.TombstoneTTL.Duration, "lease_ttl": c.LeaseTTL.Duration,
		"status_interval": c.StatusInterval.Duration, "catalog_interval": c.CatalogInterval.Duration} {
		if d <= 0 {
			t.Fatalf("valid configuration with %s %s: a ticker or TTL of it cannot run", name, d)
		}
	}
	for name, n := range map[string]int{"chunk_size": c.ChunkSize, "max_concurrency": c.MaxConcurrency, "range_rows": c.RangeRows,
		"max_ranges": c.MaxRanges, "snapshot_writers": c.SnapshotWriters, "stream_writers": c.StreamWriters, "max_in_flight": c.MaxInFlight,
		"sweep_segment_items": c.SweepSegmentItems, "max_sweep_segments": c.MaxSweepSegments, "sweep_writers": c.SweepWriters} {
		if n < 1 {
			t.Fatalf("valid configuration with %s %d", name, n)
		}
	}
	if c.CreateTables == nil {
		t.Fatal("valid configuration without create_tables")
	}
	for i, tc := range c.Tables {
		id, err := ident.Parse(tc.Source)
		if err != nil {
			t.Fatalf("tables[%d] %q validated but does not parse: %v", i, tc.Source, err)
		}
		got, ok := c.TableFor(id)
		if !ok {
			t.Fatalf("tables[%d] %q is not replicated", i, tc.Source)
		}
		if !dynamoTable.MatchString(got.Target) {
			t.Fatalf("tables[%d] %q: target %q is not a valid DynamoDB table name", i, tc.Source, got.Target)
		}
		if again, err := ident.Parse(got.Source); err != nil || again != id {
			t.Fatalf("tables[%d]: source %q reads back as %v, %v; want %v", i, got.Source, again, err, id)
		}
	}
}
