// Package attribution decides, for each request, which observation of each
// per-request histogram is its own, and publishes a value only when that
// observation and its value are both determined exactly by the snapshots.
//
// The design note is docs/attribution.md. In short: every snapshot in a
// directory samples the same cumulative histograms of one server. Per
// histogram series, the count orders the observations; two snapshots whose
// counts are k-1 and k isolate observation k, whose value is the difference
// of their sums. A request's own observation lies inside its before/after
// window, so each request has a set of candidate observations; an
// observation belongs to at most one request. A request is attributed only
// when every assignment of requests to candidates that gives each request
// one observation of its own gives it the same one (a forced edge of the
// bipartite matching).
package attribution

import (
	"math"
	"strconv"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// famState is one histogram's count and sum in one series of one snapshot.
type famState struct {
	count uint64
	sum   float64
	ok    bool // the family is present in this series
}

// seriesState is one series (one label set, e.g. model and engine) of one
// group in one snapshot.
type seriesState struct {
	labels string
	model  string
	anchor uint64 // count of the group's anchor family: the observation index
	fams   [parser.NumMetrics]famState
	// tokBounds/tokCounts keep the token histograms' buckets, used as
	// fingerprints to rule out candidates (see fingerprint.go).
	tokBounds [2][]float64
	tokCounts [2][]uint64
}

// Point is the part of one snapshot that attribution needs: per group, per
// series, the counts and sums of the per-request families. It is a few
// numbers per series, not the file.
type Point struct {
	// Epoch identifies the server process (process_start_time_seconds);
	// counts of different epochs are not comparable.
	Epoch  string
	groups [parser.NumGroups][]seriesState
	// lo and hi bracket when the server generated the content (see
	// SetTimes); zero when unknown.
	lo, hi time.Time
}

// SetTimes records that the server generated the snapshot's content no
// earlier than lo and no later than hi, on the snapshot taker's clock
// (capture: the scrape's start, and the arrival of its response). The
// bounds let attribution rule out candidates whose values do not fit the
// time they were observed at (docs/attribution.md, A6). Bounds that are
// not both set, or out of order, are ignored.
func (p *Point) SetTimes(lo, hi time.Time) {
	if lo.IsZero() || hi.IsZero() || hi.Before(lo) {
		return
	}
	p.lo, p.hi = lo, hi
}

// anchors are, per group, the family whose count serves as the
// observation index: TTFT for the first token, e2e for the finish. Every
// server the exporter reads has both; other families join a group's
// moment only once the data confirm they move with its anchor (assume.go).
// An anchor family that is absent has count 0: servers expose a family
// from its first observation on.
var anchors = [parser.NumGroups]parser.Metric{parser.FirstToken: parser.TTFT, parser.Finish: parser.E2E}

// countOf converts a histogram count as written in the text format to an
// integer; ok is false for negative, fractional or non-finite counts.
func countOf(v float64) (uint64, bool) {
	if v < 0 || v != math.Trunc(v) || math.IsInf(v, 0) || v > 1<<53 {
		return 0, false
	}
	return uint64(v), true
}

// NewPoint reduces a parsed snapshot. It returns ok=false when a count is
// not a non-negative integer (the snapshot is then unusable).
func NewPoint(s *parser.Snapshot) (*Point, bool) {
	p := &Point{}
	if s.HasProcessStartTime {
		p.Epoch = strconv.FormatFloat(s.ProcessStartTime, 'g', -1, 64)
	}
	for i := range s.Series {
		ser := &s.Series[i]
		g := ser.Metric.Group()
		st := p.series(g, ser.Labels, ser.Model)
		c, ok := countOf(ser.Count)
		if !ok {
			return nil, false
		}
		st.fams[ser.Metric] = famState{count: c, sum: ser.Sum, ok: true}
		if ti := tokenIndex(ser.Metric); ti >= 0 {
			bounds := make([]float64, len(ser.Buckets))
			counts := make([]uint64, len(ser.Buckets))
			for j, b := range ser.Buckets {
				bounds[j] = b.UpperBound
				if counts[j], ok = countOf(b.Count); !ok {
					return nil, false
				}
			}
			st.tokBounds[ti], st.tokCounts[ti] = bounds, counts
		}
	}
	for g := range p.groups {
		for i := range p.groups[g] {
			st := &p.groups[g][i]
			st.anchor = st.fams[anchors[g]].count
		}
	}
	// A first-token series also carries the finish families that may be
	// observed at the first token (a server that observes prefill there):
	// their value at a first-token index is read from its levels.
	for i := range p.groups[parser.FirstToken] {
		ft := &p.groups[parser.FirstToken][i]
		if fin := p.lookup(parser.Finish, ft.labels); fin != nil {
			for _, m := range momentFamilies[parser.FirstToken] {
				ft.fams[m] = fin.fams[m]
			}
		}
	}
	return p, true
}

func (p *Point) series(g parser.Group, labels, model string) *seriesState {
	for i := range p.groups[g] {
		if p.groups[g][i].labels == labels {
			return &p.groups[g][i]
		}
	}
	p.groups[g] = append(p.groups[g], seriesState{labels: labels, model: model})
	return &p.groups[g][len(p.groups[g])-1]
}

// lookup returns the series with the given labels in group g, or nil.
func (p *Point) lookup(g parser.Group, labels string) *seriesState {
	for i := range p.groups[g] {
		if p.groups[g][i].labels == labels {
			return &p.groups[g][i]
		}
	}
	return nil
}

// has reports whether the point carries metric m in any series.
func (p *Point) has(m parser.Metric) bool {
	for _, st := range p.groups[m.Group()] {
		if st.fams[m].ok {
			return true
		}
	}
	return false
}

func tokenIndex(m parser.Metric) int {
	switch m {
	case parser.PromptTokens:
		return 0
	case parser.GenerationTokens:
		return 1
	}
	return -1
}
