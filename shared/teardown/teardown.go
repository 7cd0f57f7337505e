// Package teardown removes what Tandem created: its replication slot and publication on
// the source database and, optionally, its DynamoDB tables (the targets and the control
// table). Inspect says what exists before anything is removed (so a person can confirm);
// Run removes it and says, object by object, what it removed and what was already absent.
package teardown

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/jackc/pgx/v5/pgxpool"

	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/ident"
	"tandem/shared/pg"
)

// Kinds of objects.
const (
	KindSlot         = "replication slot"
	KindPublication  = "publication"
	KindTarget       = "DynamoDB table"
	KindControlTable = "control table"
)

// Object is one thing teardown removes, keeps or finds absent.
type Object struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Exists: it exists now (Inspect) or existed (Run).
	Exists bool `json:"exists"`
	// Keep: it exists but is left as it is (Note says why).
	Keep bool `json:"keep,omitempty"`
	// Removed: Run removed it.
	Removed bool   `json:"removed,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Options says what to tear down.
type Options struct {
	Config *config.Config
	PG     *pgxpool.Pool
	// DB is DynamoDB (nil: only the database objects, and the publication's owner unknown).
	DB *dynamodb.Client
	// DeleteTables also deletes the target tables (those the control table records, with
	// the targets they were replicated into before, and the configured ones) and the
	// control table.
	DeleteTables bool
	// Force terminates the backend streaming from an active slot (a running streamer)
	// instead of refusing.
	Force bool
}

// ErrSlotActive means the slot is in use (a streamer runs) and Force is not set; errors.Is
// matches the refusal, whose message says which PID and what to do.
var ErrSlotActive = errors.New("replication slot is active")

type activeError struct{ msg string }

func (e *activeError) Error() string        { return e.msg }
func (e *activeError) Is(target error) bool { return target == ErrSlotActive }

// Plan is what exists before teardown.
type Plan struct {
	Objects []Object `json:"objects"`
	// ActivePID is the backend streaming from the slot (0: none).
	ActivePID int32 `json:"active_pid,omitempty"`
}

// Inspect finds what teardown would remove. It refuses (ErrSlotActive) while a streamer
// uses the slot, unless o.Force.
func Inspect(ctx context.Context, o Options) (*Plan, error) {
	cfg := o.Config
	p := &Plan{}
	slot := Object{Kind: KindSlot, Name: cfg.Slot}
	s, err := pg.ReadSlot(ctx, o.PG, cfg.Slot)
	switch {
	case errors.Is(err, pg.ErrSlotMissing):
	case err != nil && s.Name == "":
		return nil, err
	default: // a wrong plugin or a lost slot is still Tandem's slot to drop
		slot.Exists = true
		slot.Note = fmt.Sprintf("holding %d bytes of WAL", s.RetainedBytes())
		if s.Active {
			p.ActivePID = s.ActivePID
			if !o.Force {
				return nil, &activeError{fmt.Sprintf("replication slot %s is in use by PID %d (a streamer is running): stop the streamer first (make down; on AWS, set the streamer service's desired count to 0), or pass --force to terminate that connection",
					cfg.Slot, s.ActivePID)}
			}
			slot.Note += fmt.Sprintf("; in use by PID %d, which --force terminates", s.ActivePID)
		}
	}
	p.Objects = append(p.Objects, slot)

	pub, err := p.publication(ctx, o)
	if err != nil {
		return nil, err
	}
	p.Objects = append(p.Objects, pub)

	if o.DeleteTables {
		if o.DB == nil {
			return nil, errors.New("deleting the DynamoDB tables needs DynamoDB")
		}
		tables, err := p.dynamoTables(ctx, o)
		if err != nil {
			return nil, err
		}
		p.Objects = append(p.Objects, tables...)
	}
	return p, nil
}

// publication decides about the publication: one the user created (the control table
// exists and holds no record that Tandem created it) is left as it is, as Tandem never
// alters it.
func (p *Plan) publication(ctx context.Context, o Options) (Object, error) {
	name := o.Config.Publication
	obj := Object{Kind: KindPublication, Name: name}
	pub, err := pg.ReadPublication(ctx, o.PG, name)
	if err != nil {
		return obj, err
	}
	obj.Exists = pub.Exists
	if !pub.Exists || o.DB == nil {
		return obj, nil
	}
	rec, found, err := control.New(o.DB, o.Config.ControlTable).Publication(ctx)
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		obj.Note = "no control table records who created it; it is the configured publication"
	case err != nil && !o.DeleteTables:
		obj.Note = "DynamoDB does not answer, so who created it is unknown; it is the configured publication"
	case err != nil:
		return obj, err
	case !found || !rec.CreatedByTandem || rec.Publication != name:
		obj.Keep = true
		obj.Note = "created outside Tandem (the control table has no record of creating it), so it is left as it is: DROP PUBLICATION " + ident.Quote(name) + " removes it"
	}
	return obj, nil
}

// dynamoTables lists the target tables and the control table.
func (p *Plan) dynamoTables(ctx context.Context, o Options) ([]Object, error) {
	cfg := o.Config
	var names []string
	states, err := control.New(o.DB, cfg.ControlTable).Tables(ctx)
	var notFound *types.ResourceNotFoundException
	if err != nil && !errors.As(err, &notFound) {
		return nil, err
	}
	for _, st := range states {
		names = append(names, st.Target)
		names = append(names, st.RetiredTargets...)
	}
	for _, id := range cfg.SourceTables() {
		if t, ok := cfg.TableFor(id); ok {
			names = append(names, t.Target)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	var out []Object
	for _, n := range names {
		if n == "" || n == cfg.ControlTable {
			continue
		}
		exists, err := tableExists(ctx, o.DB, n)
		if err != nil {
			return nil, err
		}
		out = append(out, Object{Kind: KindTarget, Name: n, Exists: exists})
	}
	exists, err := tableExists(ctx, o.DB, cfg.ControlTable)
	if err != nil {
		return nil, err
	}
	return append(out, Object{Kind: KindControlTable, Name: cfg.ControlTable, Exists: exists}), nil
}

func tableExists(ctx context.Context, db *dynamodb.Client, name string) (bool, error) {
	_, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &name})
	var notFound *types.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("dynamodb: describing %s: %w", name, err)
	}
	return true, nil
}

// Run removes what p found, in order: the slot first (it is what holds WAL on the
// primary), then the publication, the targets and the control table last (it is what
// says which targets are Tandem's). It returns p's objects with Removed set, and stops
// at the first error.
func Run(ctx context.Context, o Options, p *Plan) ([]Object, error) {
	var done []Object
	for _, obj := range p.Objects {
		if !obj.Exists || obj.Keep {
			done = append(done, obj)
			continue
		}
		var err error
		switch obj.Kind {
		case KindSlot:
			err = dropSlot(ctx, o)
		case KindPublication:
			if _, err = o.PG.Exec(ctx, "DROP PUBLICATION IF EXISTS "+ident.Quote(obj.Name)); err != nil {
				err = fmt.Errorf("postgres: dropping publication %s: %w", obj.Name, err)
			}
		case KindTarget, KindControlTable:
			err = deleteTable(ctx, o.DB, obj.Name)
		}
		if err != nil {
			return done, err
		}
		obj.Removed = true
		done = append(done, obj)
	}
	return done, nil
}

// dropSlot drops the slot, first terminating the backend streaming from it (Force). A
// streamer reconnects at once, so termination and drop are retried a few times.
func dropSlot(ctx context.Context, o Options) error {
	name := o.Config.Slot
	for attempt := 0; ; attempt++ {
		s, err := pg.ReadSlot(ctx, o.PG, name)
		if errors.Is(err, pg.ErrSlotMissing) {
			return nil
		}
		if s.Active {
			if !o.Force {
				return &activeError{fmt.Sprintf("replication slot %s is in use by PID %d again: not dropped", name, s.ActivePID)}
			}
			if _, err := o.PG.Exec(ctx, "SELECT pg_terminate_backend($1)", s.ActivePID); err != nil {
				return fmt.Errorf("postgres: terminating PID %d, which streams from slot %s: %w", s.ActivePID, name, err)
			}
			time.Sleep(200 * time.Millisecond) // the slot is released when the backend has exited
		}
		err = pg.DropSlot(ctx, o.PG, name)
		if err == nil {
			return nil
		}
		if attempt >= 20 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func deleteTable(ctx context.Context, db *dynamodb.Client, name string) error {
	_, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: &name})
	var notFound *types.ResourceNotFoundException
	if err != nil && !errors.As(err, &notFound) {
		return fmt.Errorf("dynamodb: deleting table %s: %w", name, err)
	}
	return nil
}

// Describe is a line saying what happened to obj (after Run) or will happen (before).
func Describe(obj Object, done bool) string {
	what := obj.Kind + " " + obj.Name
	var s string
	switch {
	case !obj.Exists:
		s = what + ": already absent"
	case obj.Keep:
		s = what + ": kept"
	case done && obj.Removed:
		s = "removed " + what
	case done:
		s = what + ": not removed"
	default:
		s = "remove " + what
	}
	if obj.Note != "" && obj.Exists {
		s += " (" + obj.Note + ")"
	}
	return s
}
