package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/schema"
)

// This file reconciles the configuration with the control state (README "Bad input and faults"): plan and
// the streamer both use it, so they agree on what a configuration change means.

// CheckConfiguredTables fails, naming them, when configured tables do not exist: a
// misspelling no retry can fix. exempt (may be nil) spares tables known to the control
// table, which the streamer treats as dropped rather than stop every other table.
func (e *Env) CheckConfiguredTables(ctx context.Context, exempt func(source string) bool) error {
	missing, err := pg.MissingTables(ctx, e.PG, e.Config.SourceTables())
	if err != nil {
		return err
	}
	missing = slices.DeleteFunc(missing, func(t ident.Table) bool { return exempt != nil && exempt(t.String()) })
	return MissingTablesError(missing)
}

// MissingTablesError is the refusal of configured tables that do not exist (nil for none).
func MissingTablesError(missing []ident.Table) error {
	if len(missing) == 0 {
		return nil
	}
	return pg.Misconfiguredf("config: configured table(s) %s do not exist in the database: correct or remove them in the configured tables (names are case-sensitive and taken as written; quote a part with dots or commas: schema.\"a.b\")",
		names(missing))
}

func names(tables []ident.Table) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}

// EnsurePublication creates the publication when it is missing, recording that Tandem
// created it. A publication Tandem created follows the configured tables (new ones join
// it, removed ones leave it); one the user created is never altered, only checked.
func (e *Env) EnsurePublication(ctx context.Context) error {
	name, tables := e.Config.Publication, e.Config.SourceTables()
	p, err := e.publicationState(ctx, true)
	if err != nil {
		return err
	}
	if err := p.lacking(name); err != nil {
		return err
	}
	if !p.pub.Exists {
		if !p.owned {
			if err := e.Control.RecordPublication(ctx, name); err != nil {
				return err
			}
		}
		err := pg.EnsurePublication(ctx, e.PG, name, tables)
		if fault.IsFatal(err) && !p.owned {
			// Refused (a privilege the role lacks): the publication its owner may now
			// create is theirs, not Tandem's.
			if ferr := e.Control.ForgetPublication(ctx); ferr != nil {
				e.Log.Warn("forgetting the refused publication's record failed", "publication", name, "error", ferr.Error())
			}
		}
		return err
	}
	if p.pub.AllTables || len(tables) == 0 || !p.owned {
		// FOR ALL TABLES cannot drop single tables; the configuration filters them. One
		// the user created is left as it is.
		return nil
	}
	if err := pg.EnsurePublication(ctx, e.PG, name, tables); err != nil {
		return err
	}
	direct, err := pg.PublicationMembers(ctx, e.PG, name)
	if err != nil {
		return err
	}
	extra := slices.DeleteFunc(direct, func(t ident.Table) bool { return slices.Contains(tables, t) })
	if len(extra) > 0 {
		e.Log.Info("tables left the configuration: removing them from the publication", "publication", name, "tables", names(extra))
	}
	return pg.DropFromPublication(ctx, e.PG, name, extra)
}

// CheckPublication reports, without changing anything, what EnsurePublication would
// refuse (err: a publication the user created that lacks configured tables) and what
// stock PostgreSQL would refuse it (denied: DDL on the publication that the role may not
// run, e.g. it owns not every table to publish; a prediction, see
// pg.CheckPublicationPrivilege). owned says that Tandem created the publication (so plan
// makes it follow the configured tables). withControl false takes the control table as
// empty without reading it.
func (e *Env) CheckPublication(ctx context.Context, withControl bool) (pub pg.Publication, owned bool, denied, err error) {
	p, err := e.publicationState(ctx, withControl)
	if err != nil {
		return p.pub, false, nil, err
	}
	// Only the DDL EnsurePublication would issue: creating it, or adding the missing
	// tables to the one Tandem created.
	switch name := e.Config.Publication; {
	case !p.pub.Exists:
		denied = pg.CheckPublicationPrivilege(ctx, e.PG, name, true, e.Config.SourceTables())
	case p.owned && len(p.missing) > 0:
		denied = pg.CheckPublicationPrivilege(ctx, e.PG, name, false, p.missing)
	}
	if denied != nil && !fault.IsFatal(denied) {
		// Reading the catalog failed: an error, not a prediction.
		return p.pub, p.owned, nil, denied
	}
	return p.pub, p.owned, denied, p.lacking(e.Config.Publication)
}

// publication is what EnsurePublication decides on.
type publication struct {
	pub pg.Publication
	// owned: Tandem created it (the control table records so).
	owned bool
	// missing are the configured tables an existing publication (not FOR ALL TABLES) lacks.
	missing []ident.Table
}

func (e *Env) publicationState(ctx context.Context, withControl bool) (publication, error) {
	var p publication
	name, tables := e.Config.Publication, e.Config.SourceTables()
	var err error
	if p.pub, err = pg.ReadPublication(ctx, e.PG, name); err != nil {
		return p, err
	}
	if withControl {
		rec, found, err := e.Control.Publication(ctx)
		var notFound *types.ResourceNotFoundException
		if errors.As(err, &notFound) {
			// No control table yet (tandem check before the first plan): nothing recorded.
			found, err = false, nil
		}
		if err != nil {
			return p, err
		}
		p.owned = found && rec.CreatedByTandem && rec.Publication == name
	}
	if !p.pub.Exists {
		return p, nil
	}
	if p.pub.AllTables || len(tables) == 0 {
		return p, nil
	}
	members, err := pg.PublicationTables(ctx, e.PG, name)
	if err != nil {
		return p, err
	}
	p.missing = slices.DeleteFunc(slices.Clone(tables), func(t ident.Table) bool { return slices.Contains(members, t) })
	return p, nil
}

// lacking is the refusal of a publication the user created that lacks configured tables:
// Tandem does not alter it.
func (p publication) lacking(name string) error {
	if p.owned || len(p.missing) == 0 {
		return nil
	}
	sqls := make([]string, len(p.missing))
	for i, t := range p.missing {
		sqls[i] = t.SQL()
	}
	return pg.Misconfiguredf("publication %s was not created by Tandem, so Tandem does not alter it, and it lacks the configured table(s) %s: run ALTER PUBLICATION %s ADD TABLE %s; or remove them from the configured tables",
		name, names(p.missing), ident.Quote(name), strings.Join(sqls, ", "))
}

// KeyNames lists the item key's columns.
func KeyNames(t *schema.Table) []string {
	names := make([]string, len(t.Key))
	for i, ci := range t.Key {
		names[i] = t.Columns[ci].Name
	}
	return names
}

// Drift compares a recorded table with t, the table as configured now (target and key).
// It returns why the table must be snapshotted again into its configured target (a new
// target, replicated again after it was removed), "" when nothing changed, or an error
// when the change needs the operator: a new key for a target keyed by the old one.
func Drift(st control.TableState, t *schema.Table) (string, error) {
	key := KeyNames(t)
	keyChanged := st.KeyColumns != nil && !slices.Equal(st.KeyColumns, key)
	switch {
	case keyChanged && st.Target == t.Target:
		return "", pg.Misconfiguredf("the item key of %s changed from (%s) to (%s), but its target %s holds items keyed by (%s): configure a new target for it (tables[].target), and plan snapshots it again into that table and leaves %s as it is; or restore its key_columns",
			t.Source(), strings.Join(st.KeyColumns, ", "), strings.Join(key, ", "), st.Target, strings.Join(st.KeyColumns, ", "), st.Target)
	case st.Target != t.Target && keyChanged:
		return fmt.Sprintf("target changed from %s to %s and key from (%s) to (%s)", st.Target, t.Target, strings.Join(st.KeyColumns, ", "), strings.Join(key, ", ")), nil
	case st.Target != t.Target:
		return fmt.Sprintf("target changed from %s to %s", st.Target, t.Target), nil
	case st.State == control.Removed:
		return "replicated again after it was removed (" + st.Error + ")", nil
	}
	return "", nil
}

// StaleConfig reports a streamer whose configuration is older than the last plan's: its
// target for t is one plan retired. Writing there would leave the current target
// without the changes while it is reported consistent.
func StaleConfig(st control.TableState, t *schema.Table) error {
	if st.Target != t.Target && slices.Contains(st.RetiredTargets, t.Target) {
		return pg.Misconfiguredf("this process's configuration replicates %s into %s, which plan retired (it now replicates into %s): the configuration is older than the last plan's; restart with the current configuration",
			t.Source(), t.Target, st.Target)
	}
	return nil
}

// MarkRemoved marks every recorded table that is not in replicated (the configured
// tables of the publication) as removed: not replicated, never consistent.
func (e *Env) MarkRemoved(ctx context.Context, recorded []control.TableState, replicated []string) error {
	for _, st := range recorded {
		if slices.Contains(replicated, st.Source) || st.State == control.Removed {
			continue
		}
		reason := "not in publication " + e.Config.Publication + " any more"
		if id, err := ident.Parse(st.Source); err == nil {
			if _, ok := e.Config.TableFor(id); !ok {
				reason = "removed from the configured tables"
			}
		}
		reason += ": its changes are no longer applied; target " + st.Target + " is left as it is"
		e.Log.Warn("table no longer replicated", "table", st.Source, "reason", reason)
		if err := e.Control.MarkRemoved(ctx, st.Source, reason); err != nil {
			return err
		}
	}
	return nil
}
