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
// earlier request's that landed late. So A1 rests on the snapshot tool's
// protocol, request by request: a window is used only when capture
// vouches for it, or the user does (Timeline.TrustAfters, for afters
// only). Every other window is kept out of its group's matching, as an
// after capture could not confirm is (FinishUnobserved): leaving a
// request out never makes a value wrong, since its observation then looks
// like an unknown claimant's (docs/attribution.md, "What A1 rests on").
// The same holds for first_holds_observation (FirstHolds) and the
// first-token windows.

// voucher is who vouches that a request's window of a group holds the
// request's own observation.
type voucher uint8

const (
	// unvouched: nobody; the window is kept out of the group's matching
	// and its values are withheld (ReasonUnvouched).
	unvouched voucher = iota
	// byCapture: capture's protocol (afterVouched, firstVouched).
	byCapture
	// byUser: the user's statement (Timeline.TrustAfters).
	byUser
)

// vouchFor says who vouches for r's finish and first-token windows. A
// request without a first snapshot ends its first-token window at its
// after: vouched for as the after is (A4, the first token before the
// finish, is checked on its own). An after capture could not confirm
// (FinishUnobserved) vouches for nothing: the request may have ended
// before its first token, with no observation of its own to find.
func (t *Timeline) vouchFor(r *Request) (v [parser.NumGroups]voucher) {
	fin := unvouched
	switch {
	case r.FinishUnobserved:
	case afterVouched(r):
		fin = byCapture
	case t.TrustAfters || t.given:
		fin = byUser
	}
	v[parser.Finish] = fin
	switch {
	case r.First == nil:
		v[parser.FirstToken] = fin
	case firstVouched(r):
		v[parser.FirstToken] = byCapture
	case t.given:
		v[parser.FirstToken] = byUser
	}
	return v
}

// afterVouched reports whether the snapshot tool vouches, by its
// protocol, that r's after follows its finish observation: capture
// scraped it after the response's last byte had passed and saw the finish
// count move above the before's (the info sidecar's after_observed and
// last_byte_at against the after's scrape-start line). It rests on the
// server recording a request's finish before it sends the last byte,
// which vLLM V1 does (VLLM_METRICS.md §3.6); a server that records later
// leaves windows that do not move, which contradict A1.
func afterVouched(r *Request) bool {
	return r.AfterObserved && !r.LastByte.IsZero() && !r.After.lo.IsZero() && !r.After.lo.Before(r.LastByte)
}

// firstVouched reports whether capture vouches that r's first snapshot
// follows its first-token observation: it scraped it once the first byte
// of the streaming response had passed (the info sidecar's first_byte_at
// against the first's scrape-start line). It rests on the server
// recording the first token before it sends it, which vLLM V1 does (the
// same stretch of the output handler as the finish, §3.6). The window
// must then have moved above the before's: one that did not contradicts
// first_holds_observation (shouldHaveMoved).
func firstVouched(r *Request) bool {
	return r.First != nil && !r.FirstByte.IsZero() && !r.First.lo.IsZero() && !r.First.lo.Before(r.FirstByte)
}

// Windows counts the requests' windows of one group (the finish for
// after_holds_observation, the first token for first_holds_observation)
// by who vouched for them.
type Windows struct {
	// Capture: vouched for by capture's protocol. Flag: by the user's
	// --attribution.trust-afters alone. Unvouched: by nobody, kept out of
	// the matching (values withheld, unvouched).
	Capture, Flag, Unvouched int
}

// a1Evidence is what the requests of one server process said about A1.
type a1Evidence struct {
	// windows counts, per group, the paired requests' windows by who
	// vouched for them; finish windows kept out because capture saw no
	// finish (FinishUnobserved) count nowhere.
	windows [parser.NumGroups]Windows
	// published counts the requests published with an exact value while
	// A1 stood: what a later contradiction puts in doubt (serve decides
	// as it goes; report learns from every component first).
	published int
}

// holds is each group's A1.
var holds = [parser.NumGroups]Assumption{parser.Finish: AfterHolds, parser.FirstToken: FirstHolds}

// noteVouches counts comp's windows by who vouched for them. Group g's A1
// is confirmed once capture vouched for confirmValue windows and none in
// use rests on the user's word alone; the windows kept out do not count
// against it (nothing rests on them).
func (t *Timeline) noteVouches(s *server, comp []*reqState) {
	if s.given {
		return
	}
	for g, a := range holds {
		st := &s.st[a]
		if st.state == Contradicted {
			continue
		}
		w := &s.a1.windows[g]
		for _, rs := range comp {
			switch {
			case rs.noted:
				// Counted at a cut that kept it (Timeline.keep).
			case parser.Group(g) == parser.Finish && rs.FinishUnobserved:
			case rs.vouch[g] == byCapture:
				w.Capture++
			case rs.vouch[g] == byUser:
				w.Flag++
			default:
				w.Unvouched++
			}
		}
		st.agreed = w.Capture
		want := Unchecked
		if w.Flag == 0 && w.Capture >= confirmValue {
			want = Confirmed
		}
		if st.state != want {
			st.state = want
			t.changes++
		}
	}
	for _, rs := range comp {
		rs.noted = true
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
// rests on (the counts are in AssumptionStatus.Windows).
func (s *server) a1Note(a Assumption) string {
	g, how := parser.Finish, "after scraped past the last byte, finish count moved"
	if a == FirstHolds {
		g, how = parser.FirstToken, "first scraped past the first byte, or the after"
	}
	w := s.a1.windows[g]
	switch {
	case s.given:
		return ""
	case s.st[a].state == Contradicted:
		if n := s.st[a].why.PublishedBefore; n > 0 {
			return fmt.Sprintf("%d requests were published before the contradiction", n)
		}
		return ""
	case w.Flag > 0:
		return "rests on --attribution.trust-afters (the user's statement): counts cannot confirm it"
	case s.st[a].state == Confirmed:
		return "vouched for by capture (" + how + ")"
	case w.Capture > 0:
		return fmt.Sprintf("vouched for by capture for fewer than %d windows yet", confirmValue)
	}
	return "no window vouched for: values withheld (unvouched); capture vouches for its own, --attribution.trust-afters for another tool's afters"
}

// shouldHaveMoved reports whether request rs's window of group g must
// have moved under A1 (AfterHolds for the finish, FirstHolds for the
// first token): someone vouched for the window, the server has shown
// the group's anchor (families appear at their first observation), and
// the snapshot tool did not say the request ended without its finish
// (capture's after_observed=false: an abort, which vLLM neither finishes
// nor, before its first token, observes at the first token).
func (t *Timeline) shouldHaveMoved(rs *reqState, g parser.Group) bool {
	if rs.FinishUnobserved || rs.vouch[g] == unvouched {
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
