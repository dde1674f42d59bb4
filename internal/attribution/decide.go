package attribution

import (
	"math"
	"slices"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// rules is the set of value assumptions a solve may use.
type rules = assumptionSet

// rulesOf is the set of s's value assumptions that are usable.
func rulesOf(s *server) rules {
	var r rules
	for a := Assumption(0); a < numValueAssumptions; a++ {
		if a != AfterHolds && a != FirstHolds && s.usable(a) {
			r |= 1 << a
		}
	}
	return r
}

// attempt is one solve of a component under a set of rules.
type attempt struct {
	results []Result
	fin     []finishInfo
	first   []finishInfo
	// failed: some request that should have a candidate has none, or no
	// assignment gives every request one; failedID names one of them.
	// failedIn and failedInID say it per group.
	failed     bool
	failedID   string
	failedIn   [parser.NumGroups]bool
	failedInID [parser.NumGroups]string
	// unmoved: a request's window of the group did not move although the
	// server has shown the group's anchor; unmovedID names one.
	unmoved   [parser.NumGroups]bool
	unmovedID [parser.NumGroups]string
	// excluded: the rules that ruled out at least one candidate.
	excluded rules
}

// decide attributes one component of overlapping requests with the
// assumptions confirmed for its server. If the assumptions leave some
// request without a candidate, or no assignment covers the requests,
// while the bare count rule alone does not, either one of the
// assumptions that ruled candidates out is false for this server, or A1
// is false for one of these requests (a server that dropped or delayed
// an observation capture vouched for: another request's finish moved the
// count). The rules are all dropped (counted, logged), since the next
// components must not rest on them, but this component is withheld
// (inconsistent), not solved again: solved without the rules it would
// rest on A1 alone, which may be what failed here.
//
// keep says which members are not decided now (a ghost, or a young
// member at a cut: Timeline.keep): their results come back with an empty
// RequestID, and nothing of theirs is committed. pinned says, per member
// decided, the groups its observation was pinned (and committed) in; nil
// when the component is withheld whole. That is sound. The members decided now
// were solved with the kept ones as claimants: an observation pinned to
// one of them is its own in every covering assignment of the whole
// component, so marking it taken and solving the kept members later
// without it removes from their candidates only observations no
// covering assignment gives them: it restricts the graph the whole
// component would be solved on, and later requests only restrict it
// further (more claimants, more taken), as they would have had the
// component waited. Members decided with a value withheld are dropped,
// as a whole component's are, but stay as claimants (ghosts) in the
// groups they were not pinned in, for the next decision: a claimant is a
// request whose own observation is among its candidates (A1), so the
// kept members are solved against what is true of it; in a group it was
// pinned in, its observation is taken, which is the same. Dropping a
// claimant is sound too: what it leaves untaken looks, to the others,
// like the observations of requests that left no files, which the
// matching never needs to cover; it only pins less.
func (t *Timeline) decide(comp []*reqState, keep func(int, *Result) bool) (results []Result, pinned [][parser.NumGroups]bool) {
	srv := t.server(comp[0].After.Epoch)
	if !srv.usable(AfterHolds) && !srv.usable(FirstHolds) {
		return t.withheld(comp, ReasonUnconfirmed), nil
	}
	use := rulesOf(srv)
	blamed := false
	for {
		at := t.solveAll(comp, use)
		if !at.failed || at.excluded&use == 0 || srv.given {
			if blamed && !at.failed {
				return t.withheld(comp, ReasonInconsistent), nil
			}
			pinned = make([][parser.NumGroups]bool, len(comp))
			for i := range at.results {
				if keep(i, &at.results[i]) {
					at.results[i] = Result{}
					at.fin[i], at.first[i] = finishInfo{}, finishInfo{}
				}
				pinned[i] = [parser.NumGroups]bool{parser.Finish: at.fin[i].pinned != nil, parser.FirstToken: at.first[i].pinned != nil}
			}
			t.commit(comp, at)
			srv.notePublished(at.results)
			return at.results, pinned
		}
		blamed = true
		for a := Assumption(0); a < numValueAssumptions; a++ {
			if at.excluded.has(a) {
				t.contradict(srv, a, at.failedID, "with it, the requests overlapping %s cannot each have an observation of their own; without it they can", at.failedID)
			}
		}
		use = rulesOf(srv) // strictly fewer: the loop ends
	}
}

// withheld is every request of comp with every value withheld.
func (t *Timeline) withheld(comp []*reqState, reason Reason) []Result {
	at := t.solveAll(comp, 0)
	for i := range at.results {
		for m := range at.results[i].Values {
			if v := &at.results[i].Values[m]; v.Reason != ReasonAbsent && v.Reason != ReasonUnvouched {
				*v = Value{Reason: reason}
			}
		}
		at.results[i].Model = ""
		at.results[i].finish()
	}
	return at.results
}

// commit marks the observations an attempt attributed as taken: later
// neighbours cannot have them.
func (t *Timeline) commit(comp []*reqState, at attempt) {
	for _, fi := range [][]finishInfo{at.fin, at.first} {
		for _, f := range fi {
			if f.pinned != nil {
				t.series[f.pinned.sid].taken[f.pinned.k] = true
			}
		}
	}
}

// solveAll attributes one component under rules, without changing the
// timeline. Finish observations are attributed first: the series (model
// and engine) they pin, or the series their candidates lie in, restrict
// the request's first-token candidates, since one request is served by
// one engine.
func (t *Timeline) solveAll(comp []*reqState, use rules) attempt {
	results := make([]Result, len(comp))
	for i, rs := range comp {
		res := &results[i]
		res.RequestID = rs.ID
		res.BeforeTime, res.AfterTime = rs.BeforeTime, rs.AfterTime
		res.BeforeFile, res.AfterFile = rs.BeforeFile, rs.AfterFile
		res.Proxy = rs.Proxy
		for m := range res.Values {
			if rs.present[m] {
				res.Values[m].Reason = ReasonMissing
			} else {
				res.Values[m].Reason = ReasonAbsent
			}
		}
	}
	at := attempt{results: results}
	epoch := comp[0].After.Epoch
	srv := t.server(epoch)
	// A group whose A1 the data contradicted is not solved (its values
	// are unconfirmed); without the finish group, the first-token group
	// is solved on its own windows alone (afterholds.go).
	at.fin = make([]finishInfo, len(comp))
	if srv.usable(AfterHolds) {
		at.fin = t.solve(comp, parser.Finish, nil, use, &at)
	} else {
		t.unconfirmedGroup(results, epoch, parser.Finish)
	}
	at.first = make([]finishInfo, len(comp))
	if srv.usable(FirstHolds) {
		var fin []finishInfo
		if srv.usable(AfterHolds) {
			fin = at.fin
		}
		at.first = t.solve(comp, parser.FirstToken, fin, use, &at)
	} else {
		t.unconfirmedGroup(results, epoch, parser.FirstToken)
	}
	for i := range results {
		res := &results[i]
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			v := &res.Values[m]
			if v.Exact || v.Reason == ReasonAbsent || v.Reason == ReasonUnvouched || m == parser.TTFT || m == parser.E2E {
				continue
			}
			if !t.inMoment(epoch, parser.Finish, m) && !t.inMoment(epoch, parser.FirstToken, m) {
				// In no moment the server is confirmed to observe it at: no
				// snapshot says which request's observation it is. Not even
				// a request alone in its window may take it from its own two
				// snapshots: the one observation there may be a request's
				// that left no files (a client that bypasses the snapshot
				// tool) while its own, on a server that observes the family
				// only for some requests (llm-d-inference-sim's queue), was
				// never made. Counts could contradict "every request
				// observes it in its window" but never confirm it.
				*v = Value{Reason: ReasonUnconfirmed}
			}
		}
		res.finish()
	}
	return at
}

// finishInfo is what the finish group tells the first-token group about a
// request.
type finishInfo struct {
	// labels of the series its finish candidates (or its pinned
	// observation) lie in; nil: no restriction.
	labels map[string]bool
	// pinned is its observation in the group when forced.
	pinned *obs
	// possible, when not pinned, lists the observations that some
	// assignment covering the component gives it: under A1, A2 and the
	// rules of the solve, its own is one of them (checkFirstCandidates).
	possible []obs
}

// solve attributes group g's observations to the component's requests and
// fills their values. The rules say which assumptions may rule candidates
// out: token counts, the server's queue time, capture's times (finish and
// first token); for the first-token group, fin (the finish group's
// outcome) narrows each request's candidates further: same series labels
// as its finish (one request runs on one engine), no later than the first
// snapshot after its finish (A4), TTFT ≤ its exact e2e, TTFT ≥ its exact
// queue + prefill (A5).
func (t *Timeline) solve(comp []*reqState, g parser.Group, fin []finishInfo, use rules, at *attempt) []finishInfo {
	results := at.results
	n := len(comp)
	adj := make([][]int, n)
	var obsOf []obs
	index := map[obs]int{}
	hadIvals := make([]bool, n)
	for i, rs := range comp {
		if rs.vouch[g] == unvouched || rs.ghost && rs.pinned[g] {
			// Nobody vouches that its window holds its own observation:
			// it takes no part in the matching (afterholds.go). Or a
			// ghost's observation is pinned and taken.
			continue
		}
		var hiBound int64 = -1
		var e2e Value
		minTTFT := math.Inf(-1)
		if fin != nil {
			e2e = results[i].Values[parser.E2E]
			if q, p := results[i].Values[parser.Queue], results[i].Values[parser.Prefill]; q.Exact && p.Exact && use.has(TTFTContainsQueuePrefill) {
				// A5: the server's TTFT (frontend clock, from arrival to
				// the first token's output) contains its queue and
				// prefill intervals (engine clock). The slack covers
				// clock-rate differences between the two clocks.
				minTTFT = q.V + p.V - slack(q.V+p.V)
			}
			if p := fin[i].pinned; p != nil && use.has(FirstBeforeFinish) {
				hiBound = t.firstBound(*p)
			}
		}
		arr := t.arrival(&rs.Request, fin, i, e2e, use)
		var firstAt window
		if fin != nil && fin[i].pinned != nil && use.has(FirstAtDecodeStart) {
			firstAt = t.decodeStart(*fin[i].pinned, results[i].Values[parser.Decode])
		}
		// Every value check below reads the one metric the group measures
		// from arrival: e2e for finish, TTFT for first token.
		measured, maxValue := parser.TTFT, rs.MaxTTFT
		if g == parser.Finish {
			measured, maxValue = parser.E2E, rs.MaxE2E
		}
		for _, iv := range rs.ivals[g] {
			hadIvals[i] = true
			si := t.series[iv.sid]
			if fin != nil && fin[i].labels != nil && !fin[i].labels[si.key.labels] {
				continue
			}
			hi := iv.hi
			if hiBound >= 0 && uint64(hiBound) < hi {
				hi = uint64(hiBound)
				at.excluded |= 1 << FirstBeforeFinish
			}
			for k := iv.lo + 1; k <= hi; k++ {
				o := obs{iv.sid, k}
				if si.taken[k] {
					continue
				}
				if why := t.ruledOut(o, g, measured, maxValue, &rs.Request, arr, e2e, minTTFT, fin != nil, use); why != 0 {
					at.excluded |= why
					continue
				}
				if ok, _ := t.madeWithin(o, firstAt); !ok {
					at.excluded |= 1 << FirstAtDecodeStart
					continue
				}
				j, ok := index[o]
				if !ok {
					j = len(obsOf)
					index[o] = j
					obsOf = append(obsOf, o)
				}
				adj[i] = append(adj[i], j)
			}
		}
	}
	set := func(i int, v func(parser.Metric) Value) {
		epoch := comp[i].After.Epoch
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			if !comp[i].present[m] {
				continue
			}
			// The first-token group also sets the families the server
			// observes with the first token, not at finish.
			if m.Group() != g && (g != parser.FirstToken || t.inMoment(epoch, parser.Finish, m) || !t.inMoment(epoch, parser.FirstToken, m)) {
				continue
			}
			results[i].Values[m] = v(m)
		}
	}
	fail := func(i int) {
		if !at.failed {
			at.failed, at.failedID = true, comp[i].ID
		}
		if !at.failedIn[g] {
			at.failedIn[g], at.failedInID[g] = true, comp[i].ID
		}
	}
	out := make([]finishInfo, n)
	var left []int // requests taking part in the matching
	for i := range comp {
		switch {
		case comp[i].ghost && comp[i].pinned[g]:
		case len(adj[i]) > 0:
			left = append(left, i)
			out[i].labels = map[string]bool{}
			for _, j := range adj[i] {
				out[i].labels[t.series[obsOf[j].sid].key.labels] = true
			}
		case hadIvals[i]:
			// Its window moved, but every observation in it is taken by
			// another request or ruled out: the snapshots contradict the
			// assumptions.
			fail(i)
			set(i, func(parser.Metric) Value { return Value{Reason: ReasonInconsistent} })
		default:
			if t.shouldHaveMoved(comp[i], g) && !at.unmoved[g] {
				// The server has the group (maybe not yet in this after:
				// families appear at their first observation), yet nothing
				// was observed between the request's snapshots.
				at.unmoved[g], at.unmovedID[g] = true, comp[i].ID
			}
			why := ReasonMissing
			if comp[i].vouch[g] == unvouched && (g != parser.Finish || !comp[i].FinishUnobserved) {
				why = ReasonUnvouched
			}
			set(i, func(parser.Metric) Value { return Value{Reason: why} })
		}
	}
	if len(left) == 0 {
		return out
	}
	ladj := make([][]int, len(left))
	for li, i := range left {
		ladj[li] = adj[i]
	}
	matchL, size := maxMatching(ladj, len(obsOf))
	if size < len(left) {
		// No assignment gives every request an observation of its own:
		// some request's observation is outside its window. Nothing in
		// this component can be trusted for this group.
		fail(left[0])
		for _, i := range left {
			set(i, func(parser.Metric) Value { return Value{Reason: ReasonInconsistent} })
		}
		return out
	}
	forced := forcedEdges(ladj, len(obsOf), matchL)
	allowed := allowedEdges(ladj, len(obsOf), matchL)
	for li, i := range left {
		if !forced[li] {
			for _, j := range allowed[li] {
				out[i].possible = append(out[i].possible, obsOf[j])
			}
			why := ReasonOverlap
			if t.inseparable(ladj[li], obsOf) {
				why = ReasonSimultaneous
			}
			set(i, func(parser.Metric) Value { return Value{Reason: why} })
			continue
		}
		o := obsOf[matchL[li]]
		si := t.series[o.sid]
		out[i] = finishInfo{labels: map[string]bool{si.key.labels: true}, pinned: &o}
		if results[i].Model != "" && results[i].Model != si.model {
			// The request's finish and first token were pinned to
			// different models: impossible for one request.
			set(i, func(parser.Metric) Value { return Value{Reason: ReasonInconsistent} })
			continue
		}
		results[i].Model = si.model
		set(i, func(m parser.Metric) Value { return unsplit(t.value(o, m)) })
	}
	return out
}

// ruledOut returns the rules by which observation o cannot be request r's
// in group g (0: it can be).
func (t *Timeline) ruledOut(o obs, g parser.Group, measured parser.Metric, maxValue float64, r *Request, arr window, e2e Value, minTTFT float64, first bool, use rules) rules {
	if g == parser.Finish {
		if use.has(TokenFingerprints) {
			if ex, _ := t.excluded(o, r.Tokens); ex {
				return 1 << TokenFingerprints
			}
		}
		if use.has(ServerQueueTime) && r.ServerQueue != nil {
			if q := t.value(o, parser.Queue); q.Exact && !sameServerTime(q.V, *r.ServerQueue) {
				return 1 << ServerQueueTime
			}
		}
	}
	v := t.value(o, measured)
	if !v.Exact {
		return 0
	}
	if use.has(CaptureBounds) && (exceeds(v.V, maxValue) || !t.fitsAbove(o, v.V, arr)) {
		return 1 << CaptureBounds
	}
	// TTFT is bounded from below only where it is known to count from
	// arrival (A5 confirmed: it contains the queue): where TTFT starts
	// differs between servers, and a later start makes it "late".
	if use.has(ObserveDelay) && (g == parser.Finish || use.has(TTFTContainsQueuePrefill)) && !t.fitsBelow(o, v.V, arr) {
		return 1 << ObserveDelay
	}
	if first {
		if use.has(TTFTWithinE2E) && e2e.Exact && v.V > e2e.V+1e-6 {
			return 1 << TTFTWithinE2E
		}
		if v.V < minTTFT {
			return 1 << TTFTContainsQueuePrefill
		}
	}
	return 0
}

// decodeStart bounds, from a request's pinned finish observation fp and
// its exact decode value, when its first-token observation was made
// (FirstAtDecodeStart): the finish moment less the decode, within
// MaxObserveDelay either way. Zero ends are unknown.
func (t *Timeline) decodeStart(fp obs, decode Value) window {
	var w window
	if !decode.Exact || t.MaxObserveDelay <= 0 {
		return w
	}
	tol := max(t.MaxObserveDelay, frontendLagSpread)
	ft := t.obsTimes(fp)
	d := time.Duration((decode.V + slack(decode.V)) * 1e9)
	if !ft.lo.IsZero() {
		w.lo = ft.lo.Add(-d - tol)
	}
	if !ft.hi.IsZero() {
		w.hi = ft.hi.Add(-time.Duration((decode.V-slack(decode.V))*1e9) + tol)
	}
	return w
}

// frontendLagSpread bounds how much the frontend's lag behind the engine
// may differ between a request's first-token step and its finish step.
// decode is stamped on the engine's clock, the first token and the finish
// are observed on the frontend's: a frontend that lags the engine by
// different amounts at the two steps shifts the first token's moment
// from the finish's less decode by the difference. The recording delay
// (MaxObserveDelay) is the wrong bound for it: on vLLM's Python stack the
// recording took under 1 ms while the difference reached -163 and +226 ms
// under load (TestRealStackShape's measurements, 50-200-token answers,
// 17 of 300 requests beyond 50 ms).
const frontendLagSpread = 250 * time.Millisecond

// madeWithin reports whether observation o can have been made within w:
// its own time bounds (obsTimes) meet w. Unknown ends rule nothing out;
// timed says whether both of o's were known (a check agrees only then).
func (t *Timeline) madeWithin(o obs, w window) (ok, timed bool) {
	ot := t.obsTimes(o)
	timed = !ot.lo.IsZero() && !ot.hi.IsZero()
	if !w.lo.IsZero() && !ot.hi.IsZero() && ot.hi.Before(w.lo) {
		return false, timed
	}
	return w.hi.IsZero() || ot.lo.IsZero() || !ot.lo.After(w.hi), timed
}

// sameServerTime reports whether an observed duration v (seconds) agrees
// with the server's own per-request figure (seconds, from milliseconds it
// may have rounded).
func sameServerTime(v, server float64) bool {
	return math.Abs(v-server) <= slack(max(v, server))
}

// firstBound returns the highest first-token index that a request whose
// finish observation is o can have had: the first-token count of the
// earliest snapshot seen at or after o's finish level (-1: unknown).
func (t *Timeline) firstBound(o obs) int64 {
	si := t.series[o.sid]
	i, _ := slices.BinarySearch(si.ks, o.k)
	for ; i < len(si.ks); i++ {
		if lv := si.levels[si.ks[i]]; lv.firstMin >= 0 {
			return lv.firstMin
		}
	}
	return -1
}

// exceeds reports whether an exact value v is larger than the bound can
// allow (0: no bound). The slack covers the difference between the
// proxy's and the server's clocks over the interval (rate, not offset:
// both measure durations).
func exceeds(v, bound float64) bool {
	return bound > 0 && v > bound+slack(bound)
}

// window is a span of time on the snapshot taker's clock; zero ends are
// unknown.
type window struct{ lo, hi time.Time }

// slack is the allowance for comparing a duration the server measured
// (value v, seconds) with one on the snapshot taker's clock: the clocks'
// rates may differ slightly, and file names keep microseconds.
func slack(v float64) float64 { return 1e-3 + 1e-3*v }

// obsTimes bounds when observation o was made: after the content of a
// snapshot one below it, no later than the content of one at it (A6).
func (t *Timeline) obsTimes(o obs) window {
	si := t.series[o.sid]
	var w window
	if lv := si.levels[o.k-1]; lv != nil {
		w.lo = lv.tLo
	}
	if lv := si.levels[o.k]; lv != nil {
		w.hi = lv.tHi
	}
	return w
}

// arrival bounds when request i reached the server: what the snapshot
// taker saw (Request.ArrivalLo/Hi) and, for the first-token group, what
// its pinned finish observation tells: the server observed the e2e of an
// arrival at that arrival plus e2e, within MaxObserveDelay after it.
func (t *Timeline) arrival(r *Request, fin []finishInfo, i int, e2e Value, use rules) window {
	w := window{r.ArrivalLo, r.ArrivalHi}
	if fin == nil || fin[i].pinned == nil || !e2e.Exact {
		return w
	}
	ot := t.obsTimes(*fin[i].pinned)
	s := slack(e2e.V)
	if !ot.hi.IsZero() && use.has(CaptureBounds) {
		if hi := ot.hi.Add(-time.Duration((e2e.V - s) * 1e9)); w.hi.IsZero() || hi.Before(w.hi) {
			w.hi = hi
		}
	}
	if !ot.lo.IsZero() && t.MaxObserveDelay > 0 && use.has(ObserveDelay) {
		lo := ot.lo.Add(-time.Duration((e2e.V+s)*1e9) - t.MaxObserveDelay)
		if w.lo.IsZero() || lo.After(w.lo) {
			w.lo = lo
		}
	}
	return w
}

// fitsAbove reports whether observation o, whose exact value v is a
// duration from arrival, was observed late enough for that value: a value
// too large for the time the observation was made by rules o out for any
// arrival in the window. Unknown times rule nothing out.
func (t *Timeline) fitsAbove(o obs, v float64, arr window) bool {
	ot := t.obsTimes(o)
	return ot.hi.IsZero() || arr.lo.IsZero() || v <= ot.hi.Sub(arr.lo).Seconds()+slack(v)
}

// fitsBelow reports whether o was observed early enough for its value v:
// at arrival + v, or at most MaxObserveDelay later (A6).
func (t *Timeline) fitsBelow(o obs, v float64, arr window) bool {
	if t.MaxObserveDelay <= 0 {
		return true
	}
	ot := t.obsTimes(o)
	return ot.lo.IsZero() || arr.hi.IsZero() || v >= (ot.lo.Sub(arr.hi)-t.MaxObserveDelay).Seconds()-slack(v)
}
