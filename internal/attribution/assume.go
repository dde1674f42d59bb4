package attribution

import (
	"fmt"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Assumption is one fact about how a server measures that attribution
// uses beyond the bare count rule (docs/attribution.md, "Assumptions").
// Each is checked against the snapshots per server process, on
// observations whose owner is certain without it; it is used only once
// confirmed, and never again for that process once contradicted.
type Assumption uint8

// The value assumptions, then the moment assumptions (which families a
// server observes together with the finish or the first-token anchor).
const (
	// AfterHolds (A1): the after snapshot holds the request's own finish
	// observation. Counts can contradict it but never confirm it: it is
	// used for the afters someone vouches for, request by request
	// (capture's protocol, or the user's --attribution.trust-afters), and
	// the others are kept out of the matching (afterholds.go). Once
	// contradicted, no finish value is published for that server process.
	AfterHolds Assumption = iota
	// FirstBeforeFinish (A4): a request's first-token observation lands no
	// later than its finish observation.
	FirstBeforeFinish
	// TTFTContainsQueuePrefill (A5): TTFT ≥ queue + prefill.
	TTFTContainsQueuePrefill
	// TTFTWithinE2E: TTFT ≤ e2e.
	TTFTWithinE2E
	// ObserveDelay (A6): e2e is observed at most MaxObserveDelay after
	// arrival + e2e. Never used for TTFT: servers differ in where TTFT
	// starts (llm-d-inference-sim counts it from scheduling), and a TTFT
	// that starts later than arrival is observed "late" by the queue time.
	ObserveDelay
	// CaptureBounds: a value measured from arrival is no larger than the
	// time capture saw between the request and its first (last) byte, nor
	// than the time between the arrival and when it was observed.
	CaptureBounds
	// TokenFingerprints (A3): the response's usage token counts are the
	// values the server observes.
	TokenFingerprints
	// ServerQueueTime: the response's own queue_time_ms (vLLM's
	// per-request metrics object) is the value the server observes into
	// its queue histogram.
	ServerQueueTime
	// FirstHolds (A1 for the first token): the first snapshot (without
	// one, the after) holds the request's own first-token observation.
	// Used, like AfterHolds, for the windows someone vouches for, and
	// apart from it: a server that records finishes late, or a snapshot
	// tool that takes afters early, leaves the first-token observations
	// where they were.
	FirstHolds
	// FirstAtDecodeStart: a request's first-token observation is made
	// within MaxObserveDelay of its finish observation's moment less its
	// decode time: decode spans the first token to the finish on the
	// server's clock, whichever moment its TTFT starts from
	// (llm-d-inference-sim, vLLM V1).
	FirstAtDecodeStart
	numValueAssumptions

	// Moment assumptions: a family moves with the finish anchor (e2e) or
	// with the first-token anchor (TTFT), observation for observation.
	momentBase = numValueAssumptions
)

// momentFamilies lists, per group, the families that may belong to its
// moment (the anchors themselves always do).
var momentFamilies = [parser.NumGroups][]parser.Metric{
	parser.FirstToken: {parser.Queue, parser.Prefill, parser.PromptTokens},
	parser.Finish:     {parser.Queue, parser.Prefill, parser.Decode, parser.Inference, parser.PromptTokens, parser.GenerationTokens},
}

// IsMoment reports whether a is a moment assumption (which families a
// server observes together): a contradiction of one is what the server
// does, learned from its counts, not a fault of its data.
func (a Assumption) IsMoment() bool { return a >= momentBase }

// NumAssumptions is the number of assumptions.
var NumAssumptions = Assumption(int(momentBase) + len(momentFamilies[0]) + len(momentFamilies[1]))

// moment returns the assumption that family m is observed in group g's
// moment; ok is false when m cannot be (or is g's anchor).
func moment(g parser.Group, m parser.Metric) (Assumption, bool) {
	a := momentBase
	for gg := parser.Group(0); gg < parser.NumGroups; gg++ {
		for _, mm := range momentFamilies[gg] {
			if gg == g && mm == m {
				return a, true
			}
			a++
		}
	}
	return 0, false
}

var valueNames = [numValueAssumptions]string{
	AfterHolds:               "after_holds_observation",
	FirstBeforeFinish:        "first_token_before_finish",
	TTFTContainsQueuePrefill: "ttft_contains_queue_prefill",
	TTFTWithinE2E:            "ttft_within_e2e",
	ObserveDelay:             "observe_delay",
	CaptureBounds:            "capture_time_bounds",
	TokenFingerprints:        "token_fingerprints",
	ServerQueueTime:          "server_queue_time",
	FirstHolds:               "first_holds_observation",
	FirstAtDecodeStart:       "first_token_at_decode_start",
}

// Name is the assumption's label value (delta_exporter_assumptions) and
// its key in reports: a fixed set.
func (a Assumption) Name() string {
	if a < numValueAssumptions {
		return valueNames[a]
	}
	i := momentBase
	for g := parser.Group(0); g < parser.NumGroups; g++ {
		for _, m := range momentFamilies[g] {
			if i == a {
				return "moment_" + g.String() + "_" + m.Name()
			}
			i++
		}
	}
	return "unknown"
}

// Assumptions lists every assumption, in a fixed order.
func Assumptions() []Assumption {
	out := make([]Assumption, NumAssumptions)
	for i := range out {
		out[i] = Assumption(i)
	}
	return out
}

// State is what the data have said about an assumption so far.
type State string

const (
	// Unchecked: not enough evidence yet; not used (except AfterHolds and
	// FirstHolds: see usable).
	Unchecked State = "unchecked"
	// Confirmed: enough evidence, no contradiction; used.
	Confirmed State = "confirmed"
	// Contradicted: the data broke it; never used again for the process.
	Contradicted State = "contradicted"
)

// States lists every state, for pre-initialising metrics.
var States = []State{Unchecked, Confirmed, Contradicted}

// Evidence needed before an assumption is used: observations that agreed
// with it, taken on owners certain without it (value assumptions), or
// distinct observation indices at which the family's count equalled the
// anchor's (moments). One disagreement is enough to drop it.
const (
	confirmValue  = 10
	confirmMoment = 4
)

// Contradiction is the evidence that broke an assumption on one server
// process: logged once, counted, shown in reports.
type Contradiction struct {
	// Epoch is the server process (process_start_time_seconds; "" when
	// the server exposes none).
	Epoch      string
	Assumption Assumption
	// RequestID is the request whose observation broke it ("" for a
	// moment, broken by a snapshot).
	RequestID string
	// Detail says what disagreed, with the values.
	Detail string
	// PublishedBefore, for AfterHolds and FirstHolds, is the number of
	// the process's requests published with an exact value before the
	// contradiction: in serve, which decides as files arrive, the values
	// the contradiction puts in doubt (report learns from every request
	// before it decides any, so it has none).
	PublishedBefore int
}

// assumeState is one assumption's standing on one server process.
type assumeState struct {
	state  State
	agreed int
	why    *Contradiction
}

// server is what the timeline has learned about one server process.
type server struct {
	epoch string
	// given: every assumption is taken as given, as before they were
	// checked (tests compare against it).
	given bool
	// changes is the timeline's count of state changes.
	changes *uint64
	st      []assumeState
	// seen: the family was present in some snapshot of this process.
	seen [parser.NumMetrics]bool
	// absentMoved: the family was absent (count 0) from a snapshot in
	// which the anchor of group g had moved; a contradiction of moment
	// (g, m) as soon as the family turns out to exist.
	absentMoved [parser.NumGroups][parser.NumMetrics]bool
	// a1: what the requests said about AfterHolds and FirstHolds
	// (afterholds.go).
	a1 a1Evidence
}

func (t *Timeline) server(epoch string) *server {
	s, ok := t.servers[epoch]
	if !ok {
		s = &server{epoch: epoch, st: make([]assumeState, NumAssumptions), given: t.given, changes: &t.changes}
		t.changes++
		for i := range s.st {
			s.st[i].state = Unchecked
		}
		t.servers[epoch] = s
		t.serverOrder = append(t.serverOrder, epoch)
	}
	return s
}

// usable reports whether attribution may rely on a.
func (s *server) usable(a Assumption) bool {
	if s.given {
		return true
	}
	if a == AfterHolds || a == FirstHolds {
		return s.st[a].state != Contradicted
	}
	return s.st[a].state == Confirmed
}

// agree records one observation that agreed with a.
func (s *server) agree(a Assumption, need int) {
	st := &s.st[a]
	if st.state == Contradicted {
		return
	}
	st.agreed++
	if st.agreed >= need && st.state != Confirmed {
		st.state = Confirmed
		*s.changes++
	}
}

// assumptionSet is a set of assumptions (bit a: a).
type assumptionSet uint64

func (as assumptionSet) has(a Assumption) bool { return as&(1<<a) != 0 }

// agreeFrom records that request rs's evidence agreed with a, unless it
// did in an earlier Resolve: a request kept at a cut is learned from again
// with the component it is decided in, and counting its evidence twice
// would confirm a on fewer requests than the threshold says. (Within one
// Resolve a request may agree more than once, on its finish and on its
// first token, as it always has.)
func (s *server) agreeFrom(rs *reqState, a Assumption, need int) {
	if rs.counted.has(a) {
		return
	}
	rs.counting |= 1 << a
	s.agree(a, need)
}

// contradict turns a off for the process and reports it once.
func (t *Timeline) contradict(s *server, a Assumption, id, format string, args ...any) {
	st := &s.st[a]
	if st.state == Contradicted || s.given {
		return
	}
	st.state = Contradicted
	t.changes++
	st.why = &Contradiction{Epoch: s.epoch, Assumption: a, RequestID: id, Detail: fmt.Sprintf(format, args...)}
	if a == AfterHolds || a == FirstHolds {
		st.why.PublishedBefore = s.a1.published
	}
	if t.OnContradiction != nil {
		t.OnContradiction(*st.why)
	}
}

// check records one checked observation of a: agreement or contradiction.
func (t *Timeline) check(s *server, rs *reqState, a Assumption, ok bool, format string, args ...any) bool {
	if ok {
		s.agreeFrom(rs, a, confirmValue)
		return true
	}
	t.contradict(s, a, rs.ID, format, args...)
	return false
}

// AssumptionStatus is one assumption's standing on one server process.
type AssumptionStatus struct {
	Assumption Assumption
	State      State
	// Agreed counts the observations (or, for moments, the indices) that
	// agreed with it.
	Agreed int
	// Contradiction, for Contradicted, is the evidence.
	Contradiction *Contradiction
	// Note, when not empty, says what the state rests on (AfterHolds,
	// FirstHolds: who vouched for the windows in use).
	Note string
	// Windows, for AfterHolds and FirstHolds (nil for the others),
	// counts the windows by who vouched for them.
	Windows *Windows
}

// ServerAssumptions is what the timeline knows about one server process.
type ServerAssumptions struct {
	Epoch  string
	Status []AssumptionStatus
}

// AssumptionChanges counts the changes of assumption states so far (a new
// server process, a confirmation, a contradiction): a caller that
// publishes the states republishes them when it moved.
func (t *Timeline) AssumptionChanges() uint64 { return t.changes }

// Assumptions returns every server process's assumption states, in the
// order the processes were first seen.
func (t *Timeline) Assumptions() []ServerAssumptions {
	out := make([]ServerAssumptions, 0, len(t.serverOrder))
	for _, e := range t.serverOrder {
		s := t.servers[e]
		sa := ServerAssumptions{Epoch: e}
		for a, st := range s.st {
			as := AssumptionStatus{Assumption: Assumption(a), State: st.state, Agreed: st.agreed, Contradiction: st.why}
			for g, h := range holds {
				if Assumption(a) == h {
					as.Note = s.a1Note(h)
					w := s.a1.windows[g]
					as.Windows = &w
				}
			}
			sa.Status = append(sa.Status, as)
		}
		out = append(out, sa)
	}
	return out
}

// learnMoments compares, in one snapshot, each family's count with its
// group's anchor count: a family observed at another moment than the
// anchor shows a different count in a snapshot taken between the two
// moments of some request. newLevel says the anchor count is new for the
// series (evidence counts distinct indices, not repeated snapshots).
func (t *Timeline) learnMoments(p *Point, g parser.Group, st *seriesState, newLevel bool) {
	s := t.server(p.Epoch)
	anchor := st.anchor
	var fams *[parser.NumMetrics]famState
	switch g {
	case parser.Finish:
		fams = &st.fams
	case parser.FirstToken:
		// The finish families of the same label set, in the same snapshot.
		fin := p.lookup(parser.Finish, st.labels)
		if fin == nil || !st.fams[parser.TTFT].ok {
			return
		}
		fams = &fin.fams
	}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		if fams[m].ok {
			s.seen[m] = true
		}
	}
	for _, m := range momentFamilies[g] {
		a, _ := moment(g, m)
		f := fams[m]
		if !f.ok {
			// Not exposed yet: a count of 0, if the family exists at all.
			if anchor > 0 {
				if !s.seen[m] {
					s.absentMoved[g][m] = true
					continue
				}
				t.contradict(s, a, "", "%s absent (count 0) in a snapshot where the %s anchor count is %d", m.Name(), g, anchor)
			}
			continue
		}
		if s.absentMoved[g][m] {
			t.contradict(s, a, "", "%s was absent (count 0) from a snapshot where the %s anchor count had moved", m.Name(), g)
			continue
		}
		if f.count != anchor {
			t.contradict(s, a, "", "%s count %d where the %s anchor count is %d", m.Name(), f.count, g, anchor)
			continue
		}
		if newLevel && anchor > 0 && !(g == parser.Finish && m == parser.Queue) {
			s.agree(a, confirmMoment)
		}
	}
}

// inMoment reports whether family m of an observation of group g may take
// its value at the group's index: m is the group's own anchor family, or
// the server is confirmed to observe m in that moment.
func (t *Timeline) inMoment(epoch string, g parser.Group, m parser.Metric) bool {
	if (g == parser.Finish && m == parser.E2E) || (g == parser.FirstToken && m == parser.TTFT) {
		return true
	}
	a, ok := moment(g, m)
	if !ok {
		return false
	}
	s, ok := t.servers[epoch]
	return ok && (s.given || s.st[a].state == Confirmed)
}

// learn checks the server's assumptions on one component: it is solved by
// the bare count rule alone (A1 and A2, nothing else), and every request
// whose observations that pins is a certain owner on which the
// assumptions can be checked. A bare solve that fails, or a request whose
// window did not move, contradicts A1; only the snapshot tool's protocol
// vouches for it (noteVouches). It returns the bare solve for
// learnValues (nil: nothing to check), which the caller runs once every
// ready component has been through learn, so that the value checks see
// the moments all of them confirmed.
func (t *Timeline) learn(comp []*reqState) *attempt {
	srv := t.server(comp[0].After.Epoch)
	if !srv.usable(AfterHolds) && !srv.usable(FirstHolds) {
		return nil
	}
	at := t.solveAll(comp, 0)
	if srv.usable(AfterHolds) {
		t.checkHolds(srv, &at, parser.Finish)
		if g := parser.FirstToken; srv.usable(AfterHolds) && at.failedIn[g] {
			// The first-token group was solved within what the finish
			// group said (the request's engine and model): a finish
			// taken from a neighbour (A1 false for it, or a dropped
			// observation) leaves its first token no candidate there.
			// Whether the first tokens hold on their own is judged below.
			t.contradict(srv, AfterHolds, at.failedInID[g], "the first-token observations of the requests overlapping %s do not fit the engines their finish observations say", at.failedInID[g])
		}
		if !srv.usable(AfterHolds) {
			// Solve the first-token group again on its own windows.
			at = t.solveAll(comp, 0)
		}
	}
	if srv.usable(FirstHolds) {
		t.checkHolds(srv, &at, parser.FirstToken)
	}
	t.noteVouches(srv, comp)
	if !srv.usable(AfterHolds) {
		// Without A1 there are no finish pins, but the first-token pins
		// rest on first_holds_observation alone: the rules that read only
		// the first token (capture's bounds on TTFT) are checked on them.
		// (Without first_holds_observation the checks read the finish
		// alone.)
		if !srv.usable(FirstHolds) {
			return nil
		}
		return &at
	}
	for i, rs := range comp {
		if fp := at.fin[i].pinned; fp != nil {
			t.checkQueueMoment(srv, rs, *fp)
			if at.first[i].pinned == nil {
				t.checkFirstCandidates(srv, rs, *fp, at.first[i].possible, &at.results[i].Values)
			}
		}
	}
	return &at
}

// checkHolds contradicts group g's A1 (AfterHolds, FirstHolds) when a
// bare solve found a request of the group without an observation of its
// own: no covering assignment, or a window that did not move.
func (t *Timeline) checkHolds(s *server, at *attempt, g parser.Group) {
	a, what, snaps := AfterHolds, "finish", "after"
	if g == parser.FirstToken {
		a, what, snaps = FirstHolds, "first-token", "first (or after)"
	}
	switch {
	case at.failedIn[g]:
		t.contradict(s, a, at.failedInID[g], "no assignment gives the requests overlapping %s a %s observation of their own inside their windows", at.failedInID[g], what)
	case at.unmoved[g]:
		t.contradict(s, a, at.unmovedID[g], "no %s observation between the before and %s snapshots of %s", what, snaps, at.unmovedID[g])
	}
}

// learnValues checks the value assumptions on the requests a bare solve
// pinned, with their values read under the moments confirmed by now. It
// reports whether they all held: a pin that breaks one is as likely a
// request whose after missed its own observation (A1), whose pin took a
// neighbour's; the caller then publishes nothing of the component.
func (t *Timeline) learnValues(comp []*reqState, at *attempt) (held bool) {
	held = true
	srv := t.server(comp[0].After.Epoch)
	for i, rs := range comp {
		res := &at.results[i]
		fp, tp := at.fin[i].pinned, at.first[i].pinned
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			switch {
			case !rs.present[m]:
			case m.Group() == parser.Finish && fp != nil:
				res.Values[m] = t.value(*fp, m)
			case tp != nil && (m == parser.TTFT || (!res.Values[m].Exact && t.inMoment(srv.epoch, parser.FirstToken, m))):
				res.Values[m] = t.value(*tp, m)
			}
		}
		if !t.checkValues(srv, rs, res, fp, tp) {
			held = false
		}
	}
	return held
}

// checkQueueMoment: counts alone cannot tell queue observed at finish from
// queue observed when the next request leaves the queue, which a finish
// frees at the same moment (llm-d-inference-sim under load): both keep
// queue's count equal to e2e's. Values can: the queue and the inference
// of one request fit in its e2e. The queue moment is confirmed only by
// this check, on finish observations the bare rule pinned.
func (t *Timeline) checkQueueMoment(s *server, rs *reqState, fp obs) {
	mq, _ := moment(parser.Finish, parser.Queue)
	if s.st[mq].state == Contradicted {
		return
	}
	q, inf, e2e := t.valueAt(fp, parser.Queue, false), t.valueAt(fp, parser.Inference, false), t.value(fp, parser.E2E)
	if !q.Exact || !inf.Exact || !e2e.Exact {
		return
	}
	if q.V+inf.V <= e2e.V+slack(e2e.V) {
		s.agreeFrom(rs, mq, confirmValue)
		return
	}
	t.contradict(s, mq, rs.ID, "queue %gs + inference %gs at the index of e2e %gs exceed it", q.V, inf.V, e2e.V)
}

// checkFirstCandidates checks the first-token rules on a request whose
// finish the bare rule pinned (fp) but whose first token it did not. Under
// A1 and A2 (the bare rule's own premises) its own first-token observation
// is one of possible, the observations some assignment covering the
// component gives it: a rule that every one of them satisfies holds for
// its own (agreement), a rule that none satisfies fails for it
// (contradiction), and a mixed set says nothing. possible is narrower
// than the window: an observation every assignment gives another request
// is not in it.
func (t *Timeline) checkFirstCandidates(s *server, rs *reqState, fp obs, possible []obs, v *[parser.NumMetrics]Value) {
	if len(possible) == 0 {
		return
	}
	// FirstAtDecodeStart: made within the finish moment less decode
	// (times known at both ends).
	if w := t.decodeStart(fp, v[parser.Decode]); !w.lo.IsZero() || !w.hi.IsZero() {
		in, out, untimed := 0, 0, 0
		for _, o := range possible {
			switch ok, timed := t.madeWithin(o, w); {
			case !ok:
				out++
			case timed:
				in++
			default:
				untimed++
			}
		}
		switch {
		case in > 0 && out == 0 && untimed == 0:
			s.agreeFrom(rs, FirstAtDecodeStart, confirmValue)
		case in == 0 && untimed == 0 && out > 0:
			t.contradict(s, FirstAtDecodeStart, rs.ID, "none of the %d first-token observations %s can have was made within %v of its finish observation less decode %gs", out, rs.ID, t.MaxObserveDelay, v[parser.Decode].V)
		}
	}
	// FirstBeforeFinish: at or below the first-token count of the first
	// snapshot after the finish.
	if hb := t.firstBound(fp); hb >= 0 {
		below := 0
		for _, o := range possible {
			if o.k <= uint64(hb) {
				below++
			}
		}
		switch below {
		case len(possible):
			s.agreeFrom(rs, FirstBeforeFinish, confirmValue)
		case 0:
			t.contradict(s, FirstBeforeFinish, rs.ID, "every first-token observation %s can have is after the snapshot at first-token count %d that follows its finish", rs.ID, hb)
		}
	}
	// TTFTWithinE2E, where every candidate's TTFT is isolated.
	if e2e := v[parser.E2E]; e2e.Exact {
		within, isolated := 0, true
		for _, o := range possible {
			ttft := t.value(o, parser.TTFT)
			if !ttft.Exact {
				isolated = false // a candidate's value is not known
				break
			}
			if ttft.V <= e2e.V+1e-6 {
				within++
			}
		}
		switch {
		case !isolated:
		case within == len(possible):
			s.agreeFrom(rs, TTFTWithinE2E, confirmValue)
		case within == 0:
			t.contradict(s, TTFTWithinE2E, rs.ID, "every TTFT %s can have exceeds its e2e %gs", rs.ID, e2e.V)
		}
	}
}

// checkValues checks the value assumptions on one request whose finish
// (fp) and first-token (tp) observations the bare rule pinned, and
// reports whether they all held.
func (t *Timeline) checkValues(s *server, rs *reqState, res *Result, fp, tp *obs) (held bool) {
	held = true
	r := &rs.Request
	v := res.Values
	ttft, e2e, q, p := v[parser.TTFT], v[parser.E2E], v[parser.Queue], v[parser.Prefill]
	if ttft.Exact && e2e.Exact {
		held = t.check(s, rs, TTFTWithinE2E, ttft.V <= e2e.V+1e-6, "TTFT %gs > e2e %gs", ttft.V, e2e.V) && held
	}
	if ttft.Exact && q.Exact && p.Exact {
		ok := ttft.V >= q.V+p.V-slack(q.V+p.V)
		// Only a request that queued tells a TTFT that contains the queue
		// from one that starts at scheduling: agreement counts only then.
		if !ok || q.V > 2*slack(q.V+p.V) {
			held = t.check(s, rs, TTFTContainsQueuePrefill, ok, "TTFT %gs < queue %gs + prefill %gs", ttft.V, q.V, p.V) && held
		}
	}
	if fp != nil && tp != nil {
		if hb := t.firstBound(*fp); hb >= 0 {
			held = t.check(s, rs, FirstBeforeFinish, tp.k <= uint64(hb), "first-token observation %d after the snapshot at first-token count %d that follows its finish", tp.k, hb) && held
		}
		if w := t.decodeStart(*fp, v[parser.Decode]); !w.lo.IsZero() || !w.hi.IsZero() {
			if ok, timed := t.madeWithin(*tp, w); !ok || timed {
				held = t.check(s, rs, FirstAtDecodeStart, ok, "first-token observation %d not within %v of its finish observation less decode %gs", tp.k, t.MaxObserveDelay, v[parser.Decode].V) && held
			}
		}
	}
	arr := window{r.ArrivalLo, r.ArrivalHi}
	type timed struct {
		o   *obs
		val Value
		max float64
		m   parser.Metric
	}
	for _, x := range []timed{{fp, e2e, r.MaxE2E, parser.E2E}, {tp, ttft, r.MaxTTFT, parser.TTFT}} {
		if x.o == nil || !x.val.Exact {
			continue
		}
		if x.max > 0 || (!arr.lo.IsZero() && !t.obsTimes(*x.o).hi.IsZero()) {
			ok := !exceeds(x.val.V, x.max) && t.fitsAbove(*x.o, x.val.V, arr)
			held = t.check(s, rs, CaptureBounds, ok, "%s %gs larger than capture's times allow (receive to byte %gs)", x.m.Name(), x.val.V, x.max) && held
		}
		if x.m == parser.E2E && t.MaxObserveDelay > 0 && !arr.hi.IsZero() && !t.obsTimes(*x.o).lo.IsZero() {
			held = t.check(s, rs, ObserveDelay, t.fitsBelow(*x.o, x.val.V, arr), "%s %gs observed more than %v after arrival + value", x.m.Name(), x.val.V, t.MaxObserveDelay) && held
		}
	}
	if fp != nil && r.Tokens != nil {
		if ex, checked := t.excluded(*fp, r.Tokens); checked {
			held = t.check(s, rs, TokenFingerprints, !ex, "usage prompt %d, completion %d tokens disagree with the observed token histograms", r.Tokens.Prompt, r.Tokens.Generation) && held
		}
	}
	if q.Exact && r.ServerQueue != nil {
		held = t.check(s, rs, ServerQueueTime, sameServerTime(q.V, *r.ServerQueue), "queue observation %gs, server's queue_time %gs", q.V, *r.ServerQueue) && held
	}
	return held
}
