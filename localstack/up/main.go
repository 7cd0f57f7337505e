// Command up runs the whole local pipeline against any PostgreSQL: the AWS stand-in on
// 127.0.0.1:4566 with template.yaml deployed, the streamer, and one execution of the
// snapshot state machine. It stays up for inspection until SIGTERM or Ctrl-C (make down),
// then stops everything it started. The database itself is left alone, except for
// Tandem's publication and slot (drop them with --drop-slot on the way down).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"tandem/localstack/standin"
)

func main() {
	pgURL := flag.String("pg-url", os.Getenv("TANDEM_PG_URL"), "PostgreSQL connection URL (wal_level=logical, a role with REPLICATION)")
	tables := flag.String("tables", "", "comma-separated schema.table list (default: every table)")
	addr := flag.String("addr", "127.0.0.1:4566", "where the AWS endpoint listens")
	state := flag.String("state", ".standin", "directory for logs and up.json")
	dropSlot := flag.Bool("drop-slot", false, "drop Tandem's slot and publication when stopping")
	flag.Parse()
	if *pgURL == "" {
		fmt.Fprintln(os.Stderr, "up: --pg-url (or TANDEM_PG_URL) is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *pgURL, *tables, *addr, *state, *dropSlot); err != nil {
		fmt.Fprintln(os.Stderr, "up:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, pgURL, tables, addr, state string, dropSlot bool) error {
	dir, err := filepath.Abs(state)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s, err := standin.Start(standin.Options{Addr: addr, Dir: dir})
	if err != nil {
		return err
	}
	defer s.Stop()
	root, err := standin.ModuleRoot()
	if err != nil {
		return err
	}
	stack, err := s.Deploy(ctx, standin.DeployOptions{Stack: "tandem", Template: filepath.Join(root, "template.yaml"),
		PostgresURL: pgURL, Params: map[string]string{"Tables": tables}})
	if err != nil {
		return err
	}
	streamer, err := s.StartStreamer(ctx, stack)
	if err != nil {
		return err
	}
	defer streamer.Stop()
	select {
	case <-streamer.Done():
		log, _ := os.ReadFile(streamer.Log)
		return fmt.Errorf("the streamer exited at once:\n%s", log)
	case <-time.After(2 * time.Second):
	}
	execution, err := s.StartExecution(ctx, stack, "snapshot-1", "{}")
	if err != nil {
		return err
	}
	summary := map[string]any{"endpoint": s.Endpoint, "execution": execution, "stack": stack.Outputs, "logs": dir}
	b, _ := json.MarshalIndent(summary, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "up.json"), b, 0o644); err != nil {
		return err
	}
	fmt.Printf("Tandem is up.\n%s\n", b)

	select {
	case <-ctx.Done():
	case <-streamer.Done():
		fmt.Fprintf(os.Stderr, "up: the streamer exited; see %s\n", streamer.Log)
	}
	streamer.Stop()
	if dropSlot {
		if conn, err := pgx.Connect(context.Background(), pgURL); err == nil {
			_, _ = conn.Exec(context.Background(), "SELECT pg_drop_replication_slot('tandem') FROM pg_replication_slots WHERE slot_name = 'tandem'")
			_, _ = conn.Exec(context.Background(), "DROP PUBLICATION IF EXISTS tandem")
			_ = conn.Close(context.Background())
		}
	}
	_ = os.Remove(filepath.Join(dir, "up.json"))
	return nil
}
