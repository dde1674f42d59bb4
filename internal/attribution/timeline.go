package attribution

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Request is one request's snapshots, as paired by the ingest step.
type Request struct {
	ID string
	// Before was scraped before the request reached the server; After
	// after its finish observations landed. Both are required.
	Before, After *Point
	// First, optional, was scraped right after the first response byte of
	// a streaming response: it follows the request's TTFT observation, so
	// it narrows the TTFT window. It is not used for the finish window (a
	// one-token answer finishes before its first byte is sent).
	First *Point
	// Tokens, optional, are the token counts the response reported
	// (capture's info sidecar); they rule out candidate observations whose
	// token histograms cannot hold them.
	Tokens *Tokens
	// ServerQueue, when not nil, is the queue time in seconds the server
	// itself reported for the request (vLLM's per-request metrics object,
	// queue_time_ms): evidence about its queue observation.
	ServerQueue *float64
	// FinishUnobserved says the snapshot tool could not confirm that the
	// after snapshot holds the request's finish observations (capture's
	// after_observed=false). The request is then kept out of the finish
	// group altogether: with its observation possibly outside its window
	// (A1 false), it could take another request's.
	FinishUnobserved bool
	// AfterObserved says the snapshot tool saw the finish count move
	// above the before's before it wrote the after (capture's
	// after_observed=true), and LastByte is when the response's last byte
	// passed it (capture's last_byte_at; zero: unknown). With an after
	// scraped past LastByte, the tool vouches for A1 (afterholds.go).
	AfterObserved bool
	LastByte      time.Time
	// FirstByte is when the first byte of a streaming response passed
	// the snapshot tool (capture's first_byte_at; zero: unknown). With a
	// First scraped from then on, capture vouches for the first-token
	// window (afterholds.go).
	FirstByte time.Time
	// MaxTTFT and MaxE2E, when > 0, are upper bounds on the request's
	// TTFT and e2e in seconds, known from outside the server: capture saw
	// the request arrive and its first and last byte leave, and the server
	// measures both from an arrival no earlier than the proxy's and
	// observes them before those bytes are sent. Candidates whose exact
	// values exceed them (plus a clock slack) are ruled out.
	MaxTTFT, MaxE2E float64
	// ArrivalLo and ArrivalHi, when set, bracket the moment the request
	// reached the server, on the clock of the snapshot times (capture: it
	// forwarded the request after receiving it, and saw the first response
	// byte after the server had it). With snapshot times (Point.SetTimes)
	// they rule out candidates observed at a time their value cannot
	// reach from this arrival (docs/attribution.md, A6).
	ArrivalLo, ArrivalHi time.Time
	// Proxy is what a proxy in front of the server measured of the
	// request, passed on to the Result as it is.
	Proxy ProxyTimes

	BeforeTime, AfterTime time.Time
	BeforeFile, AfterFile string
}

// Tokens are a request's token counts as reported in its response.
type Tokens struct {
	Prompt, Generation int
}

// obs identifies one observation: the k-th of series sid.
type obs struct {
	sid int32
	k   uint64
}

// ival is a request's candidate observations in one series: lo < k <= hi.
type ival struct {
	sid    int32
	lo, hi uint64
}

type reqState struct {
	Request
	// ivals are the request's windows, vouched for or not: they group
	// requests into components (a request kept out of a group's matching
	// still overlaps its neighbours, which are then not alone in their
	// windows); vouch says, per group, whether the matching may use them.
	ivals   [parser.NumGroups][]ival
	vouch   [parser.NumGroups]voucher
	present [parser.NumMetrics]bool
	added   time.Time
	// counted: the assumptions this request's evidence agreed with in an
	// earlier Resolve (a request kept past a cut is learned from again
	// with its component: each request agrees with an assumption once);
	// counting: those it agreed with in the current one. noted: its
	// windows are counted in the server's A1 tally (noteVouches).
	counted, counting assumptionSet
	noted             bool
	// ghost: published at a cut with a value withheld that its
	// neighbours could still pin, it stays for the next decision of its
	// component as a claimant of the groups it was not pinned in
	// (pinned), so that the members the cut kept are solved with it, as
	// they would have been had the component waited (Timeline.keep). It
	// is never published again.
	ghost  bool
	pinned [parser.NumGroups]bool
}

// level is what the timeline knows at one observation index of one series:
// the family counts and sums of the first snapshot seen there.
type level struct {
	fams [parser.NumMetrics]famState
	// firstMin is, for a finish-group level, the lowest first-token
	// anchor count of the same label set among the snapshots seen at this
	// level (-1: none). Every request finished by this level had its
	// first token by then (assumption A4), which bounds TTFT windows.
	firstMin int64
	conflict [parser.NumMetrics]bool
	// spread is, per family, the largest difference between the sums of
	// the snapshots seen at this level that differed only by rounding
	// (sameSum); 0 when they all agreed exactly.
	spread    [parser.NumMetrics]float64
	tokBounds [2][]float64
	tokCounts [2][]uint64
	// tLo is the latest content-start bound and tHi the earliest
	// content-end bound of the timed snapshots seen at this level (zero:
	// none). Observation k happened after tLo of level k-1 and no later
	// than tHi of level k.
	tLo, tHi time.Time
}

type seriesKey struct {
	group         parser.Group
	epoch, labels string
}

type seriesInfo struct {
	key    seriesKey
	model  string
	levels map[uint64]*level
	ks     []uint64 // sorted keys of levels
	taken  map[uint64]bool
}

// Timeline holds every snapshot point seen and the requests not yet
// decided. It is not safe for concurrent use: one ingest goroutine owns it.
type Timeline struct {
	// MaxObserveDelay bounds how long after the end of the interval it
	// measures the server observes a value (A6). It is the slack of the
	// time checks that bound a value from below; 0 turns those off (the
	// checks from above need no such bound).
	MaxObserveDelay time.Duration

	// OnContradiction, when set, is called once for each assumption a
	// server process's data contradict (docs/attribution.md).
	OnContradiction func(Contradiction)

	// TrustAfters: the user vouches that every after snapshot was taken
	// once its request's response had ended, as capture's are
	// (--attribution.trust-afters). Without it, only afters capture
	// vouched for hold finish windows; the others are kept out of the
	// matching (afterholds.go). It does not vouch for first snapshots.
	TrustAfters bool

	ids    map[seriesKey]int32
	series []*seriesInfo
	active map[string]*reqState
	ghosts int // members of active that are ghosts
	open   map[string]*Point
	// servers: what the data said about each server process's
	// assumptions, by epoch; serverOrder: epochs as first seen.
	servers     map[string]*server
	serverOrder []string
	changes     uint64 // assumption state changes (AssumptionChanges)
	// given: take every assumption as given, unchecked (tests: the
	// behaviour the checks replace).
	given bool
}

// NewTimeline returns an empty timeline.
func NewTimeline() *Timeline {
	return &Timeline{ids: map[seriesKey]int32{}, active: map[string]*reqState{}, open: map[string]*Point{},
		servers: map[string]*server{}}
}

func (t *Timeline) sid(g parser.Group, epoch string, st *seriesState) int32 {
	k := seriesKey{g, epoch, st.labels}
	id, ok := t.ids[k]
	if !ok {
		id = int32(len(t.series))
		t.ids[k] = id
		t.series = append(t.series, &seriesInfo{key: k, model: st.model, levels: map[uint64]*level{}, taken: map[uint64]bool{}})
	}
	return id
}

// AddPoint records a snapshot on the timeline. Every snapshot counts, also
// those of requests that never pair and periodic timeline snapshots: each
// one can isolate an observation.
func (t *Timeline) AddPoint(p *Point) {
	for g := range p.groups {
		for i := range p.groups[g] {
			st := &p.groups[g][i]
			si := t.series[t.sid(parser.Group(g), p.Epoch, st)]
			firstCount := int64(-1)
			if parser.Group(g) == parser.Finish {
				if ft := p.lookup(parser.FirstToken, st.labels); ft != nil {
					firstCount = int64(ft.anchor)
				}
			}
			lv, ok := si.levels[st.anchor]
			t.learnMoments(p, parser.Group(g), st, !ok)
			if ok && firstCount >= 0 && (lv.firstMin < 0 || firstCount < lv.firstMin) {
				lv.firstMin = firstCount
			}
			if !ok {
				lv = &level{fams: st.fams, firstMin: firstCount, tokBounds: st.tokBounds, tokCounts: st.tokCounts}
				si.levels[st.anchor] = lv
				i, _ := slices.BinarySearch(si.ks, st.anchor)
				si.ks = slices.Insert(si.ks, i, st.anchor)
				lv.addTimes(p)
				continue
			}
			lv.addTimes(p)
			// The same observation index seen twice must show the same
			// state; if not (a restart without process_start_time, or a
			// scrape that interleaved with the server's observe calls),
			// values at this index are not trusted. Sums that differ only
			// by rounding are the same observations added up in another
			// order (several API server processes summed at each scrape):
			// the difference is kept and counted against the value's
			// rounding budget (valueAt).
			for m := range lv.fams {
				f0, f1 := lv.fams[m], st.fams[m]
				switch {
				case f0 == f1:
				case f0.ok == f1.ok && f0.count == f1.count && sameSum(f0.sum, f1.sum):
					lv.spread[m] = max(lv.spread[m], math.Abs(f0.sum-f1.sum))
				default:
					lv.conflict[m] = true
				}
			}
		}
	}
}

func (lv *level) addTimes(p *Point) {
	if p.lo.IsZero() {
		return
	}
	if lv.tLo.IsZero() || p.lo.After(lv.tLo) {
		lv.tLo = p.lo
	}
	if lv.tHi.IsZero() || p.hi.Before(lv.tHi) {
		lv.tHi = p.hi
	}
}

// SetOpen records that request id has a before snapshot but no after yet.
// Open requests are not attributed; they only delay the decision on
// requests whose windows they overlap (see Resolve).
func (t *Timeline) SetOpen(id string, before *Point) { t.open[id] = before }

// ClearOpen forgets an open request (paired or expired).
func (t *Timeline) ClearOpen(id string) { delete(t.open, id) }

// Remove forgets a waiting request (it turned out to be a duplicate) and
// returns it; ok is false when no request with that id was waiting.
func (t *Timeline) Remove(id string) (r Request, ok bool) {
	rs, ok := t.active[id]
	if !ok {
		return Request{}, false
	}
	t.drop(rs)
	return rs.Request, !rs.ghost
}

// drop forgets a request of active.
func (t *Timeline) drop(rs *reqState) {
	delete(t.active, rs.ID)
	if rs.ghost {
		t.ghosts--
	}
}

// Waiting calls f for every paired request waiting for a decision.
func (t *Timeline) Waiting(f func(r *Request)) {
	for _, rs := range t.active {
		if !rs.ghost {
			f(&rs.Request)
		}
	}
}

// Pending is the number of paired requests waiting for a decision.
func (t *Timeline) Pending() int { return len(t.active) - t.ghosts }

// Add adds a paired request. Both of its snapshots are added as points. It
// returns a result at once when the pair is unusable (server restart,
// counters going down); otherwise the request waits for Resolve.
func (t *Timeline) Add(r Request, now time.Time) (Result, bool) {
	t.AddPoint(r.Before)
	t.AddPoint(r.After)
	if r.First != nil {
		t.AddPoint(r.First)
	}
	if r.Before.Epoch != r.After.Epoch || (r.First != nil && r.First.Epoch != r.Before.Epoch) {
		return NewRejected(&r, RejectRestart), true
	}
	rs := &reqState{Request: r, added: now, vouch: t.vouchFor(&r)}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		rs.present[m] = r.After.has(m)
	}
	for g := parser.Group(0); g < parser.NumGroups; g++ {
		if g == parser.Finish && r.FinishUnobserved {
			continue
		}
		end := r.After
		if g == parser.FirstToken && r.First != nil {
			end = r.First
		}
		for i := range end.groups[g] {
			ea := &end.groups[g][i]
			var lo uint64
			if b := r.Before.lookup(g, ea.labels); b != nil {
				if reset(b, ea) {
					return NewRejected(&r, RejectCounterReset), true
				}
				lo = b.anchor
			}
			if ea.anchor > lo {
				rs.ivals[g] = append(rs.ivals[g], ival{sid: t.sid(g, end.Epoch, ea), lo: lo, hi: ea.anchor})
			}
		}
		// A series in the before snapshot that is gone afterwards: the
		// server restarted (or the after file is not a full scrape).
		for i := range r.Before.groups[g] {
			if end.lookup(g, r.Before.groups[g][i].labels) == nil {
				return NewRejected(&r, RejectCounterReset), true
			}
		}
	}
	if _, dup := t.active[r.ID]; dup {
		// Ingest rejects duplicates before they get here; should one slip
		// through, keep the first rather than overwrite it.
		return NewRejected(&r, RejectDuplicate), true
	}
	t.active[r.ID] = rs
	return Result{}, false
}

// reset reports whether any family count or sum went down from b to a.
func reset(b, a *seriesState) bool {
	if a.anchor < b.anchor {
		return true
	}
	for m := range a.fams {
		fb, fa := b.fams[m], a.fams[m]
		if !fb.ok {
			continue
		}
		if !fa.ok || fa.count < fb.count || fa.sum < fb.sum {
			return true
		}
	}
	return false
}

// ResolveOptions says which waiting requests to decide now.
type ResolveOptions struct {
	// All decides every waiting request (batch mode: report, and the end
	// of a directory's initial scan), but the Held ones: those are
	// decided as without All.
	All bool
	// Now and MaxDelay: a group of overlapping requests is decided once no
	// open request overlaps it; or, once its oldest member has waited
	// MaxDelay, cut: its members that have waited MaxDelay/2, or that
	// come out with nothing waiting could improve, are decided, and the
	// others wait for the next cut (cut). No request waits more than
	// MaxDelay.
	Now      time.Time
	MaxDelay time.Duration
	// Held, when not nil, says which requests files not read yet may
	// change (the caller knows of files deferred): a group with a held
	// member is decided only once it has waited MaxDelay (and then cut).
	// Deciding it earlier would be sound; holding it only lets it find
	// more.
	Held func(*Request) bool
}

// holds: a member of comp is held (Held).
func (opt ResolveOptions) holds(comp []*reqState) bool {
	if opt.Held == nil {
		return false
	}
	for _, rs := range comp {
		if opt.Held(&rs.Request) {
			return true
		}
	}
	return false
}

// Resolve decides the waiting requests that are ready and returns their
// results, in no particular order.
func (t *Timeline) Resolve(opt ResolveOptions) []Result {
	if len(t.active) == 0 {
		return nil
	}
	var ready [][]*reqState
	var cut []bool
	for _, comp := range t.components() {
		live := slices.DeleteFunc(slices.Clone(comp), func(rs *reqState) bool { return rs.ghost })
		if len(live) == 0 {
			for _, rs := range comp {
				t.drop(rs) // nobody left to claim against
			}
			continue
		}
		whole, timedOut := opt.All && !opt.holds(live), false
		if !whole {
			whole, timedOut = t.ready(comp, live, opt)
		}
		if whole || timedOut {
			ready = append(ready, comp)
			cut = append(cut, !whole)
		}
	}
	// First what every ready component says about the assumptions, then
	// the decisions: each decision uses all the evidence at hand.
	learned := make([]*attempt, len(ready))
	for i, comp := range ready {
		learned[i] = t.learn(comp)
	}
	suspect := make([]bool, len(ready))
	for i, comp := range ready {
		if learned[i] != nil {
			suspect[i] = !t.learnValues(comp, learned[i])
		}
	}
	for _, comp := range ready {
		for _, rs := range comp {
			rs.counted |= rs.counting
			rs.counting = 0
		}
	}
	var out []Result
	for i, comp := range ready {
		var res []Result
		var pinned [][parser.NumGroups]bool
		if suspect[i] && !t.given {
			res = t.withheld(comp, ReasonInconsistent)
		} else {
			res, pinned = t.decide(comp, func(j int, r *Result) bool {
				return comp[j].ghost || cut[i] && t.keep(comp[j], r, opt)
			})
		}
		for j, rs := range comp {
			switch {
			case rs.ghost:
				// Its one more decision is made.
				t.drop(rs)
			case res[j].RequestID == "":
				// Kept for the next decision.
			default:
				out = append(out, res[j])
				if cut[i] && pinned != nil && improvable(&res[j]) {
					rs.ghost, rs.pinned = true, pinned[j]
					t.ghosts++
				} else {
					t.drop(rs)
				}
			}
		}
	}
	return out
}

// keep says, at a cut (a component decided because its oldest member has
// waited MaxDelay, while requests may still join it), whether member rs,
// whose result is r, waits for the next cut rather than be decided now:
// it has waited less than MaxDelay/2, and a value of it is withheld for a
// reason the requests that join later can remove. Those are overlap
// (more claimants, more snapshots and more taken observations can force
// its observation) and simultaneous (a snapshot not read yet may split
// the run). The other reasons stay as they are: missing (its window did
// not move), absent and unvouched (its own snapshots say so),
// inconsistent (the levels' counts, or a solve that failed: more
// claimants only make a matching harder), unconfirmed (the server's
// standing, which other components change, not neighbours; a component
// decided whole publishes it too).
//
// Half of MaxDelay: a cut leaves only members younger than that, so the
// next cut of the component, when its oldest has waited MaxDelay, comes
// at least MaxDelay/2 later; a component of a busy server is solved at
// most twice per MaxDelay, not at every Resolve. A member kept at a cut
// is younger than the oldest member left, so it is decided at the next
// cut at the latest: before it has waited MaxDelay.
//
// A member decided at a cut with such a value withheld is published, and
// stays as a ghost (reqState.ghost) for the next decision, so that the
// kept members are solved with it as a claimant: without it, its
// observations would be free for them to take, and they would be pinned
// less than at the cut.
func (t *Timeline) keep(rs *reqState, r *Result, opt ResolveOptions) bool {
	return opt.Now.Sub(rs.added) < opt.MaxDelay/2 && improvable(r)
}

// improvable: a value of r is withheld for a reason that the requests
// joining its component later can remove (Timeline.keep).
func improvable(r *Result) bool {
	for _, v := range r.Values {
		if v.Reason == ReasonOverlap || v.Reason == ReasonSimultaneous {
			return true
		}
	}
	return false
}

// components groups the waiting requests into sets that share candidate
// observations (transitively); sets are decided independently.
func (t *Timeline) components() [][]*reqState {
	reqs := make([]*reqState, 0, len(t.active))
	for _, rs := range t.active {
		reqs = append(reqs, rs)
	}
	// Deterministic order: results do not depend on map iteration.
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].ID < reqs[j].ID })
	parent := make([]int, len(reqs))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		for parent[i] != i {
			parent[i] = parent[parent[i]]
			i = parent[i]
		}
		return i
	}
	type span struct {
		lo, hi uint64
		req    int
	}
	bySeries := map[int32][]span{}
	for i, rs := range reqs {
		for g := range rs.ivals {
			for _, iv := range rs.ivals[g] {
				bySeries[iv.sid] = append(bySeries[iv.sid], span{iv.lo, iv.hi, i})
			}
		}
	}
	for _, spans := range bySeries {
		sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
		curHi, cur := uint64(0), -1
		for _, s := range spans {
			if cur >= 0 && s.lo < curHi {
				parent[find(s.req)] = find(cur)
			}
			if cur < 0 || s.hi > curHi {
				curHi, cur = s.hi, s.req
			}
		}
	}
	groups := map[int][]*reqState{}
	var roots []int
	for i := range reqs {
		r := find(i)
		if _, ok := groups[r]; !ok {
			roots = append(roots, r)
		}
		groups[r] = append(groups[r], reqs[i])
	}
	out := make([][]*reqState, 0, len(roots))
	for _, r := range roots {
		out = append(out, groups[r])
	}
	return out
}

// ready reports whether no open request can still take part in this
// component and no held file may change it (whole), or else whether its
// oldest member has waited MaxDelay (timedOut: it is cut). Deciding early
// is always sound (docs/attribution.md): more requests can only pin more,
// never unpin; waiting only finds more.
//
// live is comp without its ghosts: only those wait.
func (t *Timeline) ready(comp, live []*reqState, opt ResolveOptions) (whole, timedOut bool) {
	oldest := live[0].added
	for _, rs := range live {
		if rs.added.Before(oldest) {
			oldest = rs.added
		}
	}
	hi := map[int32]uint64{}
	for _, rs := range comp {
		for g := range rs.ivals {
			for _, iv := range rs.ivals[g] {
				hi[iv.sid] = max(hi[iv.sid], iv.hi)
			}
		}
	}
	timedOut = opt.Now.Sub(oldest) >= opt.MaxDelay
	if opt.holds(live) {
		return false, timedOut
	}
	for _, before := range t.open {
		for sid, h := range hi {
			si := t.series[sid]
			if before.Epoch != si.key.epoch {
				continue
			}
			var c uint64
			if st := before.lookup(si.key.group, si.key.labels); st != nil {
				c = st.anchor
			}
			if c < h {
				return false, timedOut
			}
		}
	}
	return true, timedOut
}

// Prune drops what no waiting or open request can need any more: levels
// and taken marks below the lowest window start of each series. Call it
// after Resolve in long-running use; memory then stays proportional to the
// requests in flight.
func (t *Timeline) Prune() {
	floor := make([]uint64, len(t.series))
	for i, si := range t.series {
		if n := len(si.ks); n > 0 {
			floor[i] = si.ks[n-1]
		}
	}
	lower := func(g parser.Group, p *Point) {
		for i := range p.groups[g] {
			st := &p.groups[g][i]
			if sid, ok := t.ids[seriesKey{g, p.Epoch, st.labels}]; ok && st.anchor < floor[sid] {
				floor[sid] = st.anchor
			}
		}
	}
	for _, rs := range t.active {
		for g := parser.Group(0); g < parser.NumGroups; g++ {
			lower(g, rs.Before)
		}
	}
	for _, p := range t.open {
		for g := parser.Group(0); g < parser.NumGroups; g++ {
			lower(g, p)
		}
	}
	for sid, si := range t.series {
		f := floor[sid]
		i := 0
		for i < len(si.ks) && si.ks[i] < f {
			delete(si.levels, si.ks[i])
			i++
		}
		si.ks = si.ks[i:]
		for k := range si.taken {
			if k < f {
				delete(si.taken, k)
			}
		}
	}
}

// zeroLevel is index 0 of every series: no observation, every sum 0.
var zeroLevel = level{firstMin: -1}

// value returns metric m's value of observation o, if two snapshots
// isolate it: one at index k-1 and one at k, with m's own count moving in
// lockstep with the group's anchor at both.
func (t *Timeline) value(o obs, m parser.Metric) Value { return t.valueAt(o, m, true) }

// valueAt is value; with moment false it does not ask whether the server
// is confirmed to observe m in o's moment (the checks of that moment
// compare such values).
func (t *Timeline) valueAt(o obs, m parser.Metric, moment bool) Value {
	si := t.series[o.sid]
	l0, l1 := si.levels[o.k-1], si.levels[o.k]
	if l0 == nil && o.k == 1 {
		// Every series starts at count 0 and sum 0 in its process.
		l0 = &zeroLevel
	}
	if l0 == nil || l1 == nil {
		return Value{Reason: ReasonOverlap}
	}
	f0, f1 := l0.fams[m], l1.fams[m]
	if !f0.ok && !f1.ok {
		return Value{Reason: ReasonAbsent}
	}
	if moment && !t.inMoment(si.key.epoch, si.key.group, m) {
		return Value{Reason: ReasonUnconfirmed}
	}
	if !f0.ok && o.k == 1 {
		// A family absent until its first observation had count 0.
		f0 = famState{ok: true}
	}
	if !f0.ok || !f1.ok || l0.conflict[m] || l1.conflict[m] || f0.count != o.k-1 || f1.count != o.k {
		return Value{Reason: ReasonInconsistent}
	}
	v := fromSums(f0.sum, f1.sum, m)
	if spread := l0.spread[m] + l1.spread[m]; v.Exact && spread > 0 && !withinRounding(f0.sum, f1.sum, v.V, spread) {
		return Value{Reason: ReasonInconsistent}
	}
	return v
}

// fromSums is the value of the one observation of m between two snapshots
// whose sums are s0 and s1: withheld when the difference cannot be a
// value (negative, not finite, a fractional token count), or when the
// sums are so large that rounding could hide it (sumDeltaExact).
func fromSums(s0, s1 float64, m parser.Metric) Value {
	v := s1 - s0
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || !sumDeltaExact(s0, s1, v) {
		return Value{Reason: ReasonInconsistent}
	}
	if m.IsTokens() {
		r := math.Round(v)
		if math.Abs(v-r) > 1e-6 {
			return Value{Reason: ReasonInconsistent}
		}
		v = r
	}
	return Value{V: v, Exact: true}
}
