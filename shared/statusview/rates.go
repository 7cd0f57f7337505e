package statusview

import (
	"time"

	"tandem/shared/control"
	"tandem/shared/pipeline"
)

// Rates measures each running table's copy rate between successive reads, over the
// last Window: `tandem status --watch` shows how fast a snapshot goes now, where a
// single read can only average since the snapshot started (a resumed or throttled
// snapshot is then far off).
type Rates struct {
	Window  time.Duration
	samples map[string][]sample
}

type sample struct {
	at   time.Time
	rows int64
}

// NewRates measures over the last 30 seconds.
func NewRates() *Rates { return &Rates{Window: 30 * time.Second, samples: map[string][]sample{}} }

// minSpan is the shortest span a rate is measured over: chunks land in bursts.
const minSpan = 2 * time.Second

// Apply records this read of out (at now) and, for each running table seen for at
// least minSpan, replaces its rate and time left with the measured ones.
func (r *Rates) Apply(out *pipeline.StatusOutput, now time.Time) {
	seen := map[string]bool{}
	for i := range out.Tables {
		t := &out.Tables[i]
		seen[t.Table] = true
		if t.State != control.Running {
			delete(r.samples, t.Table)
			continue
		}
		s := r.samples[t.Table]
		if n := len(s); n > 0 && s[n-1].rows > t.RowsCopied {
			s = nil // snapshotted again from the start
		}
		s = append(s, sample{now, t.RowsCopied})
		for len(s) > 2 && now.Sub(s[1].at) >= r.Window {
			s = s[1:]
		}
		r.samples[t.Table] = s
		span := now.Sub(s[0].at)
		if span < minSpan {
			continue
		}
		rate := float64(t.RowsCopied-s[0].rows) / span.Seconds()
		t.RowsPerSecond = &rate
		total := int64(-1)
		if t.RowsEstimate != nil {
			total = *t.RowsEstimate
		}
		t.SetEstimate(pipeline.Estimate{Copied: t.RowsCopied, Total: total, Rate: rate})
	}
	for name := range r.samples {
		if !seen[name] {
			delete(r.samples, name)
		}
	}
}
