package attribution

import (
	"fmt"

	"github.com/delta-exporter/delta-exporter/parser"
)

// A1 (AfterHolds) is the one assumption the counts can contradict but
// never confirm: a request whose after missed its own observation can
// leave the data consistent with an assignment that gives it a
// neighbour's (TestEarlyAfterConsistentIsUndetectable). A request alone in
// its window proves nothing either: the one observation there may be an
// earlier request's that landed late. So A1 is confirmed only by the
// snapshot tool's protocol, request by request, and is otherwise used
// unchecked, visibly (docs/attribution.md, "What A1 rests on").

// afterVouched reports whether the snapshot tool vouches, by its
// protocol, that r's after follows its finish observation: capture
// scraped it after the response's last byte had passed and saw the finish
// count move above the before's (the info sidecar's after_observed and
// last_byte_at against the after's scrape-start line). It rests on the
// server recording a request's finish before it sends the last byte,
// which vLLM V1 does; a server that records later leaves windows that do
// not move, which contradict A1.
func afterVouched(r *Request) bool {
	return r.AfterObserved && !r.LastByte.IsZero() && !r.After.lo.IsZero() && !r.After.lo.Before(r.LastByte)
}

// a1Evidence is what the requests of one server process said about A1.
type a1Evidence struct {
	// vouched and unvouched count the paired requests whose after the
	// snapshot tool did (did not) vouch for; requests kept out of the
	// finish group (FinishUnobserved) count in neither.
	vouched, unvouched int
	// published counts the requests published with an exact value while
	// A1 stood: what a later contradiction puts in doubt (serve decides
	// as it goes; report learns from every component first).
	published int
}

// noteAfterHolds records what comp's requests say about A1: each request
// the snapshot tool vouched for agrees with it. A1 is confirmed once
// confirmValue requests were vouched for and none was not; a request the
// tool did not vouch for puts it back to unchecked (still used: nothing is
// attributable without it).
func (t *Timeline) noteAfterHolds(s *server, comp []*reqState) {
	st := &s.st[AfterHolds]
	if st.state == Contradicted || s.given {
		return
	}
	for _, rs := range comp {
		switch {
		case rs.FinishUnobserved:
		case afterVouched(&rs.Request):
			s.a1.vouched++
		default:
			s.a1.unvouched++
		}
	}
	st.agreed = s.a1.vouched
	want := Unchecked
	if s.a1.unvouched == 0 && s.a1.vouched >= confirmValue {
		want = Confirmed
	}
	if st.state != want {
		st.state = want
		t.changes++
	}
}

// notePublished counts the requests of results published with an exact
// value under A1.
func (s *server) notePublished(results []Result) {
	for i := range results {
		for _, v := range results[i].Values {
			if v.Exact {
				s.a1.published++
				break
			}
		}
	}
}

// a1Note says, for the status line of AfterHolds or FirstHolds, what it
// rests on.
func (s *server) a1Note(a Assumption) string {
	switch {
	case s.given:
		return ""
	case s.st[a].state == Contradicted:
		if n := s.st[a].why.PublishedBefore; n > 0 {
			return fmt.Sprintf("%d requests were published before the contradiction", n)
		}
		return ""
	case a == FirstHolds:
		// Capture checks the finish count before it writes the after,
		// not the first-token count before the first.
		return "in use, unchecked: counts can contradict this assumption, never confirm it"
	case s.a1.unvouched > 0:
		return fmt.Sprintf("in use, unchecked: the snapshot tool did not vouch for %d of %d afters (counts can contradict this assumption, never confirm it)", s.a1.unvouched, s.a1.unvouched+s.a1.vouched)
	case s.st[a].state != Confirmed:
		return "in use, unchecked: too few afters vouched for by capture yet"
	}
	return fmt.Sprintf("vouched for by capture (after scraped past the last byte, finish count moved) for %d afters", s.a1.vouched)
}

// shouldHaveMoved reports whether request rs's window of group g must
// have moved under A1 (AfterHolds for the finish, FirstHolds for the
// first token): the server has shown the group's anchor (families appear
// at their first observation), and the snapshot tool did not say the
// request ended without its finish (capture's after_observed=false: an
// abort, which vLLM neither finishes nor, before its first token,
// observes at the first token).
func (t *Timeline) shouldHaveMoved(rs *reqState, g parser.Group) bool {
	if rs.FinishUnobserved {
		return false
	}
	if g == parser.Finish {
		return t.server(rs.After.Epoch).seen[anchors[g]]
	}
	end := rs.After
	if rs.First != nil {
		end = rs.First
	}
	for i := range end.groups[g] {
		if end.groups[g][i].anchor > 0 {
			return true
		}
	}
	return false
}

// unconfirmedGroup withholds, as unconfirmed, the values of every result
// that group g would set: its A1 was contradicted for the server process.
// The finish group leaves the families the server observes at the first
// token to the first-token group.
func (t *Timeline) unconfirmedGroup(results []Result, epoch string, g parser.Group) {
	for i := range results {
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			v := &results[i].Values[m]
			if v.Reason == ReasonAbsent {
				continue
			}
			atFirst := m == parser.TTFT || (t.inMoment(epoch, parser.FirstToken, m) && !t.inMoment(epoch, parser.Finish, m))
			if atFirst == (g == parser.FirstToken) {
				*v = Value{Reason: ReasonUnconfirmed}
			}
		}
	}
}
