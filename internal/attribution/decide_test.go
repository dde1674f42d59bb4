package attribution

import (
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// When a confirmed rule leaves a request without a candidate that the
// bare count rule would give it, the rule may be false, or A1 may be
// false for the request: capture vouched for its after because another
// request's finish moved the count, while the server dropped the
// request's own. Solving the component again without the rule would rest
// on that A1 and publish the other request's value, so the rule is
// contradicted and the component withheld.
func TestRuleFailureWithholdsTheComponent(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	own := &truth{labels: "a", v: [parser.NumMetrics]float64{parser.TTFT: 0.1, parser.Queue: 0.01, parser.Prefill: 0.05,
		parser.Decode: 0.3, parser.Inference: 0.35, parser.E2E: 0.4, parser.PromptTokens: 10, parser.GenerationTokens: 5}}
	// An uncaptured request's finish, too long for A: the proxy saw A's
	// last byte 500 ms after receiving it.
	other := &truth{labels: "a", v: [parser.NumMetrics]float64{parser.TTFT: 0.2, parser.Queue: 0.3, parser.Prefill: 0.05,
		parser.Decode: 0.3, parser.Inference: 0.35, parser.E2E: 0.9, parser.PromptTokens: 10, parser.GenerationTokens: 5}}
	for _, tc := range []struct {
		name      string
		dropped   bool // the server dropped A's finish; other's landed in its window
		wantExact bool
		wantState State
	}{
		{"own observation", false, true, Confirmed},
		{"own dropped, another's in the window", true, false, Contradicted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeServer("a")
			snap := func(at int) *Point {
				p := s.point(t)
				p.SetTimes(ms(at-1), ms(at))
				return p
			}
			tl := NewTimeline()
			before := snap(0)
			confirm(tl, before.Epoch, CaptureBounds)
			s.observeFirst(own)
			if tc.dropped {
				s.observeFinish(other)
			} else {
				s.observeFinish(own)
			}
			after := snap(601)
			r := Request{ID: "A", Before: before, After: after, ArrivalLo: ms(1), ArrivalHi: ms(501),
				MaxE2E: 0.5, AfterObserved: true, LastByte: ms(501)}
			if res, done := tl.Add(r, t0); done {
				t.Fatalf("rejected: %v", res.RejectReason)
			}
			results := tl.Resolve(ResolveOptions{All: true})
			if len(results) != 1 {
				t.Fatalf("%d results, want 1", len(results))
			}
			e2e := results[0].Values[parser.E2E]
			if e2e.Exact && e2e.V != own.v[parser.E2E] {
				t.Fatalf("published e2e %v, A's own is %v", e2e.V, own.v[parser.E2E])
			}
			if e2e.Exact != tc.wantExact {
				t.Errorf("e2e exact = %v (%s), want %v", e2e.Exact, e2e.Reason, tc.wantExact)
			}
			if !tc.wantExact && e2e.Reason != ReasonInconsistent {
				t.Errorf("e2e withheld as %s, want %s", e2e.Reason, ReasonInconsistent)
			}
			if got := tl.server(before.Epoch).st[CaptureBounds].state; got != tc.wantState {
				t.Errorf("capture_time_bounds %s, want %s", got, tc.wantState)
			}
		})
	}
}
