package report

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/parser"
)

// checkPopulation: the report's population is every request the server
// observed (each golden directory starts with a fresh server and ends
// after its last request), damaged files or not: count and total of each
// family equal the truth's.
func checkPopulation(t *testing.T, r *Report, truth map[string]simulate.Truth) {
	t.Helper()
	for i := range r.Summary.Models {
		ms := &r.Summary.Models[i]
		if ms.Model == "" {
			continue
		}
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			n, total := 0, 0.0
			for _, tr := range truth {
				if tr.Model == ms.Model {
					n++
					total += tr.Value(m)
				}
			}
			p := ms.Population[m]
			if p == nil || p.Count != uint64(n) || math.Abs(p.Total-total) > 1e-6*max(1, total) {
				t.Errorf("%s %s: population %+v, want %d requests totalling %v", ms.Model, m.Name(), p, n, total)
			}
		}
	}
}

func TestBucketOf(t *testing.T) {
	h := &population.Hist{Bounds: []float64{0.1, 0.5, 1}, Buckets: []uint64{2, 9, 9}, Count: 10}
	for _, tc := range []struct {
		p    int
		want BucketRange
	}{
		{10, BucketRange{0, 0.1}},   // rank 1
		{20, BucketRange{0, 0.1}},   // rank 2: the last in le=0.1
		{50, BucketRange{0.1, 0.5}}, // rank 5
		{90, BucketRange{0.1, 0.5}}, // rank 9
		{99, BucketRange{1, math.Inf(1)}},
	} {
		if got := bucketOf(h, tc.p); got != tc.want {
			t.Errorf("p%d in %v, want %v", tc.p, got, tc.want)
		}
	}
}

func TestBiasWarning(t *testing.T) {
	for _, tc := range []struct {
		exactMean, popMean float64
		warn               bool
	}{
		{1.0, 1.0, false}, {1.09, 1.0, false}, {0.91, 1.0, false}, {1.11, 1.0, true}, {0.85, 1.0, true},
	} {
		ms := &ModelSummary{}
		ms.Metrics[parser.TTFT] = Stats{Count: 5, Mean: tc.exactMean}
		ms.Population[parser.TTFT] = &PopulationStats{Count: 10, Mean: tc.popMean}
		if got := ms.BiasWarning(int(parser.TTFT)); got != tc.warn {
			t.Errorf("exact mean %v, population mean %v: warning %v, want %v", tc.exactMean, tc.popMean, got, tc.warn)
		}
		if c, _ := ms.Coverage(int(parser.TTFT)); c != 0.5 {
			t.Errorf("coverage %v, want 0.5", c)
		}
	}
}

// TestPopulationFilters: --model keeps that model's population only;
// --since/--until select the snapshots by the time in their names.
func TestPopulationFilters(t *testing.T) {
	dir := os.DirFS(filepath.Join(goldenDir, "overlapping"))
	run := func(f Filter) *Report {
		r, err := Run(context.Background(), Config{FS: dir, TrustAfters: true, Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	all := run(Filter{})
	if p := all.Summary.Models[0].Population[parser.E2E]; p == nil || p.Count != 10 {
		t.Fatalf("whole directory: e2e population %+v, want 10", p)
	}
	for _, m := range run(Filter{Model: "org/other"}).Summary.Models {
		for _, p := range m.Population {
			if p != nil {
				t.Fatalf("--model=org/other shows %s's population", m.Model)
			}
		}
	}
	// The first half of the run: fewer observations, never more.
	first := all.Requests[0].BeforeTime
	last := all.Requests[len(all.Requests)-1].BeforeTime
	half := run(Filter{Until: first.Add(last.Sub(first) / 2)})
	if p := half.Summary.Models[0].Population[parser.E2E]; p == nil || p.Count == 0 || p.Count >= 10 {
		t.Fatalf("--until half-way: e2e population %+v, want between 1 and 9", p)
	}
}
