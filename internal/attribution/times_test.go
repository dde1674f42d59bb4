package attribution

import (
	"math"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Two non-streaming requests whose TTFT windows hold both TTFT
// observations; counts, values, A4 and A5 cannot tell them apart. The
// scrape and arrival times can (A6): B arrived 50 ms after A, so A's TTFT
// of 0.2 s, surely observed by T0+230 ms, cannot be B's (B's arrival plus
// 0.2 s is after that). Each case says what the times are and what must
// come out.
func TestTimeChecks(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	a := &truth{labels: "a"}
	b := &truth{labels: "a"}
	a.v = [parser.NumMetrics]float64{parser.TTFT: 0.2, parser.Queue: 0.01, parser.Prefill: 0.04, parser.Decode: 0.15,
		parser.Inference: 0.19, parser.E2E: 0.4, parser.PromptTokens: 10, parser.GenerationTokens: 5}
	b.v = [parser.NumMetrics]float64{parser.TTFT: 0.1, parser.Queue: 0.01, parser.Prefill: 0.04, parser.Decode: 0.3,
		parser.Inference: 0.34, parser.E2E: 0.45, parser.PromptTokens: 10, parser.GenerationTokens: 5}

	for _, tc := range []struct {
		name       string
		times      bool      // snapshots carry scrape times
		bArrivalLo time.Time // what the proxy says of B's arrival
		delay      time.Duration
		wantExact  bool
	}{
		{"no times", false, ms(50), 0, false},
		{"times", true, ms(50), 0, true},
		{"times, observe delay bound", true, ms(50), 50 * time.Millisecond, true},
		// A proxy that saw B arrive with A cannot tell them apart: the
		// values are withheld, not guessed.
		{"B received with A", true, ms(0), 0, false},
		{"no arrival", true, time.Time{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeServer("a")
			snap := func(at int) *Point {
				p := s.point(t)
				if tc.times {
					p.SetTimes(ms(at-1), ms(at))
				}
				return p
			}
			tl := NewTimeline()
			tl.MaxObserveDelay = tc.delay
			// With times, capture vouches for the afters (scraped past the
			// last byte); without, the files are another tool's, vouched
			// for by the user.
			tl.TrustAfters = !tc.times
			beforeA := snap(-1) // A received at 0
			// The server's earlier requests confirmed the time checks.
			confirm(tl, beforeA.Epoch, CaptureBounds, ObserveDelay)
			beforeB := snap(49) // B received at 50
			s.observeFirst(b)   // 150
			tl.AddPoint(snap(175))
			s.observeFirst(a) // 200
			tl.AddPoint(snap(230))
			s.observeFinish(a) // 400
			afterA := snap(410)
			s.observeFinish(b) // 500
			afterB := snap(510)
			for _, r := range []Request{
				{ID: "A", Before: beforeA, After: afterA, ArrivalLo: ms(0), ArrivalHi: ms(405), AfterObserved: true, LastByte: ms(405)},
				{ID: "B", Before: beforeB, After: afterB, ArrivalLo: tc.bArrivalLo, ArrivalHi: ms(505), AfterObserved: true, LastByte: ms(505)},
			} {
				if res, done := tl.Add(r, t0); done {
					t.Fatalf("%s rejected: %v", r.ID, res.RejectReason)
				}
			}
			want := map[string]*truth{"A": a, "B": b}
			for _, res := range tl.Resolve(ResolveOptions{All: true}) {
				tr := want[res.RequestID]
				for m, v := range res.Values {
					if v.Exact && math.Abs(v.V-tr.v[m]) > 1e-9 {
						t.Errorf("%s %s = %v, truth %v", res.RequestID, parser.Metric(m).Name(), v.V, tr.v[m])
					}
				}
				if !res.Values[parser.E2E].Exact {
					t.Errorf("%s: e2e withheld (%s)", res.RequestID, res.Values[parser.E2E].Reason)
				}
				if got := res.Values[parser.TTFT].Exact; got != tc.wantExact {
					t.Errorf("%s: TTFT exact = %v, want %v (%s)", res.RequestID, got, tc.wantExact, res.Values[parser.TTFT].Reason)
				}
			}
		})
	}
}
