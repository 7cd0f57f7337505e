package preflight

import (
	"context"
	"fmt"
	"strings"

	"tandem/shared/control"
	"tandem/shared/fault"
	"tandem/shared/ident"
	"tandem/shared/pg"
	"tandem/shared/pipeline"
	"tandem/shared/schema"
	"tandem/shared/target"
)

// checkTables checks the publication and every table to replicate: the configured ones,
// or with none configured, those the publication covers (or would cover, FOR ALL TABLES).
func (c *checker) checkTables(ctx context.Context) {
	tables, ok := c.checkPublication(ctx)
	if !ok {
		return
	}
	for _, id := range tables {
		c.checkTable(ctx, id)
	}
}

// checkPublication reports the publication and returns the tables to check.
func (c *checker) checkPublication(ctx context.Context) ([]ident.Table, bool) {
	name := c.cfg.Publication
	subject := "publication " + name
	configured := c.cfg.SourceTables()
	pub, owned, denied, err := c.env.CheckPublication(ctx, c.control)
	if denied != nil {
		// A warning, not a blocker: managed services let their admin roles do more than
		// stock PostgreSQL (RDS's rds_superuser creates FOR ALL TABLES publications), and
		// if PostgreSQL does refuse, plan fails at once with this fix.
		c.r.add(Warn, subject, denied.Error()+" (managed services may allow more: if PostgreSQL refuses, plan fails at once with this message)")
	}
	refused := err != nil
	if refused {
		c.r.add(Fail, subject, err.Error())
		if !fault.IsFatal(err) {
			return nil, false
		}
		// Refused (tables it lacks, DDL the role may not run): the tables themselves are
		// still worth checking.
		if len(configured) > 0 {
			return configured, true
		}
	}
	var tables []ident.Table
	switch {
	case len(configured) > 0:
		tables = configured
	case pub.Exists:
		if tables, err = pg.PublicationTables(ctx, c.pg, name); err != nil {
			c.r.add(Fail, subject, err.Error())
			return nil, false
		}
	default:
		if tables, err = pg.AllTables(ctx, c.pg); err != nil {
			c.r.add(Fail, subject, err.Error())
			return nil, false
		}
	}
	if refused {
		return tables, true
	}
	var msg string
	switch {
	case !pub.Exists && len(configured) > 0:
		msg = "does not exist yet: plan creates it FOR TABLE " + names(configured)
	case !pub.Exists:
		msg = fmt.Sprintf("does not exist yet: plan creates it FOR ALL TABLES (%d tables now)", len(tables))
	case pub.AllTables:
		msg = "exists, FOR ALL TABLES"
	case owned:
		msg = "exists, created by Tandem: plan makes it follow the configured tables"
	default:
		msg = "exists, created outside Tandem: used as it is, never altered"
	}
	if len(configured) == 0 {
		msg += "; no tables configured: every table it publishes is replicated (" + names(tables) + ")"
	}
	if len(tables) == 0 {
		c.r.add(Fail, subject, msg+": there is no table to replicate")
		return nil, false
	}
	c.r.add(OK, subject, msg)
	if len(configured) == 0 && (!pub.Exists || pub.AllTables) {
		// Not a blocker: nothing asked for them, but nothing else would say they are left out.
		if unlogged, err := pg.UnloggedTables(ctx, c.pg); err == nil && len(unlogged) > 0 {
			c.r.add(Warn, "unlogged tables", "FOR ALL TABLES leaves out the UNLOGGED table(s) "+names(unlogged)+
				": their changes are not in the WAL, so they are not replicated; ALTER TABLE ... SET LOGGED the ones to replicate")
		}
	}
	return tables, true
}

// checkTable runs, for one table, the checks plan runs: it exists, it is not a partitioned
// parent, its changes are in the WAL (not UNLOGGED), the WAL can identify its rows, it
// validates (a usable key covered by the replica identity, no reserved column names, key
// types DynamoDB accepts), its existing target's key schema matches (or, with
// create_tables false, it exists), and its recorded key and target agree with the
// configuration.
func (c *checker) checkTable(ctx context.Context, id ident.Table) {
	subject := "table " + id.String()
	missing, err := pg.MissingTables(ctx, c.pg, []ident.Table{id})
	if err == nil {
		err = pipeline.MissingTablesError(missing)
	}
	if err == nil {
		err = pg.CheckPartitioned(ctx, c.pg, []ident.Table{id})
	}
	if err == nil {
		err = pg.CheckPersistence(ctx, c.pg, []ident.Table{id})
	}
	if err == nil {
		var problems []pg.TableProblem
		if problems, err = pg.IdentityProblems(ctx, c.pg, []ident.Table{id}); err == nil && len(problems) > 0 {
			err = fault.Fatalf("%s; %s", problems[0].Problem, pg.IdentityConsequence)
		}
	}
	if err != nil {
		c.r.add(Fail, subject, err.Error())
		return
	}
	t, err := c.env.DescribeTable(ctx, id)
	if err != nil {
		c.r.add(Fail, subject, err.Error())
		return
	}
	if c.o.Deployment && !strings.HasPrefix(t.Target, c.cfg.TablePrefix) {
		// Moto enforces no IAM: without this, make up would accept what AWS then denies.
		c.r.add(Fail, subject, fmt.Sprintf("target %s is outside table_prefix %s: a deployment's functions and streamer may only create and write the DynamoDB tables named %s* (template.yaml's policies), so plan would be denied it; name the target %s..., or deploy with a TablePrefix it starts with",
			t.Target, c.cfg.TablePrefix, c.cfg.TablePrefix, c.cfg.TablePrefix))
		return
	}
	targetNote := "target " + t.Target + ": plan creates it"
	if !*c.cfg.CreateTables {
		targetNote = "target " + t.Target + ": must exist (create_tables is false)"
	}
	recorded := ""
	if c.control {
		st, found, err := c.env.Control.Table(ctx, t.Source())
		if err == nil && found {
			var drift string
			if drift, err = pipeline.Drift(st, t); err == nil && drift != "" {
				recorded = "; plan snapshots it again: " + drift
			} else if err == nil && st.State != control.Removed {
				recorded = "; recorded " + st.State
			}
		}
		if err != nil {
			c.r.add(Fail, subject, err.Error())
			return
		}
	}
	if c.dbOK {
		exists, err := target.CheckTarget(ctx, c.db, t, *c.cfg.CreateTables)
		if err != nil {
			c.r.add(Fail, subject, err.Error())
			return
		}
		if exists {
			targetNote = "target " + t.Target + " exists with the matching key schema"
		}
	}
	c.r.add(OK, subject, fmt.Sprintf("key (%s), replica identity %s; %d columns, all mappable; %s; %s",
		strings.Join(pipeline.KeyNames(t), ", "), identityText(t), len(t.Columns), rows(t), targetNote+recorded))
}

func identityText(t *schema.Table) string {
	switch t.ReplicaIdentity {
	case 'f':
		return "FULL"
	case 'i':
		return "USING INDEX"
	case 'n':
		return "NOTHING"
	}
	return "DEFAULT"
}

func rows(t *schema.Table) string {
	if t.EstimatedRows < 0 {
		return "row count unknown (never analysed)"
	}
	return fmt.Sprintf("about %d rows", t.EstimatedRows)
}

func names(tables []ident.Table) string {
	parts := make([]string, len(tables))
	for i, t := range tables {
		parts[i] = t.String()
	}
	return strings.Join(parts, ", ")
}
