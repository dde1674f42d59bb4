package collector

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/watch"
	"github.com/delta-exporter/delta-exporter/parser"
)

func exact(id, model string, e2e float64) attribution.Result {
	res := attribution.Result{RequestID: id, Model: model, Outcome: attribution.Exact}
	for m := range res.Values {
		res.Values[m] = attribution.Value{V: 1, Exact: true}
	}
	res.Values[parser.E2E].V = e2e
	res.Values[parser.GenerationTokens].V = 5
	res.Values[parser.Decode].V = 0.4
	res.TPOT = attribution.Value{V: 0.1, Exact: true}
	return res
}

func newCollector(t *testing.T, maxModels int) (*Collector, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Config{Registerer: reg, MaxModels: maxModels, Now: func() time.Time { return time.Unix(1700000000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewStateMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRetentionMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return c, reg
}

// TestMaxModelsFoldsIntoOther: model names are input. Beyond
// --labels.max-models distinct values, observations go to
// model_name="other" and are counted; the label never takes more than
// max+1 values, whatever arrives (a flood of names, a model literally
// called "other").
func TestMaxModelsFoldsIntoOther(t *testing.T) {
	c, reg := newCollector(t, 3)
	for i := 0; i < 1000; i++ {
		c.Publish(exact(fmt.Sprintf("r%d", i), fmt.Sprintf("attacker/model-%d-%s", i, strings.Repeat("x", i%50)), 0.5))
	}
	c.Publish(exact("again", "attacker/model-1-x", 0.5)) // a kept model stays itself
	c.Publish(exact("named-other", OtherModel, 0.5))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	models := map[string]uint64{}
	var folded float64
	for _, mf := range mfs {
		switch mf.GetName() {
		case "llm_request_e2e_seconds":
			for _, m := range mf.GetMetric() {
				models[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
			}
		case "delta_exporter_models_folded_total":
			folded = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if len(models) != 4 {
		t.Fatalf("model_name values: %d (%v), want 3 + other", len(models), models)
	}
	if models["attacker/model-1-x"] != 2 || models[OtherModel] != 998 {
		t.Fatalf("counts %v", models)
	}
	if folded != 998 {
		t.Fatalf("folded = %v, want 998", folded)
	}
	var total uint64
	for _, n := range models {
		total += n
	}
	if total != 1002 {
		t.Fatalf("observations = %d, want every request once (1002)", total)
	}
}

// TestMetricsLint: every family, including the state and retention ones,
// passes the Prometheus naming lint once requests are published.
func TestMetricsLint(t *testing.T) {
	c, reg := newCollector(t, 0)
	c.Publish(exact("a", "m", 0.25))
	rej := attribution.NewRejected(&attribution.Request{ID: "b"}, attribution.RejectRestart)
	c.Publish(rej)
	c.SnapshotRejected("f", "parse_error", errors.New("x"))
	c.FileIgnored("name")
	c.WatchEvent("create")
	c.Rescan("initial")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestPublishedRequest: one exact request is one observation in each
// histogram and one count of its outcome; a rejected one is no
// observation and one rejection.
func TestPublishedRequest(t *testing.T) {
	c, reg := newCollector(t, 0)
	c.Publish(exact("req-1", "org/model", 0.25))
	c.Publish(attribution.NewRejected(&attribution.Request{ID: "req-2"}, attribution.RejectCounterReset))
	want := `
# HELP delta_exporter_request_rejections_total Rejected requests, by reason.
# TYPE delta_exporter_request_rejections_total counter
delta_exporter_request_rejections_total{reason="bad_snapshot"} 0
delta_exporter_request_rejections_total{reason="counter_reset"} 1
delta_exporter_request_rejections_total{reason="duplicate"} 0
delta_exporter_request_rejections_total{reason="restart"} 0
# HELP delta_exporter_requests_total Requests decided, by outcome (exact, partial, withheld, rejected, unpaired).
# TYPE delta_exporter_requests_total counter
delta_exporter_requests_total{outcome="exact"} 1
delta_exporter_requests_total{outcome="partial"} 0
delta_exporter_requests_total{outcome="rejected"} 1
delta_exporter_requests_total{outcome="unpaired"} 0
delta_exporter_requests_total{outcome="withheld"} 0
# HELP delta_exporter_last_ingest_timestamp_seconds Unix time at which the last request was decided; 0 until the first (see delta_exporter_start_time_seconds).
# TYPE delta_exporter_last_ingest_timestamp_seconds gauge
delta_exporter_last_ingest_timestamp_seconds 1.7e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"delta_exporter_requests_total", "delta_exporter_request_rejections_total", "delta_exporter_last_ingest_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "llm_request_e2e_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if len(mf.GetMetric()) != 1 || h.GetSampleCount() != 1 || h.GetSampleSum() != 0.25 {
			t.Fatalf("e2e histogram: %v", mf)
		}
		var le025 uint64
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 0.3 {
				le025 = b.GetCumulativeCount()
			}
			if b.GetUpperBound() == 0.2 && b.GetCumulativeCount() != 0 {
				t.Errorf("0.25 counted in le=0.2")
			}
			if ex := b.GetExemplar(); ex != nil && ex.GetLabel()[0].GetValue() != "req-1" {
				t.Errorf("exemplar %v", ex)
			}
		}
		if le025 != 1 {
			t.Errorf("0.25 not in le=0.3")
		}
		return
	}
	t.Fatal("no llm_request_e2e_seconds family")
}

// TestStartTime: the start time is set at creation, before any request is
// decided, so "time since the last ingest" has a reference on a fresh
// exporter (DeltaExporterStalled counts from it).
func TestStartTime(t *testing.T) {
	_, reg := newCollector(t, 0)
	want := `
# HELP delta_exporter_last_ingest_timestamp_seconds Unix time at which the last request was decided; 0 until the first (see delta_exporter_start_time_seconds).
# TYPE delta_exporter_last_ingest_timestamp_seconds gauge
delta_exporter_last_ingest_timestamp_seconds 0
# HELP delta_exporter_start_time_seconds Unix time at which the exporter started: the reference for the time since the last ingest before the first decision.
# TYPE delta_exporter_start_time_seconds gauge
delta_exporter_start_time_seconds 1.7e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"delta_exporter_last_ingest_timestamp_seconds", "delta_exporter_start_time_seconds"); err != nil {
		t.Fatal(err)
	}
}

// nativeExemplarIDs returns the request ids of the native exemplars of
// one family and model, and how many observations it holds.
func nativeExemplarIDs(t *testing.T, reg *prometheus.Registry, family, model string) (map[string]bool, uint64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() != model {
				continue
			}
			for _, ex := range m.GetHistogram().GetExemplars() {
				ids[ex.GetLabel()[0].GetValue()] = true
			}
			return ids, m.GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no %s{model_name=%q}", family, model)
	return nil, 0
}

// TestExemplarsKeepBurst: a burst of decisions between two scrapes keeps
// one native exemplar per request up to MaxExemplars, whatever their
// values (client_golang's default, 10 evicted by value proximity, kept
// only a few), and beyond it keeps the newest; every family and model
// has its own set.
func TestExemplarsKeepBurst(t *testing.T) {
	for _, tc := range []struct {
		name           string
		max, decisions int
	}{
		{"below the limit", 50, 40},
		{"at the limit", 50, 50},
		{"beyond the limit", 50, 130},
		{"default limit", 0, DefaultMaxExemplars},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			clock := time.Unix(1700000000, 0)
			c, err := New(Config{Registerer: reg, MaxExemplars: tc.max, Now: func() time.Time { return clock }})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < tc.decisions; i++ {
				for _, model := range []string{"a", "b"} {
					// Values cluster (the case proximity eviction handles worst).
					c.Publish(exact(fmt.Sprintf("%s-%03d", model, i), model, 0.25+float64(i%3)*1e-4))
				}
			}
			limit := tc.max
			if limit == 0 {
				limit = DefaultMaxExemplars
			}
			for _, model := range []string{"a", "b"} {
				for _, fam := range []string{"llm_request_e2e_seconds", "llm_request_time_to_first_token_seconds", "llm_request_time_per_output_token_seconds"} {
					ids, n := nativeExemplarIDs(t, reg, fam, model)
					if n != uint64(tc.decisions) {
						t.Fatalf("%s{%s}: %d observations, want %d", fam, model, n, tc.decisions)
					}
					kept := min(tc.decisions, limit)
					if len(ids) != kept {
						t.Errorf("%s{%s}: %d exemplars, want %d", fam, model, len(ids), kept)
					}
					for i := tc.decisions - kept; i < tc.decisions; i++ {
						if id := fmt.Sprintf("%s-%03d", model, i); !ids[id] {
							t.Errorf("%s{%s}: newest request %s has no exemplar", fam, model, id)
						}
					}
				}
			}
		})
	}
}

// TestProxyFamilies: what capture measured is published for every request
// that has it, whatever the attribution decided (a rejected or withheld
// request too), under the response's model when no series was attributed,
// with the request id as exemplar; a folded model is counted once per
// request.
func TestProxyFamilies(t *testing.T) {
	c, reg := newCollector(t, 1)
	withProxy := func(res attribution.Result, ttft, e2e float64, stream bool) attribution.Result {
		res.Proxy = attribution.ProxyTimes{Model: "m", TTFT: ttft, E2E: e2e, HasTTFT: stream, HasE2E: true}
		return res
	}
	c.Publish(withProxy(exact("a", "m", 0.5), 0.1, 0.6, true))
	c.Publish(withProxy(attribution.Result{RequestID: "b", Outcome: attribution.Rejected, RejectReason: attribution.RejectRestart}, 0, 0.7, false))
	c.Publish(withProxy(attribution.Result{RequestID: "c", Outcome: attribution.Withheld}, 0.2, 0.8, true))
	c.Publish(withProxy(exact("d", "n", 0.5), 0.3, 0.9, true)) // folded: max-models is 1
	c.Publish(exact("e", "m", 0.5))                            // no proxy times: nothing
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		count uint64
		sum   float64
	}
	byFam := map[string]map[string]got{}
	var folded float64
	exemplars := map[string]bool{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "llm_request_proxy_time_to_first_token_seconds", "llm_request_proxy_e2e_seconds":
			byFam[mf.GetName()] = map[string]got{}
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				byFam[mf.GetName()][m.GetLabel()[0].GetValue()] = got{h.GetSampleCount(), h.GetSampleSum()}
				for _, b := range h.GetBucket() {
					if ex := b.GetExemplar(); ex != nil {
						exemplars[ex.GetLabel()[0].GetValue()] = true
					}
				}
			}
		case "delta_exporter_models_folded_total":
			folded = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	close := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
	if g := byFam["llm_request_proxy_time_to_first_token_seconds"]; g["m"].count != 2 || !close(g["m"].sum, 0.3) || g[OtherModel].count != 1 {
		t.Errorf("proxy TTFT: %v", g)
	}
	if g := byFam["llm_request_proxy_e2e_seconds"]; g["m"].count != 3 || !close(g["m"].sum, 2.1) || g[OtherModel].count != 1 {
		t.Errorf("proxy e2e: %v", g)
	}
	if folded != 1 {
		t.Errorf("folded = %v, want 1 (one request)", folded)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if !exemplars[id] {
			t.Errorf("no exemplar for %s (have %v)", id, exemplars)
		}
	}
}

// TestAssumptionStates: delta_exporter_assumptions counts server
// processes per assumption and state; every pair exists from the start,
// and the label set is the fixed list of assumptions, whatever the data.
func TestAssumptionStates(t *testing.T) {
	c, reg := newCollector(t, 10)
	states := func(contradicted attribution.Assumption) attribution.ServerAssumptions {
		sa := attribution.ServerAssumptions{Epoch: "1.7e+09"}
		for _, a := range attribution.Assumptions() {
			st := attribution.AssumptionStatus{Assumption: a, State: attribution.Confirmed}
			if a == contradicted {
				st.State = attribution.Contradicted
			}
			sa.Status = append(sa.Status, st)
		}
		return sa
	}
	c.SetAssumptions([]attribution.ServerAssumptions{states(attribution.TTFTContainsQueuePrefill), states(attribution.ObserveDelay)})
	g := c.assumptions
	for _, tc := range []struct {
		a     attribution.Assumption
		state attribution.State
		want  float64
	}{
		{attribution.TTFTContainsQueuePrefill, attribution.Contradicted, 1},
		{attribution.TTFTContainsQueuePrefill, attribution.Confirmed, 1},
		{attribution.TTFTWithinE2E, attribution.Confirmed, 2},
		{attribution.TTFTWithinE2E, attribution.Unchecked, 0},
	} {
		if got := testutil.ToFloat64(g.WithLabelValues(tc.a.Name(), string(tc.state))); got != tc.want {
			t.Errorf("%s %s = %v, want %v", tc.a.Name(), tc.state, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(g); n != int(attribution.NumAssumptions)*len(attribution.States) {
		t.Errorf("%d series, want %d", n, int(attribution.NumAssumptions)*len(attribution.States))
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// The collector is the sink of the ingester's and the watcher's counts.
var (
	_ ingest.Metrics = (*Collector)(nil)
	_ watch.Counter  = (*Collector)(nil)
)
