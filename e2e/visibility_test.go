package e2e

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkVisibility measures how long a pair renamed into a watched
// directory takes to show up on /metrics (the foundation's target: within
// 50 ms), with the default settle time and tick:
//
//	go test -run '^$' -bench Visibility -benchtime 50x ./e2e
func BenchmarkVisibility(b *testing.B) {
	dir := b.TempDir()
	reg, ready, stop := runServeWith(b, dir, 10*time.Millisecond, 10*time.Millisecond)
	defer stop()
	<-ready
	w := newWriter(b, dir)
	var worst time.Duration
	var total time.Duration
	for i := 0; i < b.N; i++ {
		before := e2eCount(b, reg)
		start := time.Now()
		w.request()
		for e2eCount(b, reg) == before {
			time.Sleep(200 * time.Microsecond)
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/pair")
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}

func e2eCount(tb testing.TB, reg *prometheus.Registry) uint64 {
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == "llm_request_e2e_seconds" {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}
