package attribution_test

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestPopulationAccuracy: the population families against the
// simulator's truth, at loads where the exact sample is biased. The
// population is the server's own histogram between the first and the
// last snapshot, so for a run that starts on a fresh server it must be
// exactly the histogram of every true value: count, sum and every
// bucket. Its percentiles are then right within bucket resolution: the
// truth's nearest-rank p50/p90/p99 lies in the server bucket the
// population's falls in. The table beside them shows the exact sample's
// p90 and its bias against the truth, which the population does not
// have:
//
//	ACCURACY_REQUESTS=1000 go test -run TestPopulationAccuracy -v ./attribution
func TestPopulationAccuracy(t *testing.T) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("ACCURACY_REQUESTS")); err == nil && v > 0 {
		n = v
	}
	levels := []float64{1.5, 16, 64, 128}
	if testing.Short() {
		n, levels = 100, []float64{16, 64}
	}
	table := []string{
		"| in flight | family | model | true p90 | population p90 in | exact p90 | exact p90 bias | exact coverage |",
		"|---|---|---|---|---|---|---|---|",
	}
	for _, inflight := range levels {
		// The step-synchronous vLLM V1 model of the accuracy table, pairs
		// only, on disk (as measure does).
		dir := t.TempDir()
		truths, err := simulate.Run(runConfig(n, inflight, -1, simulate.ProfileVLLMSteps, 42), simulate.DirSink(dir))
		if err != nil {
			t.Fatal(err)
		}
		// The exact sample with --attribution.trust-afters (the
		// simulator's pairs tool takes each after once the finish is
		// recorded); without it no per-request value is published, and
		// the population is the same: it needs no vouched after.
		var hists map[population.HistKey]population.Hist
		var rec *record.Recorder
		for _, trust := range []bool{false, true} {
			rec = record.New()
			pop := population.New(population.Config{})
			in := ingest.New(ingest.Config{FS: os.DirFS(dir), TrustAfters: trust, Results: rec.Publish, Metrics: rec, Snapshots: observeAll{pop}})
			if err := in.Scan(true); err != nil {
				t.Fatal(err)
			}
			in.Finish()
			rec.NoRejections(t)
			if hists != nil && !reflect.DeepEqual(hists, pop.Hists()) {
				t.Errorf("in flight %v: the population differs with and without --attribution.trust-afters", inflight)
			}
			hists = pop.Hists()
			for _, r := range rec.Results {
				if r.Outcome != attribution.Withheld && !trust {
					t.Fatalf("in flight %v: %s is %s without a vouched after", inflight, r.RequestID, r.Outcome)
				}
			}
		}
		for _, model := range []string{"llama-8b", "qwen-32b"} {
			for _, m := range []parser.Metric{parser.TTFT, parser.E2E, parser.Queue, parser.GenerationTokens} {
				var truth, exact []float64
				for _, tr := range truths {
					if tr.Model == model {
						truth = append(truth, tr.Value(m))
					}
				}
				for _, r := range rec.Results {
					if r.Model == model && r.Values[m].Exact {
						exact = append(exact, r.Values[m].V)
					}
				}
				h, ok := hists[population.HistKey{Metric: m, Model: model}]
				if !ok {
					t.Fatalf("in flight %v: no population for %s %s", inflight, model, m.Name())
				}
				checkHistIsTruth(t, fmt.Sprintf("in flight %v %s %s", inflight, model, m.Name()), &h, truth)
				slices.Sort(truth)
				slices.Sort(exact)
				for _, p := range []int{50, 90, 99} {
					lo, hi := h.PercentileBucket(p)
					if tv := rankOf(truth, p); !(tv > lo || (lo == 0 && tv == 0)) || tv > hi {
						t.Errorf("in flight %v %s %s: true p%d %v outside the population's bucket (%v, %v]", inflight, model, m.Name(), p, tv, lo, hi)
					}
				}
				if m == parser.TTFT || m == parser.E2E {
					lo, hi := h.PercentileBucket(90)
					tv := rankOf(truth, 90)
					ex, bias := "—", "—"
					if len(exact) > 0 {
						ev := rankOf(exact, 90)
						ex, bias = fmt.Sprintf("%.3f", ev), fmt.Sprintf("%+.0f%%", 100*(ev/tv-1))
					}
					table = append(table, fmt.Sprintf("| %5.1f | %s | %s | %.3f | (%g, %g] | %s | %s | %.0f%% |", inflight, m.Name(), model,
						tv, lo, hi, ex, bias, 100*float64(len(exact))/float64(len(truth))))
				}
			}
		}
	}
	t.Logf("population against the truth, %d requests per level, pairs only (every bucket, count and sum equal the truth's):\n%s", n, strings.Join(table, "\n"))
}

// checkHistIsTruth: the population histogram is exactly the histogram of
// the true values.
func checkHistIsTruth(t *testing.T, what string, h *population.Hist, truth []float64) {
	t.Helper()
	sum := 0.0
	for _, v := range truth {
		sum += v
	}
	if h.Count != uint64(len(truth)) || math.Abs(h.Sum-sum) > 1e-6*max(1, sum) {
		t.Errorf("%s: population count %d sum %v, truth %d values summing to %v", what, h.Count, h.Sum, len(truth), sum)
	}
	for i, b := range h.Bounds {
		n := uint64(0)
		for _, v := range truth {
			if v <= b {
				n++
			}
		}
		if h.Buckets[i] != n {
			t.Errorf("%s: bucket le=%v holds %d, truth %d", what, b, h.Buckets[i], n)
		}
	}
}

// rankOf is the nearest-rank p-th percentile of sorted values.
func rankOf(sorted []float64, p int) float64 {
	return sorted[max((p*len(sorted)+99)/100, 1)-1]
}

// observeAll hands every snapshot to the population.
type observeAll struct{ pop *population.Population }

func (o observeAll) ObserveSnapshots(seen []ingest.SeenSnapshot, _ []string) {
	for _, s := range seen {
		o.pop.Observe(s.Time, s.Snapshot)
	}
}
