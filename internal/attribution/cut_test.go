package attribution

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// TestCutKeepsYoungMembers: a component that never becomes ready by itself
// (an open request overlaps it) is cut once its oldest member has waited
// MaxDelay. The cut decides the old member; a young member whose value
// only a neighbour still open can pin is kept for the next decision, and
// decided exact once that neighbour pairs, or, if it never does, withheld
// once it has itself waited MaxDelay.
//
// a, x and y have their befores at finish count 0 and finish in the
// order of the case, each with its after right after its finish; a is
// paired at 1 s, y at 2.5 s, and x's after file comes late (x is open
// until a step pairs it). With the order a, x, y: at the cut a's window
// (0, 1] pins 1, y's (0, 3] holds 2 (x's) and 3; once x pairs, its window
// (0, 2] pins 2 and leaves y 3. With x, a, y: at the cut a's window (0, 2]
// and y's (0, 3] pin nothing; a is decided withheld, and y is pinned to 3
// once x pins 1 only if a, decided, still claims 2 (a ghost).
func TestCutKeepsYoungMembers(t *testing.T) {
	const maxDelay = 2 * time.Second
	at := func(s float64) time.Time { return time.Unix(1000, 0).Add(time.Duration(s * 1e9)) }
	type step struct {
		at float64
		// pair x before the decision; without it, x stays open.
		pairX bool
		// decided: the requests the decision publishes, exact: those of
		// them with their e2e exact.
		decided, exact []string
	}
	for _, c := range []struct {
		name  string
		order []int // finish order: 0 a, 1 x, 2 y
		steps []step
	}{
		{"neighbour pairs: the young member comes out exact", []int{0, 1, 2}, []step{
			{at: 2.9}, // a has waited 1.9 s: no cut yet
			{at: 3, decided: []string{"a"}, exact: []string{"a"}},                          // cut: y (0.5 s) kept
			{at: 3.2, pairX: true, decided: []string{"x", "y"}, exact: []string{"x", "y"}}, // nothing open: decided whole
		}},
		{"neighbour never pairs: withheld once it has waited MaxDelay", []int{0, 1, 2}, []step{
			{at: 3, decided: []string{"a"}, exact: []string{"a"}},
			{at: 4.4}, // y has waited 1.9 s: kept
			{at: 4.5, decided: []string{"y"}},
		}},
		{"a member decided withheld still claims", []int{1, 0, 2}, []step{
			{at: 3, decided: []string{"a"}},
			{at: 3.2, pairX: true, decided: []string{"x", "y"}, exact: []string{"x", "y"}},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := newFakeServer("a")
			tl := NewTimeline()
			tl.TrustAfters = true
			r := rand.New(rand.NewPCG(16, 1))
			var truths [3]truth
			for i := range truths {
				truths[i] = randomTruth(r, "a")
			}
			b := srv.point(t)
			tl.SetOpen("x", b)
			var after [3]*Point
			for _, i := range c.order {
				srv.observeFinish(&truths[i])
				after[i] = srv.point(t)
			}
			if _, done := tl.Add(Request{ID: "a", Before: b, After: after[0]}, at(1)); done {
				t.Fatal("a rejected")
			}
			if _, done := tl.Add(Request{ID: "y", Before: b, After: after[2]}, at(2.5)); done {
				t.Fatal("y rejected")
			}
			want := map[string]float64{"a": truths[0].v[parser.E2E], "x": truths[1].v[parser.E2E], "y": truths[2].v[parser.E2E]}
			for _, s := range c.steps {
				if s.pairX {
					tl.ClearOpen("x")
					if _, done := tl.Add(Request{ID: "x", Before: b, After: after[1]}, at(s.at)); done {
						t.Fatal("x rejected")
					}
				}
				got := map[string]Result{}
				for _, res := range tl.Resolve(ResolveOptions{Now: at(s.at), MaxDelay: maxDelay}) {
					if _, dup := got[res.RequestID]; dup {
						t.Errorf("%s published twice", res.RequestID)
					}
					got[res.RequestID] = res
				}
				if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, s.decided) {
					t.Fatalf("at %v s: decided %v, want %v", s.at, ids, s.decided)
				}
				for _, id := range s.decided {
					v := got[id].Values[parser.E2E]
					if v.Exact && math.Abs(v.V-want[id]) > 1e-9 {
						t.Errorf("%s: e2e %v, truth %v", id, v.V, want[id])
					}
					if w := slices.Contains(s.exact, id); v.Exact != w {
						t.Errorf("at %v s: %s e2e exact %v (%s), want %v", s.at, id, v.Exact, v.Reason, w)
					}
				}
			}
			if n := tl.Pending(); n != 0 {
				t.Errorf("%d requests still waiting", n)
			}
			// y was learned from at the cut and again when decided: its
			// window counts once in the A1 tally.
			paired := 2
			if c.steps[len(c.steps)-1].pairX {
				paired = 3
			}
			for _, st := range tl.Assumptions()[0].Status {
				if st.Assumption == AfterHolds && st.Windows.Flag != paired {
					t.Errorf("A1 tally counts %d windows, want %d", st.Windows.Flag, paired)
				}
			}
		})
	}
}

// TestAgreeFromCountsARequestOnce: a request kept at a cut is learned
// from again when it is decided; its agreements of the earlier Resolve
// are not counted again (those of one Resolve all are, as before cuts).
func TestAgreeFromCountsARequestOnce(t *testing.T) {
	tl := NewTimeline()
	s := tl.server("e")
	rs := &reqState{}
	s.agreeFrom(rs, CaptureBounds, confirmValue) // its e2e
	s.agreeFrom(rs, CaptureBounds, confirmValue) // its TTFT
	rs.counted |= rs.counting                    // the end of Resolve's learning
	rs.counting = 0
	s.agreeFrom(rs, CaptureBounds, confirmValue) // the next Resolve
	s.agreeFrom(rs, ObserveDelay, confirmValue)  // not counted before
	if got := s.st[CaptureBounds].agreed; got != 2 {
		t.Errorf("capture bounds: %d agreements, want 2", got)
	}
	if got := s.st[ObserveDelay].agreed; got != 1 {
		t.Errorf("observe delay: %d agreements, want 1", got)
	}
}
