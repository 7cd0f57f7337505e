package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"

	"tandem/shared/config"
	"tandem/shared/control"
	"tandem/shared/pg"
	"tandem/shared/target"
)

// PlanInput is the plan handler's input. Every field is optional.
type PlanInput struct {
	// Reset restarts every table's snapshot from its first key.
	Reset bool `json:"reset,omitempty"`
}

// PlanOutput lists the tables to snapshot; the state machine maps over Tables.
type PlanOutput struct {
	Slot     string      `json:"slot"`
	StartLSN string      `json:"start_lsn"`
	Tables   []PlanTable `json:"tables"`
}

// PlanTable is one Map item: the input of the snapshot and finalize handlers.
type PlanTable struct {
	Table        string `json:"table"`
	Target       string `json:"target"`
	RowsEstimate int64  `json:"rows_estimate"`
	State        string `json:"state"`
}

// Plan ensures the publication and the slot exist (slot first, DESIGN §2.1), discovers and
// validates the tables, creates their target tables and marks their snapshots pending.
func (e *Env) Plan(ctx context.Context, in PlanInput) (PlanOutput, error) {
	cfg := e.Config
	out := PlanOutput{Slot: cfg.Slot}
	if err := pg.CheckServer(ctx, e.PG); err != nil {
		return out, err
	}
	if err := e.Control.EnsureTable(ctx); err != nil {
		return out, err
	}
	var configured []string
	for _, t := range cfg.Tables {
		configured = append(configured, config.QualifiedName(t.Source))
	}
	if err := pg.EnsurePublication(ctx, e.PG, cfg.Publication, configured); err != nil {
		return out, err
	}
	start, err := e.EnsureSlot(ctx, in.Reset)
	if err != nil {
		return out, err
	}
	out.StartLSN = start.String()

	sources, err := pg.PublicationTables(ctx, e.PG, cfg.Publication)
	if err != nil {
		return out, err
	}
	var problems []error
	for _, source := range sources {
		s, n, _ := config.SplitName(source)
		if _, ok := cfg.TableFor(s, n); !ok {
			continue
		}
		t, err := e.Describe(ctx, source)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		if *cfg.CreateTables {
			if err := target.EnsureTable(ctx, e.DB, t); err != nil {
				return out, err
			}
		}
		st, err := e.Control.Plan(ctx, source, control.PlanOptions{Target: t.Target, RowsEstimate: t.EstimatedRows, Reset: in.Reset})
		if err != nil {
			return out, err
		}
		if st.Shape == nil {
			if err := e.Control.SetShape(ctx, source, t.Shape()); err != nil {
				return out, err
			}
		}
		out.Tables = append(out.Tables, PlanTable{Table: source, Target: t.Target, RowsEstimate: t.EstimatedRows, State: st.State})
	}
	if len(problems) > 0 {
		return out, fmt.Errorf("plan: %d table(s) cannot be replicated: %w", len(problems), errors.Join(problems...))
	}
	if len(out.Tables) == 0 {
		return out, fmt.Errorf("plan: publication %s contains none of the configured tables", cfg.Publication)
	}
	e.Log.Info("plan ready", "slot", cfg.Slot, "start_lsn", out.StartLSN, "tables", len(out.Tables))
	return out, nil
}

// EnsureSlot creates the slot and records its start LSN A before any snapshot reads. A
// slot that Tandem recorded but that no longer exists means changes were lost: that needs
// an explicit reset, which re-snapshots every table.
func (e *Env) EnsureSlot(ctx context.Context, reset bool) (pglogrepl.LSN, error) {
	rec, recorded, err := e.Control.Slot(ctx)
	if err != nil {
		return 0, err
	}
	start, created, err := pg.EnsureSlot(ctx, e.PG, e.Config.Slot)
	if err != nil {
		return 0, err
	}
	if created && recorded && rec.Slot == e.Config.Slot && !reset {
		return 0, fmt.Errorf("plan: replication slot %s, created by Tandem at LSN %d, no longer existed (dropped or lost): changes since then are lost, so run plan with {\"reset\": true} to snapshot every table again", e.Config.Slot, rec.StartLSN)
	}
	if created || !recorded {
		if err := e.Control.RecordSlot(ctx, e.Config.Slot, uint64(start)); err != nil {
			return 0, err
		}
	}
	return start, nil
}
