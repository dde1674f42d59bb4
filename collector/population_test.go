package collector

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/parser"
)

// scrapeOf is a snapshot with one TTFT series per model, count n each,
// every observation at 0.25 s, buckets 0.1, 0.25, +Inf (the server's own).
func scrapeOf(n float64, models ...string) *parser.Snapshot {
	s := &parser.Snapshot{ProcessStartTime: 1.7e9, HasProcessStartTime: true}
	for _, m := range models {
		s.Series = append(s.Series, parser.Series{Metric: parser.TTFT, Labels: `model_name="` + m + `"`, Model: m,
			Count: n, Sum: 0.25 * n, Buckets: []parser.Bucket{{UpperBound: 0.1}, {UpperBound: 0.25, Count: n}, {UpperBound: math.Inf(1), Count: n}}})
	}
	return s
}

// TestPopulationFamilies: the server's histogram is published as it
// grew between snapshots, with its own bounds; models are folded by the
// same table as the per-request families (so the two compare), and a
// model the population shows has its per-request series at 0, so that
// coverage is 0, not absent.
func TestPopulationFamilies(t *testing.T) {
	c, reg := newCollector(t, 1)
	pop := population.New(population.Config{Label: c.PopulationLabel})
	if _, err := NewPopulationMetrics(reg, pop); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pop.Observe(at, scrapeOf(2, "a", "b"))
	pop.Observe(at.Add(time.Second), scrapeOf(5, "a", "b"))
	c.Publish(exact("r1", "b", 0.5)) // "a" took the one slot: "b" is other on both sides
	want := `
# HELP llm_population_time_to_first_token_seconds Time to first token of all requests observed by the server, from its own histogram (its bucket bounds); not per-request.
# TYPE llm_population_time_to_first_token_seconds histogram
llm_population_time_to_first_token_seconds_bucket{model_name="a",le="0.1"} 0
llm_population_time_to_first_token_seconds_bucket{model_name="a",le="0.25"} 3
llm_population_time_to_first_token_seconds_bucket{model_name="a",le="+Inf"} 3
llm_population_time_to_first_token_seconds_sum{model_name="a"} 0.75
llm_population_time_to_first_token_seconds_count{model_name="a"} 3
llm_population_time_to_first_token_seconds_bucket{model_name="other",le="0.1"} 0
llm_population_time_to_first_token_seconds_bucket{model_name="other",le="0.25"} 3
llm_population_time_to_first_token_seconds_bucket{model_name="other",le="+Inf"} 3
llm_population_time_to_first_token_seconds_sum{model_name="other"} 0.75
llm_population_time_to_first_token_seconds_count{model_name="other"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "llm_population_time_to_first_token_seconds"); err != nil {
		t.Fatal(err)
	}
	// One range per server series (two models) and process, none forgotten.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`# HELP delta_exporter_population_hulls Ranges of server snapshots the population families keep, one per server series and process: those whose snapshot files are in the directory or went less than the forget delay ago.
# TYPE delta_exporter_population_hulls gauge
delta_exporter_population_hulls 2
# HELP delta_exporter_population_hulls_forgotten_total Ranges of server snapshots the population families forgot (and dropped from their record): no snapshot file of theirs was left in the directory for the forget delay.
# TYPE delta_exporter_population_hulls_forgotten_total counter
delta_exporter_population_hulls_forgotten_total 0
`), "delta_exporter_population_hulls", "delta_exporter_population_hulls_forgotten_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exactCount := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() == "llm_request_time_to_first_token_seconds" {
			for _, m := range mf.GetMetric() {
				exactCount[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	if len(exactCount) != 2 || exactCount["a"] != 0 || exactCount["other"] != 1 {
		t.Fatalf("per-request TTFT series %v, want a at 0 and other at 1", exactCount)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}
