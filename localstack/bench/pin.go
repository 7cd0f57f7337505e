package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
)

// pinnedEnv marks a bench process that already runs on its share of the CPUs; it holds
// the plan, "endpoint/rest".
const pinnedEnv = "TANDEM_BENCH_PINNED"

// cpuPlan is how the run shares this machine's CPUs: the endpoint gets the last CPU to
// itself and everything else (this process, the PostgreSQL it starts, Tandem's code)
// the others. DynamoDB is a remote service whose capacity does not shrink when the source
// or the streamer gets busy; a local endpoint sharing two cores with them does, and
// then the figures measure the scheduler, not Tandem: the concurrent mode, which runs
// the streamer and PostgreSQL's WAL decoding beside the snapshots, lost 10-25% of its
// time to consistent that way.
type cpuPlan struct {
	endpoint string // taskset list of the endpoint's CPUs; "" when unpinned
	rest     string
	why      string // why the run is not pinned
}

func planCPUs(pin bool) cpuPlan {
	// After the re-exec, NumCPU counts only this process's share: the plan came along.
	if endpoint, rest, ok := strings.Cut(os.Getenv(pinnedEnv), "/"); ok {
		return cpuPlan{endpoint: endpoint, rest: rest}
	}
	n := runtime.NumCPU()
	switch {
	case !pin:
		return cpuPlan{why: "-pin=false"}
	case n < 2:
		return cpuPlan{why: "one CPU"}
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return cpuPlan{why: "no taskset (util-linux)"}
	}
	rest := "0"
	if n > 2 {
		rest = fmt.Sprintf("0-%d", n-2)
	}
	return cpuPlan{endpoint: fmt.Sprint(n - 1), rest: rest}
}

// describe says how the CPUs are shared, for the run's header.
func (p cpuPlan) describe() string {
	if p.endpoint == "" {
		return "endpoint, PostgreSQL and Tandem share every CPU (" + p.why + ")"
	}
	return fmt.Sprintf("dynalite on CPU %s, PostgreSQL and Tandem on CPU %s", p.endpoint, p.rest)
}

// reexecPinned replaces this process with itself under taskset on the plan's other CPUs,
// once: every thread the runtime starts, and PostgreSQL started later, inherit the mask.
func (p cpuPlan) reexecPinned() error {
	if p.endpoint == "" || os.Getenv(pinnedEnv) != "" {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return err
	}
	args := append([]string{"taskset", "-c", p.rest, self}, os.Args[1:]...)
	return syscall.Exec(taskset, args, append(os.Environ(), pinnedEnv+"="+p.endpoint+"/"+p.rest))
}
