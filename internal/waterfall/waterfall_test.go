package waterfall

import (
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestLayout: phases follow each other from arrival; a withheld phase
// stops the bar there (its place and every later one's are unknown);
// TTFT and e2e are drawn only when exact.
func TestLayout(t *testing.T) {
	exact := func(v float64) attribution.Value { return attribution.Value{V: v, Exact: true} }
	withheld := attribution.Value{Reason: attribution.ReasonOverlap}
	res := func(q, p, d, ttft, e2e attribution.Value) *attribution.Result {
		r := &attribution.Result{}
		r.Values[parser.Queue], r.Values[parser.Prefill], r.Values[parser.Decode] = q, p, d
		r.Values[parser.TTFT], r.Values[parser.E2E] = ttft, e2e
		return r
	}
	for _, tc := range []struct {
		name    string
		r       *attribution.Result
		segs    []Segment
		stopped string
		extent  float64
	}{
		{"all exact", res(exact(1), exact(2), exact(3), exact(3.1), exact(6.5)),
			[]Segment{{Queue, 0, 1}, {Prefill, 1, 2}, {Decode, 3, 3}}, "", 6.5},
		{"prefill withheld: decode has no place", res(exact(1), withheld, exact(3), withheld, exact(6.5)),
			[]Segment{{Queue, 0, 1}}, Prefill, 6.5},
		{"queue withheld: nothing drawn", res(withheld, exact(2), exact(3), exact(3.1), withheld),
			nil, Queue, 3.1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Layout(tc.r)
			if len(b.Segments) != len(tc.segs) || b.Stopped != tc.stopped || b.Extent() != tc.extent {
				t.Fatalf("%+v, want %+v stopped at %q, extent %v", b, tc.segs, tc.stopped, tc.extent)
			}
			for i, s := range b.Segments {
				if s != tc.segs[i] {
					t.Errorf("segment %d: %+v, want %+v", i, s, tc.segs[i])
				}
			}
			if b.HasTTFT != tc.r.Values[parser.TTFT].Exact || b.HasE2E != tc.r.Values[parser.E2E].Exact {
				t.Errorf("TTFT %v, e2e %v drawn", b.HasTTFT, b.HasE2E)
			}
		})
	}
	if Percent(1, 4) != 25 || Percent(1, 0) != 0 || Percent(-1, 4) != 0 {
		t.Error("Percent")
	}
}
