package serve

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/collector"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/state"
	"github.com/delta-exporter/delta-exporter/parser"
)

// BenchmarkPopulationObserve: the cost of handing 1,000 snapshots (500
// requests' before and after) to the population under the journal's
// lock, one file a lock (batch=1, as before ingest batched) against
// ingest's batches (batch=64); alone, and while scrapes gather the
// population in a loop (each holds the journal's view: a publication
// waits for it); and, for scale, parsing the same 1,000 files
// (parse), the bulk of what ingest does with a file. Compare the
// sub-benchmarks' ns/op in one run.
func BenchmarkPopulationObserve(b *testing.B) {
	const n = 1000
	srv := simulate.NewServer(simulate.ServerConfig{Models: []string{"org/model"}})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := make([]ingest.SeenSnapshot, 0, n)
	var bodies [][]byte
	for i := range n {
		if i%2 == 1 {
			srv.ObserveFirstToken("org/model", 0, 0.05)
			srv.ObserveFinish("org/model", 0, simulate.Finish{Queue: 0.01, Prefill: 0.02, Decode: 0.2, Inference: 0.22, E2E: 0.23, PromptTokens: 10, GenerationTokens: 3})
		}
		var buf bytes.Buffer
		srv.WriteTo(&buf)
		bodies = append(bodies, bytes.Clone(buf.Bytes()))
		snap, err := parser.Scan(buf.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		at := start.Add(time.Duration(i) * time.Second)
		seen = append(seen, ingest.SeenSnapshot{Name: parser.FormatName(fmt.Sprintf("r%d", i/2), parser.Before, at), Time: at, Snapshot: snap})
	}
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			for _, body := range bodies {
				if _, err := parser.Scan(body); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	for _, scraping := range []bool{false, true} {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("scraping=%v/batch=%d", scraping, batch), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					j, _, err := state.OpenJournal(state.Config{})
					if err != nil {
						b.Fatal(err)
					}
					pop := population.New(population.Config{})
					reg := prometheus.NewRegistry()
					if _, err := collector.NewPopulationMetrics(reg, pop); err != nil {
						b.Fatal(err)
					}
					obs := journaledSnapshots{pop: pop, j: j}
					stop := make(chan struct{})
					var wg sync.WaitGroup
					if scraping {
						wg.Go(func() {
							for {
								select {
								case <-stop:
									return
								default:
								}
								j.View(func() { reg.Gather() })
							}
						})
					}
					b.StartTimer()
					for i := 0; i < n; i += batch {
						obs.ObserveSnapshots(seen[i:min(i+batch, n)], nil)
					}
					b.StopTimer()
					close(stop)
					wg.Wait()
					b.StartTimer()
				}
			})
		}
	}
}
