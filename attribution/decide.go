package attribution

import (
	"math"
	"slices"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// decide attributes one component of overlapping requests. Finish
// observations are attributed first: the series (model and engine) they
// pin, or the series their candidates lie in, restrict the request's
// first-token candidates, since one request is served by one engine.
func (t *Timeline) decide(comp []*reqState) []Result {
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
	fin := t.solve(comp, parser.Finish, nil, results)
	t.solve(comp, parser.FirstToken, fin, results)
	for i := range results {
		results[i].finish()
	}
	return results
}

// finishInfo is what the finish group tells the first-token group about a
// request.
type finishInfo struct {
	// labels of the series its finish candidates (or its pinned
	// observation) lie in; nil: no restriction.
	labels map[string]bool
	// pinned is its finish observation when forced.
	pinned *obs
}

// solve attributes group g's observations to the component's requests and
// fills their values. For the first-token group, fin (the finish group's
// outcome) narrows each request's candidates: same series labels as its
// finish (one request runs on one engine), no later than the first
// snapshot after its finish (A4), and no TTFT larger than its exact e2e
// (both are measured from the same arrival on the same clock).
func (t *Timeline) solve(comp []*reqState, g parser.Group, fin []finishInfo, results []Result) []finishInfo {
	n := len(comp)
	adj := make([][]int, n)
	var obsOf []obs
	index := map[obs]int{}
	hadIvals := make([]bool, n)
	for i, rs := range comp {
		var hiBound int64 = -1
		var e2e Value
		minTTFT := math.Inf(-1)
		if fin != nil {
			e2e = results[i].Values[parser.E2E]
			if q, p := results[i].Values[parser.Queue], results[i].Values[parser.Prefill]; q.Exact && p.Exact {
				// A5: the server's TTFT (frontend clock, from arrival to
				// the first token's output) contains its queue and
				// prefill intervals (engine clock). The slack covers
				// clock-rate differences between the two clocks.
				minTTFT = q.V + p.V - slack(q.V+p.V)
			}
			if p := fin[i].pinned; p != nil {
				hiBound = t.firstBound(*p)
			}
		}
		arr := t.arrival(&rs.Request, fin, i, e2e)
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
			}
			for k := iv.lo + 1; k <= hi; k++ {
				o := obs{iv.sid, k}
				if si.taken[k] || (g == parser.Finish && t.excluded(o, rs.Tokens)) {
					continue
				}
				if v := t.value(o, measured); v.Exact {
					if exceeds(v.V, maxValue) || !t.fitsArrival(o, v.V, arr) {
						continue
					}
					// First token only (fin is set): TTFT ≤ e2e, and A5.
					if fin != nil && ((e2e.Exact && v.V > e2e.V+1e-6) || v.V < minTTFT) {
						continue
					}
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
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			if m.Group() != g || !comp[i].present[m] {
				continue
			}
			results[i].Values[m] = v(m)
		}
	}
	out := make([]finishInfo, n)
	var left []int // requests taking part in the matching
	for i := range comp {
		switch {
		case len(adj[i]) > 0:
			left = append(left, i)
			out[i].labels = map[string]bool{}
			for _, j := range adj[i] {
				out[i].labels[t.series[obsOf[j].sid].key.labels] = true
			}
		case hadIvals[i]:
			// Its window moved, but every observation in it is taken by
			// another request or ruled out by its own token counts: the
			// snapshots contradict the assumptions.
			set(i, func(parser.Metric) Value { return Value{Reason: ReasonInconsistent} })
		default:
			set(i, func(parser.Metric) Value { return Value{Reason: ReasonMissing} })
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
		for _, i := range left {
			set(i, func(parser.Metric) Value { return Value{Reason: ReasonInconsistent} })
		}
		return out
	}
	forced := forcedEdges(ladj, len(obsOf), matchL)
	for li, i := range left {
		if !forced[li] {
			set(i, func(parser.Metric) Value { return Value{Reason: ReasonOverlap} })
			continue
		}
		o := obsOf[matchL[li]]
		si := t.series[o.sid]
		si.taken[o.k] = true
		out[i] = finishInfo{labels: map[string]bool{si.key.labels: true}, pinned: &o}
		if results[i].Model != "" && results[i].Model != si.model {
			// The request's finish and first token were pinned to
			// different models: impossible for one request.
			set(i, func(parser.Metric) Value { return Value{Reason: ReasonInconsistent} })
			continue
		}
		results[i].Model = si.model
		set(i, func(m parser.Metric) Value { return t.value(o, m) })
	}
	return out
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
func (t *Timeline) arrival(r *Request, fin []finishInfo, i int, e2e Value) window {
	w := window{r.ArrivalLo, r.ArrivalHi}
	if fin == nil || fin[i].pinned == nil || !e2e.Exact {
		return w
	}
	ot := t.obsTimes(*fin[i].pinned)
	s := slack(e2e.V)
	if !ot.hi.IsZero() {
		if hi := ot.hi.Add(-time.Duration((e2e.V - s) * 1e9)); w.hi.IsZero() || hi.Before(w.hi) {
			w.hi = hi
		}
	}
	if !ot.lo.IsZero() && t.MaxObserveDelay > 0 {
		lo := ot.lo.Add(-time.Duration((e2e.V+s)*1e9) - t.MaxObserveDelay)
		if w.lo.IsZero() || lo.After(w.lo) {
			w.lo = lo
		}
	}
	return w
}

// fitsArrival reports whether observation o, whose exact value v is a
// duration from arrival, can be the request's own given its arrival
// window: the server observed it at arrival + v, or at most
// MaxObserveDelay later (A6). A value too large for the time the
// observation was made by rules o out for any arrival in the window; one
// too small needs the observe-delay bound. Unknown times rule nothing out.
func (t *Timeline) fitsArrival(o obs, v float64, arr window) bool {
	if arr.lo.IsZero() && arr.hi.IsZero() {
		return true
	}
	ot := t.obsTimes(o)
	s := slack(v)
	if !ot.hi.IsZero() && !arr.lo.IsZero() && v > ot.hi.Sub(arr.lo).Seconds()+s {
		return false
	}
	if t.MaxObserveDelay > 0 && !ot.lo.IsZero() && !arr.hi.IsZero() &&
		v < (ot.lo.Sub(arr.hi)-t.MaxObserveDelay).Seconds()-s {
		return false
	}
	return true
}
