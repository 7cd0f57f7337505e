package e2e

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"tandem/shared/config"
)

// heapPeak samples the heap while f runs and returns the largest in-use size in MiB.
func heapPeak(f func()) float64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	f()
	close(stop)
	<-done
	return float64(peak.Load()) / (1 << 20)
}

// BenchmarkStreamLargeTransaction streams one transaction of N inserted rows through the
// streamer into DynamoDB (moto) and reports changes applied per second and the peak heap:
// the heap must not grow with the transaction (DESIGN §2.10).
func BenchmarkStreamLargeTransaction(b *testing.B) {
	for _, rows := range []int{2000, 8000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			f := newFixture(b, "CREATE TABLE bulk (id int PRIMARY KEY, payload text)", func(c *config.Config) { c.MaxInFlight = 1000 })
			f.plan()
			f.snapshot("public.bulk")
			f.startStreamer(nil)
			f.waitCaughtUp()
			b.ResetTimer()
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				peak := heapPeak(func() {
					f.exec("INSERT INTO bulk SELECT g, repeat('x', 200) || g FROM generate_series($1::int, $2::int) g", i*rows, (i+1)*rows-1)
					began := time.Now()
					f.waitCaughtUp()
					elapsed += time.Since(began)
				})
				b.ReportMetric(peak, "peak-heap-MiB")
			}
			b.ReportMetric(float64(rows*b.N)/elapsed.Seconds(), "changes/s")
		})
	}
}

// BenchmarkSnapshot copies a table of N rows and reports rows per second.
func BenchmarkSnapshot(b *testing.B) {
	const rows = 4000
	for i := 0; i < b.N; i++ {
		f := newFixture(b, "CREATE TABLE bulk (id int PRIMARY KEY, payload text); INSERT INTO bulk SELECT g, repeat('y', 200) FROM generate_series(1, 4000) g", nil)
		f.plan()
		began := time.Now()
		f.snapshot("public.bulk")
		b.ReportMetric(rows/time.Since(began).Seconds(), "rows/s")
	}
}
