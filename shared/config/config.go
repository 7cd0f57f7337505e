// Package config loads and validates Tandem's settings, shared by the streamer and every
// Lambda handler so that all of them agree on slot, publication, tables and targets.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/ident"
	"tandem/shared/pg"
)

// Config is the whole of Tandem's configuration. Zero values are filled by Defaults.
type Config struct {
	// PostgresURL is a libpq/pgx connection string for the source database.
	PostgresURL string `json:"postgres_url"`
	// PostgresSecretARN names a Secrets Manager secret holding the connection instead:
	// an RDS-style JSON secret (host, port, username, password, dbname) or a URL string.
	PostgresSecretARN string `json:"postgres_secret_arn"`
	// PostgresSSLMode, when set, is the TLS mode of every connection to the source, over
	// the URL's own sslmode (libpq's modes: verify-full checks the server's certificate
	// and host name; require and stronger never fall back to plain text).
	PostgresSSLMode string `json:"postgres_sslmode,omitempty"`
	// PostgresSSLRootCert is the CA bundle (a PEM file) verify-full and verify-ca check
	// the server's certificate against; empty: the system's roots.
	PostgresSSLRootCert string `json:"postgres_sslrootcert,omitempty"`
	// PostgresIAMAuth authenticates every connection with an RDS IAM token for the URL's
	// (or the secret's) user, made per connection, instead of a password.
	PostgresIAMAuth bool `json:"postgres_iam_auth,omitempty"`
	// Publication and Slot name the logical replication objects Tandem owns.
	Publication string `json:"publication"`
	Slot        string `json:"slot"`
	// ControlTable is the DynamoDB table holding snapshot progress, checkpoints and leases.
	ControlTable string `json:"control_table"`
	// StateMachineARN is the deployed snapshot state machine, for the tandem command
	// (status shows its executions; resnapshot starts one). The handlers do not use it.
	StateMachineARN string `json:"state_machine_arn,omitempty"`
	// TablePrefix is prepended to default target table names (see DefaultTarget).
	TablePrefix string `json:"table_prefix"`
	// Tables restricts and customises replication; empty means every table of the publication.
	Tables []Table `json:"tables"`
	// ChunkSize is the number of rows one snapshot chunk reads in one short transaction.
	ChunkSize int `json:"chunk_size"`
	// MaxConcurrency is how many key ranges the state machine copies at once, over all
	// tables: the bound on snapshot workers reading the primary at the same time.
	MaxConcurrency int `json:"max_concurrency"`
	// RangeRows is the number of rows one key range of a table is sized for: a table of
	// about N rows (by its statistics) is split into N/RangeRows ranges copied in parallel.
	RangeRows int `json:"range_rows"`
	// MaxRanges is the most ranges one table is split into.
	MaxRanges int `json:"max_ranges"`
	// SnapshotWriters is how many DynamoDB writes one snapshot keeps in flight.
	SnapshotWriters int `json:"snapshot_writers"`
	// StreamWriters is how many DynamoDB writes the streamer keeps in flight (one key is
	// always applied in WAL order by a single writer).
	StreamWriters int `json:"stream_writers"`
	// MaxInFlight bounds the decoded changes the streamer holds, whatever the transaction size.
	MaxInFlight int `json:"max_in_flight"`
	// CreateTables makes plan create missing target tables (on-demand capacity).
	CreateTables *bool `json:"create_tables"`
	// TombstoneTTL is the DynamoDB TTL backstop put on tombstones.
	TombstoneTTL Duration `json:"tombstone_ttl"`
	// LeaseTTL is how long the streamer lease outlives a streamer that stopped renewing it
	// (a killed task); a successor waits at most that long.
	LeaseTTL Duration `json:"lease_ttl"`
	// CatalogInterval is how often the streamer compares the catalog with what it
	// replicates: DDL is not in the logical stream, so a schema change, or a table added to
	// the publication, would otherwise only be noticed with the table's next change.
	CatalogInterval Duration `json:"catalog_interval"`
	// StatusInterval is how often the streamer reports to PostgreSQL and the control table.
	StatusInterval Duration `json:"status_interval"`
	// WarmReadUnits and WarmWriteUnits, when set, are the warm throughput (read and write
	// units per second a table can serve at once) of target tables Tandem creates, so a
	// large snapshot does not start against a cold on-demand table. Zero: DynamoDB's default.
	WarmReadUnits  int64 `json:"warm_read_units_per_second"`
	WarmWriteUnits int64 `json:"warm_write_units_per_second"`
	// SweepSegmentItems is how many items (by DynamoDB's estimate) one parallel-scan
	// segment of a sweep or a TRUNCATE covers; MaxSweepSegments bounds the segments of a table.
	SweepSegmentItems int `json:"sweep_segment_items"`
	MaxSweepSegments  int `json:"max_sweep_segments"`
	// SweepWriters bounds the deletes and tombstones one process's sweeps and TRUNCATE
	// removals keep in flight together (all their segments): in the streamer, what
	// background removal may take from the stream's DynamoDB throughput.
	SweepWriters int `json:"sweep_writers"`
}

// Table configures one source table.
type Table struct {
	// Source is "schema.table", or "table" for the public schema, in the form package
	// ident reads: a part holding a dot, a space, a comma or a quote is double-quoted
	// (public."a.b", "My Schema"."x ""y"""); unquoted parts are taken literally.
	Source string `json:"source"`
	// Target is the DynamoDB table name; default DefaultTarget.
	Target string `json:"target"`
	// KeyColumns replaces the primary key as the item key (required for tables without one).
	KeyColumns []string `json:"key_columns"`
}

// Duration reads "90s"/"24h" in JSON.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"24h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		// As a type error, encoding/json names the field: "... Go struct field Config.lease_ttl ...".
		return &json.UnmarshalTypeError{Value: fmt.Sprintf("string %q (%v)", s, err), Type: reflect.TypeFor[Duration]()}
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Load reads the JSON file named by TANDEM_CONFIG_FILE (if set), then applies TANDEM_*
// environment variables on top, fills defaults and validates.
func Load() (*Config, error) {
	path := os.Getenv("TANDEM_CONFIG_FILE")
	var file []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: reading TANDEM_CONFIG_FILE: %w", err)
		}
		file = b
	}
	return parse(path, file, os.Getenv)
}

// parse is Load's work on the file's content (path "": no file) and the environment.
func parse(path string, file []byte, getenv func(string) string) (*Config, error) {
	c := &Config{}
	if path != "" {
		dec := json.NewDecoder(strings.NewReader(string(file)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err == io.EOF {
			return nil, fmt.Errorf("config: %s is empty (write {} for no settings)", path)
		} else if err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
		if dec.More() {
			// A second object (two files concatenated, a stray paste) would be ignored.
			return nil, fmt.Errorf("config: %s: more after the settings' JSON object (offset %d)", path, dec.InputOffset())
		}
	}
	if err := c.applyEnv(getenv); err != nil {
		return nil, err
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) applyEnv(getenv func(string) string) error {
	strs := map[string]*string{
		"TANDEM_PG_URL":            &c.PostgresURL,
		"TANDEM_PG_SECRET_ARN":     &c.PostgresSecretARN,
		"TANDEM_PG_SSLMODE":        &c.PostgresSSLMode,
		"TANDEM_PG_SSLROOTCERT":    &c.PostgresSSLRootCert,
		"TANDEM_PUBLICATION":       &c.Publication,
		"TANDEM_SLOT":              &c.Slot,
		"TANDEM_CONTROL_TABLE":     &c.ControlTable,
		"TANDEM_TABLE_PREFIX":      &c.TablePrefix,
		"TANDEM_STATE_MACHINE_ARN": &c.StateMachineARN,
	}
	for name, dst := range strs {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	ints := map[string]*int{
		"TANDEM_CHUNK_SIZE":          &c.ChunkSize,
		"TANDEM_MAX_CONCURRENCY":     &c.MaxConcurrency,
		"TANDEM_RANGE_ROWS":          &c.RangeRows,
		"TANDEM_MAX_RANGES":          &c.MaxRanges,
		"TANDEM_SNAPSHOT_WRITERS":    &c.SnapshotWriters,
		"TANDEM_STREAM_WRITERS":      &c.StreamWriters,
		"TANDEM_MAX_IN_FLIGHT":       &c.MaxInFlight,
		"TANDEM_SWEEP_SEGMENT_ITEMS": &c.SweepSegmentItems,
		"TANDEM_MAX_SWEEP_SEGMENTS":  &c.MaxSweepSegments,
		"TANDEM_SWEEP_WRITERS":       &c.SweepWriters,
	}
	for name, dst := range ints {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("config: %s=%q is not an integer", name, v)
			}
			if n <= 0 {
				return fmt.Errorf("config: %s=%d must be positive", name, n)
			}
			*dst = n
		}
	}
	for name, dst := range map[string]*int64{
		"TANDEM_WARM_READ_UNITS":  &c.WarmReadUnits,
		"TANDEM_WARM_WRITE_UNITS": &c.WarmWriteUnits,
	} {
		if v := getenv(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return fmt.Errorf("config: %s=%q must be a positive integer", name, v)
			}
			*dst = n
		}
	}
	durs := map[string]*Duration{
		"TANDEM_TOMBSTONE_TTL":    &c.TombstoneTTL,
		"TANDEM_STATUS_INTERVAL":  &c.StatusInterval,
		"TANDEM_LEASE_TTL":        &c.LeaseTTL,
		"TANDEM_CATALOG_INTERVAL": &c.CatalogInterval,
	}
	for name, dst := range durs {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("config: %s=%q is not a duration like 24h: %w", name, v, err)
			}
			dst.Duration = d
		}
	}
	if v := getenv("TANDEM_PG_IAM_AUTH"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("config: TANDEM_PG_IAM_AUTH=%q is not true or false", v)
		}
		c.PostgresIAMAuth = b
	}
	if v := getenv("TANDEM_CREATE_TABLES"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("config: TANDEM_CREATE_TABLES=%q is not true or false", v)
		}
		c.CreateTables = &b
	}
	if v := getenv("TANDEM_TABLES"); v != "" {
		// Comma-separated, but a quoted name may hold commas: the list is parsed, not split.
		ids, err := ident.ParseList(v)
		if err != nil {
			return fmt.Errorf("config: TANDEM_TABLES: %w", err)
		}
		c.Tables = nil
		for _, id := range ids {
			c.Tables = append(c.Tables, Table{Source: id.String()})
		}
	}
	return nil
}

// Defaults fills every unset field.
func (c *Config) Defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Publication, "tandem")
	def(&c.Slot, "tandem")
	def(&c.ControlTable, "tandem_control")
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	defInt(&c.ChunkSize, 1000)
	defInt(&c.MaxConcurrency, 4)
	defInt(&c.RangeRows, 250000)
	defInt(&c.MaxRanges, 64)
	defInt(&c.SnapshotWriters, 16)
	defInt(&c.StreamWriters, 32)
	defInt(&c.MaxInFlight, 10000)
	defInt(&c.SweepSegmentItems, 100000)
	defInt(&c.MaxSweepSegments, 64)
	defInt(&c.SweepWriters, 16)
	if c.CreateTables == nil {
		t := true
		c.CreateTables = &t
	}
	if c.TombstoneTTL.Duration == 0 {
		c.TombstoneTTL.Duration = 7 * 24 * time.Hour
	}
	if c.CatalogInterval.Duration == 0 {
		c.CatalogInterval.Duration = 30 * time.Second
	}
	if c.LeaseTTL.Duration == 0 {
		c.LeaseTTL.Duration = 30 * time.Second
	}
	if c.StatusInterval.Duration == 0 {
		c.StatusInterval.Duration = time.Second
	}
}

var (
	pgIdent     = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)
	dynamoTable = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)
	// tablePrefix leaves room for any table's default target (see DefaultTarget).
	tablePrefix = regexp.MustCompile(`^[a-zA-Z0-9_.-]{0,200}$`)
)

// IAMAuthTLSError says why postgres_iam_auth cannot go with the TLS mode connections to
// url would use (nil when it can, or IAM authentication is off). An IAM token is sent as
// the password, so only a mode that never falls back to plain text will do; the mode
// checked is the one connections use, so an unset postgres_sslmode counts as the URL's,
// else PGSSLMODE's, else pgx's default, prefer. With a secret, url is "" until the
// secret is read, and SourceFor checks again with the secret's URL.
func (c *Config) IAMAuthTLSError(url string) error {
	src := pg.Source{URL: url, SSLMode: c.PostgresSSLMode}
	if !c.PostgresIAMAuth || src.NoPlainText() {
		return nil
	}
	mode, origin := src.TLSModeOrigin()
	return fmt.Errorf("config: postgres_iam_auth needs TLS that cannot fall back to plain text, but connections would use sslmode %q (%s): set postgres_sslmode (TANDEM_PG_SSLMODE) to require, verify-ca or verify-full (verify-full also checks whom it talks to)", mode, origin)
}

// Validate reports every problem at once, each naming the setting.
func (c *Config) Validate() error {
	var errs []error
	if c.PostgresURL == "" && c.PostgresSecretARN == "" {
		errs = append(errs, errors.New("config: postgres_url (TANDEM_PG_URL) or postgres_secret_arn (TANDEM_PG_SECRET_ARN) is required"))
	}
	if c.PostgresSSLMode != "" && !slices.Contains(pg.SSLModes, c.PostgresSSLMode) {
		errs = append(errs, fmt.Errorf("config: postgres_sslmode (TANDEM_PG_SSLMODE) %q is not one of %s", c.PostgresSSLMode, strings.Join(pg.SSLModes, ", ")))
	}
	if err := c.IAMAuthTLSError(c.PostgresURL); err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]string{"publication": c.Publication, "slot": c.Slot} {
		if !pgIdent.MatchString(v) {
			errs = append(errs, fmt.Errorf("config: %s %q must be a lower-case PostgreSQL identifier", name, v))
		}
	}
	if !dynamoTable.MatchString(c.ControlTable) {
		errs = append(errs, fmt.Errorf("config: control_table %q is not a valid DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -)", c.ControlTable))
	}
	if c.ChunkSize < 1 || c.ChunkSize > 100000 {
		errs = append(errs, fmt.Errorf("config: chunk_size %d must be between 1 and 100000", c.ChunkSize))
	}
	for name, n := range map[string]int{"max_concurrency": c.MaxConcurrency, "max_ranges": c.MaxRanges} {
		if n < 1 || n > 1000 {
			errs = append(errs, fmt.Errorf("config: %s %d must be between 1 and 1000", name, n))
		}
	}
	if c.RangeRows < 1 {
		errs = append(errs, fmt.Errorf("config: range_rows %d must be positive", c.RangeRows))
	}
	for name, n := range map[string]int{"snapshot_writers": c.SnapshotWriters, "stream_writers": c.StreamWriters, "sweep_writers": c.SweepWriters} {
		if n < 1 || n > 1024 {
			errs = append(errs, fmt.Errorf("config: %s %d must be between 1 and 1024", name, n))
		}
	}
	if c.MaxInFlight < c.StreamWriters {
		errs = append(errs, fmt.Errorf("config: max_in_flight %d must be at least stream_writers %d", c.MaxInFlight, c.StreamWriters))
	}
	for name, n := range map[string]int64{"warm_read_units_per_second": c.WarmReadUnits, "warm_write_units_per_second": c.WarmWriteUnits} {
		if n < 0 {
			errs = append(errs, fmt.Errorf("config: %s %d must be positive (or unset for DynamoDB's default)", name, n))
		}
	}
	if c.SweepSegmentItems < 1 {
		errs = append(errs, fmt.Errorf("config: sweep_segment_items %d must be positive", c.SweepSegmentItems))
	}
	if c.MaxSweepSegments < 1 || c.MaxSweepSegments > 1000000 {
		errs = append(errs, fmt.Errorf("config: max_sweep_segments %d must be between 1 and 1000000 (DynamoDB's TotalSegments limit)", c.MaxSweepSegments))
	}
	if c.TombstoneTTL.Duration < time.Hour {
		errs = append(errs, fmt.Errorf("config: tombstone_ttl %s must be at least 1h (it must outlive any snapshot)", c.TombstoneTTL))
	}
	for name, d := range map[string]time.Duration{"status_interval": c.StatusInterval.Duration, "catalog_interval": c.CatalogInterval.Duration} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("config: %s %s must be positive", name, d))
		}
	}
	if c.LeaseTTL.Duration < 3*c.StatusInterval.Duration {
		errs = append(errs, fmt.Errorf("config: lease_ttl %s must be at least 3 status intervals (%s)", c.LeaseTTL, c.StatusInterval))
	}
	if !tablePrefix.MatchString(c.TablePrefix) {
		errs = append(errs, fmt.Errorf("config: table_prefix %q must be at most 200 of a-z A-Z 0-9 _ . - (it starts DynamoDB table names)", c.TablePrefix))
	}
	seen := map[ident.Table]bool{}
	for i, t := range c.Tables {
		id, err := ident.Parse(t.Source)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: tables[%d]: %w", i, err))
			continue
		}
		if seen[id] {
			errs = append(errs, fmt.Errorf("config: tables[%d]: %q is listed twice (as %s)", i, t.Source, id))
		}
		seen[id] = true
		if t.Target != "" && !dynamoTable.MatchString(t.Target) {
			errs = append(errs, fmt.Errorf("config: tables[%d]: target %q is not a valid DynamoDB table name", i, t.Target))
		}
	}
	return errors.Join(errs...)
}

// DeployedTablePrefix is template.yaml's default TablePrefix. A stack's functions and
// streamer take their prefix from that parameter (TANDEM_TABLE_PREFIX, over the file's
// table_prefix), which cannot be empty, and its policies let them create and write only
// the DynamoDB tables named with it.
const DeployedTablePrefix = "tandem-"

// DeploymentDefaults fills what a deployment of template.yaml with its default parameters
// sets where the configuration says nothing: the table prefix. make up deploys with it and
// tandem check --deployment checks with it, so both name the same targets.
func (c *Config) DeploymentDefaults() {
	if c.TablePrefix == "" {
		c.TablePrefix = DeployedTablePrefix
	}
}

// WarmThroughput is the warm throughput of created target tables (nil: unset).
func (c *Config) WarmThroughput() *types.WarmThroughput {
	if c.WarmReadUnits == 0 && c.WarmWriteUnits == 0 {
		return nil
	}
	w := &types.WarmThroughput{}
	if c.WarmReadUnits > 0 {
		w.ReadUnitsPerSecond = &c.WarmReadUnits
	}
	if c.WarmWriteUnits > 0 {
		w.WriteUnitsPerSecond = &c.WarmWriteUnits
	}
	return w
}

// SourceTables lists the configured source tables (empty: all).
func (c *Config) SourceTables() []ident.Table {
	var ids []ident.Table
	for _, t := range c.Tables {
		if id, err := ident.Parse(t.Source); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

// TableFor returns the configuration of a source table, its Source in canonical form and
// its Target filled, and whether it is replicated at all: with no tables configured,
// every table of the publication is.
func (c *Config) TableFor(id ident.Table) (Table, bool) {
	for _, t := range c.Tables {
		if configured, err := ident.Parse(t.Source); err == nil && configured == id {
			t.Source = id.String()
			if t.Target == "" {
				t.Target = DefaultTarget(c.TablePrefix, id)
			}
			return t, true
		}
	}
	if len(c.Tables) > 0 {
		return Table{}, false
	}
	return Table{Source: id.String(), Target: DefaultTarget(c.TablePrefix, id)}, true
}

// targetHashLen is the number of hex digits of the identity's hash in a changed name.
const targetHashLen = 10

// DefaultTarget is the DynamoDB table of a source table configured without a target.
// It is prefix + the table's name, schema-qualified outside public ("audit.events"), when
// that is a valid DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -) without any dot inside
// a part. Otherwise (a space, a dot or a non-ASCII letter in a name, too short, too long)
// it is prefix + schema + "." + table + "." + a hash of the exact identity, each character
// DynamoDB refuses (and each dot inside a part) replaced by "_" and the parts shortened
// to fit. Unchanged names have at most one dot after the prefix and changed ones exactly
// two, and the hash tells changed ones apart, so two tables never share a default target.
func DefaultTarget(prefix string, id ident.Table) string {
	name := id.Name
	if id.Schema != ident.DefaultSchema {
		name = id.Schema + "." + id.Name
	}
	if dynamoTable.MatchString(prefix+name) && cleanPart(id.Schema) == id.Schema && cleanPart(id.Name) == id.Name {
		return prefix + name
	}
	sum := sha256.Sum256([]byte(id.String()))
	hash := hex.EncodeToString(sum[:])[:targetHashLen]
	schemaPart, tablePart := cleanPart(id.Schema), cleanPart(id.Name)
	if room := 255 - len(prefix) - len(hash) - 2; len(schemaPart)+len(tablePart) > room {
		schemaPart = schemaPart[:min(len(schemaPart), room/2)]
		tablePart = tablePart[:min(len(tablePart), room-len(schemaPart))]
	}
	return prefix + schemaPart + "." + tablePart + "." + hash
}

// cleanPart replaces each character DynamoDB refuses in a table name, and each dot (the
// separator of DefaultTarget), with "_".
func cleanPart(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, s)
}
