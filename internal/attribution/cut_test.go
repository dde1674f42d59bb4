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
// Finish counts: a, x and y have their befores at 0; a finishes (1), its
// after is at 1; x finishes (2), its after is at 2 but its file comes
// late; y finishes (3), its after is at 3. At the cut a's window (0, 1]
// pins 1, y's (0, 3] holds 2 (x's, open) and 3; once x pairs, its window
// (0, 2] pins 2 and leaves y 3.
func TestCutKeepsYoungMembers(t *testing.T) {
	const maxDelay = 2 * time.Second
	at := func(s float64) time.Time { return time.Unix(1000, 0).Add(time.Duration(s * 1e9)) }
	type step struct {
		at float64
		// pair x (its after, written at count 2, read now) before the
		// decision; without it, x stays open.
		pairX bool
		// decided: the requests the decision publishes, with y's e2e exact
		// or not.
		decided []string
		yExact  bool
	}
	for _, c := range []struct {
		name  string
		steps []step
	}{
		{"neighbour pairs: the young member comes out exact", []step{
			{at: 2.9},                       // a has waited 1.9 s: no cut yet
			{at: 3, decided: []string{"a"}}, // cut: y (0.5 s) kept
			{at: 3.2, pairX: true, decided: []string{"x", "y"}, yExact: true}, // nothing open: decided whole
		}},
		{"neighbour never pairs: withheld once it has waited MaxDelay", []step{
			{at: 3, decided: []string{"a"}},
			{at: 4.4}, // y has waited 1.9 s: kept
			{at: 4.5, decided: []string{"y"}},
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
			srv.observeFinish(&truths[0])
			afterA := srv.point(t)
			srv.observeFinish(&truths[1])
			afterX := srv.point(t)
			srv.observeFinish(&truths[2])
			afterY := srv.point(t)
			if _, done := tl.Add(Request{ID: "a", Before: b, After: afterA}, at(1)); done {
				t.Fatal("a rejected")
			}
			if _, done := tl.Add(Request{ID: "y", Before: b, After: afterY}, at(2.5)); done {
				t.Fatal("y rejected")
			}
			want := map[string]float64{"a": truths[0].v[parser.E2E], "x": truths[1].v[parser.E2E], "y": truths[2].v[parser.E2E]}
			for _, s := range c.steps {
				if s.pairX {
					tl.ClearOpen("x")
					if _, done := tl.Add(Request{ID: "x", Before: b, After: afterX}, at(s.at)); done {
						t.Fatal("x rejected")
					}
				}
				got := map[string]Result{}
				for _, res := range tl.Resolve(ResolveOptions{Now: at(s.at), MaxDelay: maxDelay}) {
					got[res.RequestID] = res
				}
				if len(got) != len(s.decided) {
					t.Fatalf("at %v s: decided %v, want %v", s.at, slices.Sorted(maps.Keys(got)), s.decided)
				}
				for _, id := range s.decided {
					res, ok := got[id]
					if !ok {
						t.Fatalf("at %v s: decided %v, want %v", s.at, slices.Sorted(maps.Keys(got)), s.decided)
					}
					v := res.Values[parser.E2E]
					if v.Exact && math.Abs(v.V-want[id]) > 1e-9 {
						t.Errorf("%s: e2e %v, truth %v", id, v.V, want[id])
					}
					if id == "a" && !v.Exact {
						t.Errorf("a: e2e withheld (%s), want exact", v.Reason)
					}
					if id == "y" && v.Exact != s.yExact {
						t.Errorf("y: e2e exact %v (%s), want %v", v.Exact, v.Reason, s.yExact)
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
