package attribution

import (
	"slices"

	"github.com/delta-exporter/delta-exporter/parser"
)

// excluded reports whether observation o cannot be a request with token
// counts tok: its prompt or generation token count is known exactly and
// differs, or no observation between the snapshots around o fell into the
// bucket that holds the request's count. Token counts are exact integers,
// so this never rules out the request's own observation (A3). checked
// says whether anything was compared. Only token families the server is
// confirmed to observe with e2e count.
func (t *Timeline) excluded(o obs, tok *Tokens) (ex, checked bool) {
	if tok == nil {
		return false, false
	}
	si := t.series[o.sid]
	// Nearest snapshots around o: the last at index <= k-1, the first >= k.
	i, _ := slices.BinarySearch(si.ks, o.k)
	if i == 0 || i == len(si.ks) {
		return false, false
	}
	a, b := si.levels[si.ks[i-1]], si.levels[si.ks[i]]
	for ti, want := range [2]int{tok.Prompt, tok.Generation} {
		m := parser.PromptTokens
		if ti == 1 {
			m = parser.GenerationTokens
		}
		if !t.inMoment(si.key.epoch, parser.Finish, m) {
			continue
		}
		if si.ks[i-1] == o.k-1 && si.ks[i] == o.k {
			if v := t.value(o, m); v.Exact {
				checked = true
				if v.V != float64(want) {
					return true, true
				}
			}
			continue
		}
		if empty, ok := bucketEmpty(a.tokBounds[ti], a.tokCounts[ti], b.tokBounds[ti], b.tokCounts[ti], float64(want)); ok {
			checked = true
			if empty {
				return true, true
			}
		}
	}
	return false, checked
}

// bucketEmpty reports whether, between two cumulative bucket vectors with
// the same bounds, no observation fell into the bucket holding v; ok is
// false when the buckets cannot tell.
func bucketEmpty(ba []float64, ca []uint64, bb []float64, cb []uint64, v float64) (empty, ok bool) {
	if len(ba) == 0 || !slices.Equal(ba, bb) || len(ca) != len(cb) {
		return false, false
	}
	j, _ := slices.BinarySearch(ba, v) // first bound >= v: the bucket holding v
	if j == len(ba) {
		return false, false
	}
	in := func(c []uint64) uint64 {
		if j == 0 {
			return c[0]
		}
		return c[j] - c[j-1]
	}
	if cb[j] < ca[j] || (j > 0 && cb[j-1] < ca[j-1]) {
		return false, false // not monotonic: decide nothing from it
	}
	return in(cb) == in(ca), true
}
