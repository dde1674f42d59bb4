package attribution_test

import (
	"os"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// BenchmarkIngestVsReadFile is the foundation's speed target: ingesting a
// realistic vLLM V1 snapshot (parse, reduce to a point, add it to the
// timeline) must cost at most 2x reading the file. Both are timed in the
// same loop on the same file, and the ratio is reported:
//
//	go test -run '^$' -bench IngestVsReadFile ./attribution
//
// Measured on the 2-core VM (other jobs running): ingest/read 0.6-1.4.
func BenchmarkIngestVsReadFile(b *testing.B) {
	const path = "../../testdata/realistic/vllm-v1-34k.prom"
	if _, err := os.Stat(path); err != nil {
		b.Skip(err)
	}
	tl := attribution.NewTimeline()
	var read, ingest time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		data, err := os.ReadFile(path)
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		snap, err := parser.Scan(data)
		if err != nil {
			b.Fatal(err)
		}
		p, ok := attribution.NewPoint(snap)
		if !ok {
			b.Fatal("NewPoint")
		}
		tl.AddPoint(p)
		read += t1.Sub(t0)
		ingest += time.Since(t1)
	}
	b.ReportMetric(float64(ingest)/float64(read), "ingest/read")
	b.ReportMetric(float64(read)/float64(b.N), "read-ns/op")
	b.ReportMetric(float64(ingest)/float64(b.N), "ingest-ns/op")
}
