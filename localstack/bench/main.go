// Command bench measures Tandem's throughput and its bounds against a real PostgreSQL 15
// and dynalite (the local DynamoDB endpoint fast enough to show scaling; moto saturates
// at one worker), both started here by localstack/testenv. `make bench` runs it;
// `make bench-scale` runs it with -scale (larger tables, the bounded figures).
//
// The CPU of this machine is shared and noisy, so no figure is an absolute number: each
// is measured next to its reference in the same run (the endpoint's raw conditional
// PutItem ceiling at the same concurrency, or the other mode on the same workload), and
// the summary prints the ratio against the target. A missed target is printed as
// MISS; the program still exits 0 (it is a measurement, not a test), and non-zero only
// when a figure could not be measured at all.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"text/tabwriter"
	"time"

	"tandem/localstack/testenv"
)

// sizes are the dataset sizes of one run.
type sizes struct {
	rawOps        int // PutItems of the range speedup's raw-ceiling measurement (×4); the write-efficiency references write as many items as the figure they are compared with
	snapshotRows  int // rows of the write-efficiency snapshot
	streamChanges int // changes of the write-efficiency stream
	tableRows     int // rows of each of the 4 tables of concurrent vs snapshot-then-stream
	truncateRows  int // rows of the truncated table
	rangeRows     int // rows of the range-speedup table (the issue asks ≥ 200k: make bench 200k, bench-scale 400k)
	boundedRows   int // rows of the bounded figures (bench-scale only)
}

var (
	benchSizes = sizes{rawOps: 8000, snapshotRows: 20000, streamChanges: 20000, tableRows: 10000, truncateRows: 100000, rangeRows: 200000}
	scaleSizes = sizes{rawOps: 20000, snapshotRows: 100000, streamChanges: 100000, tableRows: 50000, truncateRows: 100000, rangeRows: 400000, boundedRows: 1000000}
)

// concurrency is the DynamoDB writes in flight of one snapshot worker and of the streamer
// in the write-efficiency figures, and so of the raw ceiling they are compared with.
const concurrency = 16

// loadRate is the steady write load (changes per second) on the source during the
// concurrent, snapshot-then-stream and TRUNCATE runs.
const loadRate = 100

func main() {
	scale := flag.Bool("scale", false, "bench-scale: larger tables and the bounded figures (1M rows)")
	only := flag.String("only", "", "comma-separated figure groups to run (raw,write,concurrent,truncate,ranges,bounded); all by default")
	quick := flag.Bool("quick", false, "tiny tables, to check the program itself (figures meaningless)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this `file` (go tool pprof)")
	pin := flag.Bool("pin", true, "give the endpoint a CPU of its own and run everything else on the others (see pin.go)")
	flag.Parse()
	cpus := planCPUs(*pin)
	if err := cpus.reexecPinned(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: cannot pin to CPUs:", err)
		os.Exit(1)
	}
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer stopProfile()
	}
	sz := benchSizes
	if *scale {
		sz = scaleSizes
	}
	if *quick {
		sz = sizes{rawOps: 1000, snapshotRows: 1000, streamChanges: 1000, tableRows: 1000, truncateRows: 1000, rangeRows: 4000, boundedRows: sz.boundedRows / 100}
	}
	b, err := start(sz, cpus)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: cannot start the stack:", err)
		os.Exit(1)
	}
	code := b.run(*only)
	b.stop()
	if code != 0 {
		os.Exit(code)
	}
}

// startCPUProfile profiles this process until the returned function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// bench is one run: the stack, its sizes and the figures measured so far.
type bench struct {
	ctx   context.Context
	sz    sizes
	pg    *testenv.Postgres
	dyn   *testenv.Dynalite
	log   *slog.Logger
	rows  []row
	began time.Time
	seq   int
}

// row is one line of the summary.
type row struct {
	figure, value, reference, ratio, target string
	pass                                    *bool // nil: informational, no target
}

func start(sz sizes, cpus cpuPlan) (*bench, error) {
	b := &bench{ctx: context.Background(), sz: sz, began: time.Now(),
		log: slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))}
	var err error
	if b.pg, err = testenv.StartPostgres(testenv.PostgresOptions{}); err != nil {
		return nil, err
	}
	if b.dyn, err = testenv.StartDynaliteWith(testenv.DynaliteOptions{CPUs: cpus.endpoint}); err != nil {
		b.pg.Stop()
		return nil, err
	}
	fmt.Printf("bench: PostgreSQL 15 and dynalite %s (%s) started; %s\n", testenv.DynaliteVersion, b.dyn.Endpoint, cpus.describe())
	return b, nil
}

func (b *bench) stop() {
	b.dyn.Stop()
	b.pg.Stop()
}

// group is one set of figures measured together.
type group struct {
	name string
	run  func(*bench) error
}

func (b *bench) run(only string) int {
	groups := []group{
		{"write", (*bench).writeEfficiency},
		{"concurrent", (*bench).concurrentVsSequential},
		{"truncate", (*bench).truncateLag},
		{"ranges", (*bench).rangeSpeedup},
	}
	if b.sz.boundedRows > 0 {
		groups = append(groups, group{"bounded", (*bench).bounded})
	}
	want := map[string]bool{}
	for _, g := range strings.Split(only, ",") {
		if g = strings.TrimSpace(g); g != "" {
			want[g] = true
		}
	}
	failed := 0
	for _, g := range groups {
		if len(want) > 0 && !want[g.name] {
			continue
		}
		t0 := time.Now()
		fmt.Printf("\n== %s\n", g.name)
		if err := g.run(b); err != nil {
			failed++
			fmt.Printf("%s: could not be measured: %v\n", g.name, err)
			b.rows = append(b.rows, row{figure: g.name, value: "ERROR (see above)", pass: ptr(false)})
		}
		fmt.Printf("(%s took %s)\n", g.name, time.Since(t0).Round(time.Second))
	}
	b.summary()
	if failed > 0 {
		return 1
	}
	return 0
}

// note prints a progress line with the time since the run began.
func (b *bench) note(format string, args ...any) {
	fmt.Printf("  [%6.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func ptr(v bool) *bool { return &v }

// add records a figure with a target: ratio = value/reference must be ≥ min (atLeast) or
// ≤ max.
func (b *bench) ratio(figure string, value, reference float64, unit string, atLeast bool, bound float64) {
	r := value / reference
	pass := r <= bound
	target := fmt.Sprintf("≤ %.2f×", bound)
	if atLeast {
		pass = r >= bound
		target = fmt.Sprintf("≥ %.0f%%", bound*100)
	}
	ratio := fmt.Sprintf("%.2f×", r)
	if atLeast {
		ratio = fmt.Sprintf("%.0f%%", r*100)
	}
	b.rows = append(b.rows, row{figure: figure, value: format(value, unit), reference: format(reference, unit), ratio: ratio, target: target, pass: &pass})
	fmt.Printf("  %-52s %s vs %s: %s (target %s)\n", figure, format(value, unit), format(reference, unit), ratio, target)
}

// absolute records a figure with an absolute bound (lag < 2 s, RSS < 150 MB).
func (b *bench) absolute(figure string, value float64, unit string, bound float64) {
	pass := value < bound
	b.rows = append(b.rows, row{figure: figure, value: format(value, unit), reference: "-", ratio: "-", target: "< " + format(bound, unit), pass: &pass})
	fmt.Printf("  %-52s %s (target < %s)\n", figure, format(value, unit), format(bound, unit))
}

// info records a figure without a target.
func (b *bench) info(figure string, value float64, unit string) {
	b.rows = append(b.rows, row{figure: figure, value: format(value, unit), reference: "-", ratio: "-", target: "-"})
	fmt.Printf("  %-52s %s\n", figure, format(value, unit))
}

func format(v float64, unit string) string {
	switch unit {
	case "s":
		return fmt.Sprintf("%.2f s", v)
	case "B":
		switch {
		case v >= 1<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		case v >= 1<<10:
			return fmt.Sprintf("%.1f KiB", v/(1<<10))
		}
		return fmt.Sprintf("%.0f B", v)
	case "×":
		return fmt.Sprintf("%.2f×", v)
	case "µs":
		return fmt.Sprintf("%.0f µs", v)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func (b *bench) summary() {
	fmt.Printf("\n== summary (dynalite %s, %d writes in flight per worker, %s in all)\n", testenv.DynaliteVersion, concurrency, time.Since(b.began).Round(time.Second))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tvalue\treference\tratio\ttarget\tresult")
	pass, miss := 0, 0
	for _, r := range b.rows {
		res := "-"
		if r.pass != nil {
			if *r.pass {
				res, pass = "PASS", pass+1
			} else {
				res, miss = "MISS", miss+1
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.figure, r.value, r.reference, r.ratio, r.target, res)
	}
	w.Flush()
	fmt.Printf("%d targets met, %d missed\n", pass, miss)
}
