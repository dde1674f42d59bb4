package attribution

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// TestHugeSumWithholdsLaterValues: after a huge observation the running
// _sum swallows later ones (1e308 + 0.5 is 1e308): the next request's
// value is withheld as inconsistent, never published as an exact 0. The
// other metrics, whose sums are ordinary, are not: TTFT stays exact, and
// the finish families (in no moment confirmed yet, three requests into
// the server's life) are withheld as unconfirmed, not inconsistent.
// Before, the next request's 0.5 s e2e was published as exact 0.
func TestHugeSumWithholdsLaterValues(t *testing.T) {
	tests := []struct {
		name     string
		first    float64 // e2e of the first request
		wantNext bool    // the second request's e2e (0.5 s) is published
	}{
		{"ordinary", 2, true},
		{"sum of 1e6 s", 1e6, true},
		{"sum of 1e9 s", 1e9, true},
		{"sum of 1e12 s", 1e12, false},
		{"1e308", 1e308, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			srv := newFakeServer(`model_name="a"`)
			truths := []truth{randomTruth(r, srv.order[0]), randomTruth(r, srv.order[0]), randomTruth(r, srv.order[0])}
			truths[0].v[parser.E2E] = tc.first
			truths[1].v[parser.E2E] = 0.5
			var events []event
			for i := range truths {
				at := float64(i)
				events = append(events, event{at, 0, i}, event{at + 0.1, 1, i}, event{at + 0.5, 2, i}, event{at + 0.6, 3, i})
			}
			rr := runEvents(t, srv, truths, events, false)
			rr.check(t) // no published value differs from the truth
			for i := 1; i < 3; i++ {
				res := rr.results["r"+string(rune('0'+i))]
				e2e := res.Values[parser.E2E]
				if e2e.Exact != tc.wantNext || (!e2e.Exact && e2e.Reason != ReasonInconsistent) {
					t.Fatalf("r%d e2e %+v, want exact %v (else inconsistent)", i, e2e, tc.wantNext)
				}
				if !res.Values[parser.TTFT].Exact {
					t.Fatalf("r%d: TTFT, an ordinary sum, withheld too: %+v", i, res.Values)
				}
				for _, m := range []parser.Metric{parser.Queue, parser.Decode} {
					if v := res.Values[m]; v.Reason == ReasonInconsistent {
						t.Fatalf("r%d: %s, an ordinary sum, withheld as inconsistent: %+v", i, m.Name(), v)
					}
				}
			}
		})
	}
}

// TestSumDeltaExact: the bound against the operands' ulp.
func TestSumDeltaExact(t *testing.T) {
	tests := []struct {
		s0, s1, v float64
		want      bool
	}{
		{0, 0.5, 0.5, true},
		{0, 0, 0, true},
		{1e6, 1e6 + 0.5, 0.5, true},
		{1e308, 1e308, 0, false},
		{1e16, 1e16 + 2, 2, false},
		{math.MaxFloat64, math.MaxFloat64, 0, false},
		{0, 1e308, 1e308, true}, // the huge value itself is known to 1e-16
		{1e12, 1e12 + 1e3, 1e3, true},
	}
	for _, tc := range tests {
		if got := sumDeltaExact(tc.s0, tc.s1, tc.v); got != tc.want {
			t.Errorf("sumDeltaExact(%g, %g, %g) = %v, want %v", tc.s0, tc.s1, tc.v, got, tc.want)
		}
	}
}

// TestSumsAddedInAnotherOrder: two snapshots at the same count whose sums
// differ by rounding (a server with several API server processes adds
// their sums up at each scrape) are the same observations: the values
// next to them stay exact, with the difference charged to the rounding
// budget. Sums further apart, or a difference the budget cannot absorb,
// withhold them (inconsistent).
func TestSumsAddedInAnotherOrder(t *testing.T) {
	tests := []struct {
		name  string
		first float64 // decode of the first request
		ulps  int     // the other snapshot's decode sum, in ulps off
		delta float64 // and by this much more
		want  bool    // the second request's decode (0.5 s) is published
	}{
		{"same sums", 0.3, 0, 0, true},
		{"two ulps apart", 0.3, 2, 0, true},
		{"sixteen ulps apart", 0.3, sumOrderUlps, 0, true},
		{"seventeen ulps apart", 0.3, sumOrderUlps + 1, 0, false},
		{"another observation", 0.3, 0, 1e-9, false},
		{"rounding on a huge sum", 4e9, 2, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			srv := newFakeServer(`model_name="a"`)
			tl := NewTimeline()
			tl.TrustAfters = true // plain pairs, vouched for by the test
			se := srv.series[srv.order[0]]
			truths := []truth{randomTruth(r, srv.order[0]), randomTruth(r, srv.order[0])}
			truths[0].v[parser.Decode], truths[1].v[parser.Decode] = tc.first, 0.5
			// The finish moment is confirmed, as earlier requests would
			// have: values come from the levels, not from a lone request's
			// own snapshots.
			for _, m := range momentFamilies[parser.Finish] {
				a, _ := moment(parser.Finish, m)
				confirm(tl, srv.point(t).Epoch, a)
			}
			var reqs []Request
			for i := range truths {
				before := srv.point(t)
				srv.observeFirst(&truths[i])
				srv.observeFinish(&truths[i])
				reqs = append(reqs, Request{ID: fmt.Sprintf("r%d", i), Before: before, After: srv.point(t)})
				if i == 0 {
					// A timeline snapshot at the same count, its decode
					// sum added up in another order.
					saved := se.sum[parser.Decode]
					for range tc.ulps {
						se.sum[parser.Decode] = math.Nextafter(se.sum[parser.Decode], math.Inf(1))
					}
					se.sum[parser.Decode] += tc.delta
					tl.AddPoint(srv.point(t))
					se.sum[parser.Decode] = saved
				}
			}
			for _, req := range reqs {
				if _, done := tl.Add(req, time.Unix(0, 0)); done {
					t.Fatalf("%s rejected", req.ID)
				}
			}
			for _, res := range tl.Resolve(ResolveOptions{All: true}) {
				i := int(res.RequestID[1] - '0')
				for m, v := range res.Values {
					if want := truths[i].v[m]; v.Exact && math.Abs(v.V-want) > maxRoundingError*max(1, want) {
						t.Errorf("%s %s = %v, truth %v", res.RequestID, parser.Metric(m).Name(), v.V, want)
					}
				}
				if v := res.Values[parser.Decode]; i == 1 && (v.Exact != tc.want || (!v.Exact && v.Reason != ReasonInconsistent)) {
					t.Errorf("r1 decode %+v, want exact %v (else inconsistent)", v, tc.want)
				}
				if v := res.Values[parser.E2E]; !v.Exact {
					t.Errorf("%s e2e %+v: its sums agree", res.RequestID, v)
				}
			}
		})
	}
}
