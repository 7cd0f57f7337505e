package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"tandem/localstack/verify"
	"tandem/shared/control"
	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
)

const verifySummary = `Compares DynamoDB with PostgreSQL, table by table, with Tandem's independent checker
(package localstack/verify: it reads PostgreSQL by physical position and derives each
expected item from the contract's type mapping by its own code, not Tandem's), and prints
every difference with its table and key:
  missing   a row has no item            deleted  a row's item is a tombstone
  extra     a live item has no row       differs  an attribute is not what the row says
                                                  (want / got)
and metadata, duplicate, unmappable and keyschema problems. A summary line per table
follows its differences.

Without TABLE, every table the control table replicates is compared. The whole table is
read by default: PostgreSQL in parallel page ranges under one snapshot, DynamoDB in
parallel Scan segments (--segments). --sample N compares about N random rows instead
(PostgreSQL TABLESAMPLE BERNOULLI, each looked up in DynamoDB by key) and N items from
randomly chosen Scan segments (each looked up in PostgreSQL by key, so extras show too).

Rows that change while the table is read can show as transient differences: each
difference is checked once more, reading its row and its item again by key, and
reported only if it is still there (at most --max-diffs keys are re-checked; the count
of the others is reported as not re-checked).

Only a consistent table can be expected to match. A table whose snapshot is not done
(pending, running, failed, removed, never planned) is not compared: it is reported as
not verified and counts as a problem; --force compares it anyway. A table whose
snapshot is done but that is not consistent yet (the streamer has not applied past its
consistency point, a dead letter degraded it, a TRUNCATE's removal runs) is compared
with a warning: its differences may be changes not applied yet.

Exit status: 0 every table equal; 1 a difference, or a table not verified; 3 it could not
run (configuration, connection, a table that cannot be read).`

// verifyTableJSON is one table's outcome in --json.
type verifyTableJSON struct {
	Table       string           `json:"table"`
	Target      string           `json:"target,omitempty"`
	State       string           `json:"state"`
	Consistent  bool             `json:"consistent"`
	Verified    bool             `json:"verified"`
	Skipped     string           `json:"skipped,omitempty"`
	Warning     string           `json:"warning,omitempty"`
	Error       string           `json:"error,omitempty"`
	Sample      int              `json:"sample,omitempty"`
	Rows        int              `json:"rows"`
	Items       int              `json:"items"`
	Tombstones  int              `json:"tombstones"`
	Equal       bool             `json:"equal"`
	Differences int              `json:"differences"`
	Unchecked   int              `json:"not_rechecked,omitempty"`
	Diffs       []verifyDiffJSON `json:"diffs"`
}

type verifyDiffJSON struct {
	Kind string `json:"kind"`
	Key  string `json:"key"`
	Attr string `json:"attribute,omitempty"`
	Want string `json:"want,omitempty"`
	Got  string `json:"got,omitempty"`
}

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, config := newFlags("verify", "[TABLE...]", verifySummary, stderr)
	sample := fs.Int("sample", 0, "compare about `N` random rows and N random items instead of the whole table")
	segments := fs.Int("segments", 4, "parallel PostgreSQL page ranges and DynamoDB Scan segments per table")
	force := fs.Bool("force", false, "compare tables whose snapshot is not done too (expect differences)")
	maxDiffs := fs.Int("max-diffs", verify.MaxDiffs, "print at most `N` differences per table (and re-check at most N keys)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	positional, code, done := opsParse(fs, config, args, stdout)
	if done {
		return code
	}
	if *sample < 0 || *segments < 1 || *maxDiffs < 1 {
		fmt.Fprintln(stderr, "tandem verify: --sample must be 0 or more, --segments and --max-diffs 1 or more")
		return exitUsage
	}
	named, err := opsTables(positional)
	if err != nil {
		fmt.Fprintf(stderr, "tandem verify: %v\n", err)
		return exitUsage
	}
	env, ok := opsEnv(ctx, "verify", stderr)
	if !ok {
		return exitCantRun
	}
	defer env.PG.Close()

	states, err := env.Control.Tables(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "tandem verify: %s (has plan run? the control table is %s)\n", opsRedact(err.Error()), env.Config.ControlTable)
		return exitCantRun
	}
	byName := map[string]control.TableState{}
	for _, st := range states {
		byName[st.Source] = st
	}
	if len(named) == 0 {
		for _, st := range states {
			if st.State != control.Removed {
				named = append(named, st.Source)
			}
		}
		slices.Sort(named)
		if len(named) == 0 {
			fmt.Fprintf(stderr, "tandem verify: the control table %s lists no replicated table: run plan first\n", env.Config.ControlTable)
			return exitCantRun
		}
	}
	var members []ident.Table
	for _, name := range named {
		id, _ := ident.Parse(name)
		if _, ok := env.Config.TableFor(id); !ok {
			fmt.Fprintf(stderr, "tandem verify: table %s is not in the configured tables\n", name)
			return exitUsage
		}
		if _, planned := byName[name]; planned {
			continue
		}
		if members == nil {
			if members, err = pg.PublicationTables(ctx, env.PG, env.Config.Publication); err != nil {
				fmt.Fprintf(stderr, "tandem verify: %s\n", opsRedact(err.Error()))
				return exitCantRun
			}
		}
		if !slices.Contains(members, id) {
			fmt.Fprintf(stderr, "tandem verify: table %s is not replicated: it is not in publication %s\n", name, env.Config.Publication)
			return exitUsage
		}
	}
	cp, err := env.Control.Checkpoint(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "tandem verify: %s\n", opsRedact(err.Error()))
		return exitCantRun
	}

	opts := verify.Options{Segments: *segments, Sample: *sample, Recheck: true, MaxDiffs: *maxDiffs}
	var out []verifyTableJSON
	problem, cantRun := false, false
	for _, name := range named {
		r := verifyOne(ctx, env, name, byName, cp, opts, *force)
		switch {
		case r.Error != "":
			cantRun = true
		case !r.Verified || !r.Equal:
			problem = true
		}
		if !*asJSON {
			printVerify(stdout, stderr, r)
		}
		out = append(out, r)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Equal  bool              `json:"equal"`
			Tables []verifyTableJSON `json:"tables"`
		}{!problem && !cantRun, out})
	}
	switch {
	case problem:
		return exitProblem
	case cantRun:
		return exitCantRun
	}
	return exitOK
}

// verifyOne compares one table, unless its snapshot is not done (and not force).
func verifyOne(ctx context.Context, env *pipeline.Env, name string, states map[string]control.TableState, cp control.Checkpoint, opts verify.Options, force bool) verifyTableJSON {
	r := verifyTableJSON{Table: name, Diffs: []verifyDiffJSON{}}
	st, found := states[name]
	r.State = st.State
	if !found {
		r.State = "never planned"
	}
	r.Consistent = found && st.IsConsistent(cp.AppliedLSN)
	notDone := ""
	switch {
	case !found:
		notDone = "it was never snapshotted (run plan)"
	case st.State == control.Failed:
		notDone = "its snapshot failed: " + st.Error
	case st.State == control.Removed:
		notDone = "it is no longer replicated: " + st.Error
	case st.State != control.Done:
		notDone = fmt.Sprintf("its snapshot is %s (%d of about %d rows copied)", st.State, st.RowsCopied, max(st.RowsEstimate, 0))
	}
	if notDone != "" && !force {
		r.Skipped = notDone + ": only a consistent table can match; run verify again once it is done, or use --force"
		return r
	}
	switch {
	case notDone != "":
		r.Warning = notDone + ": compared anyway (--force), expect differences"
	case st.Degraded != "":
		r.Warning = "not consistent: " + st.Degraded + " (see tandem deadletters)"
	case st.TruncatingLSN != 0:
		r.Warning = fmt.Sprintf("not consistent yet: the items a TRUNCATE at %s left are being removed", lsnText(st.TruncatingLSN))
	case !r.Consistent && cp.AppliedLSN == 0:
		r.Warning = fmt.Sprintf("not consistent yet: no streamer has applied changes yet, the table is consistent from %s on: differences may be changes not applied yet",
			lsnText(st.ConsistentLSN))
	case !r.Consistent:
		r.Warning = fmt.Sprintf("not consistent yet: the streamer applied up to %s, the table is consistent from %s on: differences may be changes not applied yet",
			lsnText(cp.AppliedLSN), lsnText(st.ConsistentLSN))
	}
	t, err := env.Describe(ctx, name)
	if err != nil {
		r.Error = opsRedact(err.Error())
		return r
	}
	r.Target = t.Target
	res, err := verify.CompareWith(ctx, env.PG, env.DB, t, opts)
	if err != nil {
		r.Error = opsRedact(err.Error())
		return r
	}
	r.Verified, r.Equal = true, res.Equal()
	r.Sample, r.Rows, r.Items, r.Tombstones, r.Differences, r.Unchecked = res.Sample, res.Rows, res.Items, res.Tombstones, res.Total, res.Unchecked
	for _, d := range res.Diffs {
		r.Diffs = append(r.Diffs, verifyDiffJSON{Kind: string(d.Kind), Key: d.Key, Attr: d.Attr, Want: d.Want, Got: d.Got})
	}
	return r
}

// printVerify prints one table's outcome: its differences, then its summary line.
func printVerify(stdout, stderr io.Writer, r verifyTableJSON) {
	if r.Warning != "" {
		fmt.Fprintf(stderr, "%s: warning: %s\n", r.Table, r.Warning)
	}
	switch {
	case r.Skipped != "":
		fmt.Fprintf(stdout, "%s: not verified: %s\n", r.Table, r.Skipped)
		return
	case r.Error != "":
		fmt.Fprintf(stdout, "%s: cannot verify: %s\n", r.Table, r.Error)
		return
	}
	for _, d := range r.Diffs {
		fmt.Fprintf(stdout, "%s: %s\n", r.Table, verify.Diff{Kind: verify.Kind(d.Kind), Key: d.Key, Attr: d.Attr, Want: d.Want, Got: d.Got})
	}
	sample := ""
	if r.Sample > 0 {
		sample = fmt.Sprintf("sample of about %d rows and %d items, completed by key: ", r.Sample, r.Sample)
	}
	if r.Equal {
		fmt.Fprintf(stdout, "%s: %s%d rows, equal\n", r.Table, sample, r.Rows)
		return
	}
	more := ""
	if shown := len(r.Diffs); r.Differences > shown {
		more = fmt.Sprintf(" (%d shown", shown)
		if r.Unchecked > 0 {
			more += fmt.Sprintf("; %d not re-checked", r.Unchecked)
		}
		more += ")"
	}
	fmt.Fprintf(stdout, "%s: %s%d rows in PostgreSQL, %d live items and %d tombstones in DynamoDB: %d differences%s\n",
		r.Table, sample, r.Rows, r.Items, r.Tombstones, r.Differences, more)
}
