package report

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

func TestNearestRank(t *testing.T) {
	ten := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		vals []float64
		p    int
		want float64
	}{
		{[]float64{7}, 50, 7},
		{[]float64{7}, 99, 7},
		{[]float64{1, 2}, 50, 1},
		{[]float64{1, 2}, 90, 2},
		{ten, 50, 5},
		{ten, 90, 9}, // rank ceil(9.0): no float rounding up to 10
		{ten, 99, 10},
		{ten, 1, 1},
	} {
		if got := nearestRank(tc.vals, tc.p); got != tc.want {
			t.Errorf("p%d of %v = %v, want %v", tc.p, tc.vals, got, tc.want)
		}
	}
}

// result builds a decided request with the given values (nil: withheld
// with reason r).
func result(id, model string, outcome attribution.Outcome, vals map[parser.Metric]float64, r attribution.Reason) attribution.Result {
	res := attribution.Result{RequestID: id, Model: model, Outcome: outcome}
	for m := range res.Values {
		if v, ok := vals[parser.Metric(m)]; ok {
			res.Values[m] = attribution.Value{V: v, Exact: true}
		} else {
			res.Values[m] = attribution.Value{Reason: r}
		}
	}
	res.TPOT = attribution.Value{Reason: attribution.ReasonAbsent}
	return res
}

func TestSummarize(t *testing.T) {
	all := map[parser.Metric]float64{}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		all[m] = float64(m + 1)
	}
	reqs := []attribution.Result{
		result("a", "m2", attribution.Exact, all, ""),
		result("b", "m1", attribution.Partial, map[parser.Metric]float64{parser.E2E: 3}, attribution.ReasonOverlap),
		result("c", "m1", attribution.Partial, map[parser.Metric]float64{parser.E2E: 1}, attribution.ReasonMissing),
		result("d", "", attribution.Rejected, nil, attribution.RejectRestart),
		result("e", "", attribution.Unpaired, nil, "unpaired"),
		result("f", "m1", attribution.Exact, map[parser.Metric]float64{parser.E2E: 2}, attribution.ReasonAbsent),
	}
	reqs[3].RejectReason = attribution.RejectRestart
	s := summarize(reqs)

	want := Outcomes{Exact: 2, Partial: 2, Rejected: 1, Unpaired: 1, RejectedBy: map[attribution.Reason]int{attribution.RejectRestart: 1}}
	if fmt.Sprint(s.Outcomes) != fmt.Sprint(want) {
		t.Errorf("outcomes %+v, want %+v", s.Outcomes, want)
	}
	var names []string
	for _, m := range s.Models {
		names = append(names, m.Model)
	}
	if fmt.Sprint(names) != "[m1 m2 ]" {
		t.Fatalf("models %q: want by name, unattributed last", names)
	}
	m1 := s.Models[0]
	e2e := m1.Metrics[parser.E2E]
	if e2e.Count != 3 || e2e.Total != 6 || e2e.Mean != 2 || e2e.P50 != 2 || e2e.P90 != 3 || e2e.Max != 3 || len(e2e.Withheld) != 0 {
		t.Errorf("m1 e2e %+v", e2e)
	}
	// b and c withheld prefill (overlap, missing); f's is absent: not counted.
	pre := m1.Metrics[parser.Prefill]
	if pre.Count != 0 || pre.Mean != 0 || fmt.Sprint(pre.Withheld) != "map[missing:1 overlap:1]" {
		t.Errorf("m1 prefill %+v", pre)
	}
	// Rejected and unpaired requests are outcomes, not withheld values.
	none := s.Models[2]
	if none.Outcomes.Requests() != 2 || hasStats(&none) {
		t.Errorf("unattributed %+v", none)
	}
	if tpot := s.Models[1].Metrics[parser.NumMetrics]; tpot.Count != 0 || len(tpot.Withheld) != 0 {
		t.Errorf("absent TPOT counted: %+v", tpot)
	}
}

func TestStatsEmptyAndNonFinite(t *testing.T) {
	var st Stats
	st.fill(nil)
	if st.Count != 0 || st.Total != 0 || st.Max != 0 || st.Withheld != nil {
		t.Errorf("empty stats %+v", st)
	}
	b := appendJSON(nil, statsJSON(&st), 0)
	for _, k := range []string{`"mean": null`, `"p99": null`, `"total": 0`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("stats JSON lacks %s:\n%s", k, b)
		}
	}
	st.fill([]float64{math.Inf(1)})
	if b := appendJSON(nil, statsJSON(&st), 0); !strings.Contains(string(b), `"max": null`) {
		t.Errorf("infinite max not null:\n%s", b)
	}
}
