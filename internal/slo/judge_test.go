package slo

import (
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

func TestJudge(t *testing.T) {
	s, err := Parse([]byte(`
objectives:
  - {name: goodput, target: 0.99, thresholds: {ttft: 500ms, time_per_output_token: 50ms}}
  - {name: prefill, target: 0.9, models: [m], thresholds: {prefill: 100ms}}
`))
	if err != nil {
		t.Fatal(err)
	}
	exact := func(v float64) attribution.Value { return attribution.Value{V: v, Exact: true} }
	req := func(model string, ttft, decode, gen attribution.Value) attribution.Result {
		r := attribution.Result{RequestID: "r", Model: model, Outcome: attribution.Exact}
		r.Values[parser.TTFT], r.Values[parser.Decode], r.Values[parser.GenerationTokens] = ttft, decode, gen
		r.Values[parser.Prefill] = exact(0.05)
		switch {
		case decode.Exact && gen.Exact && gen.V >= 2:
			r.TPOT = exact(decode.V / (gen.V - 1))
		case decode.Exact && gen.Exact:
			r.TPOT = attribution.Value{Reason: attribution.ReasonAbsent}
		default:
			r.TPOT = attribution.Value{Reason: attribution.ReasonOverlap}
		}
		return r
	}
	overlap := attribution.Value{Reason: attribution.ReasonOverlap}
	for _, tc := range []struct {
		name string
		res  attribution.Result
		want []Result // goodput, then prefill when it applies
	}{
		{"met", req("m", exact(0.5), exact(0.49), exact(11)), []Result{Met, Met}},
		{"ttft over", req("m", exact(0.501), exact(0.49), exact(11)), []Result{Missed, Met}},
		{"tpot over", req("m", exact(0.1), exact(0.51), exact(11)), []Result{Missed, Met}},
		{"one-token answer: no TPOT to hold", req("m", exact(0.1), exact(0), exact(1)), []Result{Met, Met}},
		{"ttft withheld", req("m", overlap, exact(0.49), exact(11)), []Result{Unknown, Met}},
		{"ttft over but tpot withheld: unknown, never a guess", req("m", exact(9), overlap, exact(11)), []Result{Unknown, Met}},
		{"tokens withheld, one-token unknown", req("m", exact(0.1), exact(0), overlap), []Result{Unknown, Met}},
		{"other model: only the unscoped objective", req("n", exact(0.1), exact(0.1), exact(11)), []Result{Met}},
		{"no model: unknown for every objective", attribution.NewRejected(&attribution.Request{ID: "x"}, attribution.RejectRestart), []Result{Unknown, Unknown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := s.Judge(&tc.res)
			if len(js) != len(tc.want) {
				t.Fatalf("%d verdicts %+v, want %v", len(js), js, tc.want)
			}
			for i, j := range js {
				if j.Result != tc.want[i] {
					t.Errorf("%s: %s (%s), want %s", j.Objective, j.Result, j.Why, tc.want[i])
				}
				if (j.Result == Met) != (j.Why == "") {
					t.Errorf("%s: %s with why %q", j.Objective, j.Result, j.Why)
				}
			}
		})
	}
	var nilSet *Set
	if js := nilSet.Judge(&attribution.Result{}); js != nil {
		t.Errorf("nil set judged %v", js)
	}
}

func TestTally(t *testing.T) {
	var tl Tally
	if _, ok := tl.Attainment(); ok {
		t.Error("attainment of nothing")
	}
	for _, r := range []Result{Met, Met, Met, Missed, Unknown} {
		tl.Add(r)
	}
	a, _ := tl.Attainment()
	m, _ := tl.MetShare()
	u, _ := tl.UnknownShare()
	if a != 0.75 || m != 0.6 || u != 0.2 || tl.Total() != 5 || tl.Known() != 4 {
		t.Errorf("attainment %v, met share %v, unknown share %v", a, m, u)
	}
}
