package attribution

import "slices"

// ReasonSimultaneous: the request's observation is one of two or more
// observations of its series that no snapshot separates, so its value
// is not in the snapshots at all, whichever of them is its own
// (docs/attribution.md, "Simultaneous"). On vLLM V1 these are chiefly
// requests whose first token or finish was recorded in the same engine
// step as another's: no scrape can fall between them.
const ReasonSimultaneous Reason = "simultaneous"

// run returns the stretch of observations of o's series that no snapshot
// splits and that holds o: (lo, hi], where lo and hi are counts some
// snapshot of the server process showed (index 0 counts: every series
// starts there) and none showed a count in between. ok is false when no
// snapshot shows a count at or above o's.
func (t *Timeline) run(o obs) (lo, hi uint64, ok bool) {
	si := t.series[o.sid]
	j, _ := slices.BinarySearch(si.ks, o.k) // first level >= k
	if j == len(si.ks) {
		return 0, 0, false
	}
	if j > 0 {
		lo = si.ks[j-1]
	}
	return lo, si.ks[j], true
}

// inseparable reports whether every candidate in cands (indices into
// obsOf) lies in one run of two or more observations that no snapshot
// splits: whichever candidate is the request's, the snapshots only hold
// the run's sum. An empty cands is not.
func (t *Timeline) inseparable(cands []int, obsOf []obs) bool {
	if len(cands) == 0 {
		return false
	}
	first := obsOf[cands[0]]
	lo, hi, ok := t.run(first)
	if !ok || hi-lo < 2 {
		return false
	}
	for _, j := range cands[1:] {
		o := obsOf[j]
		if o.sid != first.sid || o.k <= lo || o.k > hi {
			return false
		}
	}
	return true
}

// unsplit turns the overlap of a value of an observation that is forced
// but not isolated into simultaneous: such an observation lies in a run
// of two or more that no snapshot splits (a snapshot at k-1 or at k is
// missing). Every other value passes unchanged.
func unsplit(v Value) Value {
	if !v.Exact && v.Reason == ReasonOverlap {
		v.Reason = ReasonSimultaneous
	}
	return v
}
