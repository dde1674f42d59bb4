package attribution

import (
	"testing"

	"github.com/delta-exporter/delta-exporter/parser"
)

func TestAssumptionByName(t *testing.T) {
	for _, a := range Assumptions() {
		if got, ok := AssumptionByName(a.Name()); !ok || got != a {
			t.Errorf("AssumptionByName(%q) = %v, %v", a.Name(), got, ok)
		}
	}
	if _, ok := AssumptionByName("unknown"); ok {
		t.Error(`"unknown" is a name`)
	}
}

// TestRestore: a restored state is what the earlier process learned, and
// the data of this one move it only as they would have moved it there: a
// contradiction stands however many agreements follow, a confirmation
// stays usable, agreements add up; a state the timeline holds is never
// weakened; OnContradiction is not called for what was restored.
func TestRestore(t *testing.T) {
	const epoch = "100"
	queueAtFinish, _ := moment(parser.Finish, parser.Queue)
	why := &Contradiction{RequestID: "r1", Detail: "TTFT 2s > e2e 1s", PublishedBefore: 5}
	for _, c := range []struct {
		name string
		a    Assumption
		// before: what this process's data said first (nil: nothing).
		before func(t *Timeline, s *server)
		saved  AssumptionStatus
		// after: agreements this process's data then give.
		agree     int
		want      State
		wantAgree int
		usable    bool
	}{
		{name: "contradicted stays", a: TTFTWithinE2E,
			saved: AssumptionStatus{State: Contradicted, Agreed: 3, Contradiction: why},
			agree: 20, want: Contradicted, wantAgree: 3},
		{name: "contradicted A1 stays (used while unchecked otherwise)", a: AfterHolds,
			saved: AssumptionStatus{State: Contradicted, Contradiction: why},
			want:  Contradicted},
		{name: "confirmed stays", a: ObserveDelay,
			saved: AssumptionStatus{State: Confirmed, Agreed: 10},
			want:  Confirmed, wantAgree: 10, usable: true},
		// Its agreements came from files this process reads again.
		{name: "unchecked is not restored", a: CaptureBounds,
			saved: AssumptionStatus{State: Unchecked, Agreed: 7},
			agree: 3, want: Unchecked, wantAgree: 3},
		{name: "unchecked, then its own evidence", a: CaptureBounds,
			saved: AssumptionStatus{State: Unchecked, Agreed: 7},
			agree: 10, want: Confirmed, wantAgree: 10, usable: true},
		{name: "a moment", a: queueAtFinish, saved: AssumptionStatus{State: Confirmed, Agreed: 4},
			want: Confirmed, wantAgree: 4, usable: true},
		{name: "never weakens a contradiction", a: TTFTWithinE2E,
			before: func(t *Timeline, s *server) { t.contradict(s, TTFTWithinE2E, "r0", "here") },
			saved:  AssumptionStatus{State: Confirmed, Agreed: 10},
			want:   Contradicted},
		{name: "never weakens a confirmation", a: ObserveDelay,
			before: func(_ *Timeline, s *server) {
				for range 10 {
					s.agree(ObserveDelay, confirmValue)
				}
			},
			saved: AssumptionStatus{State: Unchecked, Agreed: 2},
			want:  Confirmed, wantAgree: 10, usable: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tl := NewTimeline()
			var calls []Contradiction
			tl.OnContradiction = func(x Contradiction) { calls = append(calls, x) }
			if c.before != nil {
				c.before(tl, tl.server(epoch))
			}
			ch := tl.AssumptionChanges()
			saved := c.saved
			saved.Assumption = c.a
			tl.Restore([]ServerAssumptions{{Epoch: epoch, Status: []AssumptionStatus{saved}}})
			if tl.AssumptionChanges() == ch {
				t.Error("Restore did not count as a change")
			}
			s := tl.server(epoch)
			for range c.agree {
				s.agree(c.a, confirmValue)
			}
			if c.a == AfterHolds || c.a == FirstHolds {
				tl.noteVouches(s, nil) // recomputes them from the windows
			}
			st := tl.Assumptions()[0].Status[c.a]
			if st.State != c.want || (c.want != Contradicted && st.Agreed != c.wantAgree) {
				t.Errorf("%s %d, want %s %d", st.State, st.Agreed, c.want, c.wantAgree)
			}
			if got := s.usable(c.a); got != c.usable {
				t.Errorf("usable = %v, want %v", got, c.usable)
			}
			if c.want == Contradicted && c.before == nil {
				if st.Contradiction == nil || st.Contradiction.RequestID != why.RequestID || st.Contradiction.Detail != why.Detail ||
					st.Contradiction.PublishedBefore != why.PublishedBefore || st.Contradiction.Epoch != epoch || st.Contradiction.Assumption != c.a {
					t.Errorf("evidence %+v, want %+v for %s on %s", st.Contradiction, why, c.a.Name(), epoch)
				}
			}
			if n := len(calls); c.before == nil && n != 0 || c.before != nil && n > 1 {
				t.Errorf("OnContradiction called %d times: %+v", n, calls)
			}
		})
	}
}

// TestRestoreWithoutProcessStart: the epoch "" (every server that exposes
// no process_start_time_seconds) names no one process, so nothing saved
// for it is restored: neither a confirmation (what runs now may be
// another server version) nor a contradiction (it would outlive the
// server it was about, for good).
func TestRestoreWithoutProcessStart(t *testing.T) {
	why := &Contradiction{RequestID: "r1", Detail: "TTFT 2s > e2e 1s"}
	tl := NewTimeline()
	tl.Restore([]ServerAssumptions{{Epoch: "", Status: []AssumptionStatus{
		{Assumption: ObserveDelay, State: Confirmed, Agreed: 10},
		{Assumption: CaptureBounds, State: Unchecked, Agreed: 9},
		{Assumption: AfterHolds, State: Contradicted, Agreed: 3, Contradiction: why},
	}}})
	s := tl.server("")
	for _, a := range []Assumption{ObserveDelay, CaptureBounds, AfterHolds} {
		if st := s.st[a]; st.state != Unchecked || st.agreed != 0 {
			t.Errorf("%s: %s %d, want unchecked 0", a.Name(), st.state, st.agreed)
		}
	}
	if s.usable(ObserveDelay) || !s.usable(AfterHolds) {
		t.Errorf("usable: observe_delay %v (want false), after_holds_observation %v (want true: vouched per window)", s.usable(ObserveDelay), s.usable(AfterHolds))
	}
}

// TestRestoreConfirmedA1: capture's vouched windows carry on: an A1
// confirmed by the earlier process stays confirmed when this one's
// windows are counted, without ten more.
func TestRestoreConfirmedA1(t *testing.T) {
	tl := NewTimeline()
	tl.Restore([]ServerAssumptions{{Epoch: "1", Status: []AssumptionStatus{{Assumption: AfterHolds, State: Confirmed, Agreed: 12}}}})
	s := tl.server("1")
	tl.noteVouches(s, []*reqState{{vouch: [parser.NumGroups]voucher{byCapture, byCapture}}})
	if st := tl.Assumptions()[0].Status[AfterHolds]; st.State != Confirmed || st.Agreed != 13 {
		t.Errorf("after_holds_observation %s %d, want confirmed 13", st.State, st.Agreed)
	}
}
