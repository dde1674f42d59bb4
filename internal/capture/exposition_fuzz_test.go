package capture

import (
	"bytes"
	"math"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
)

// FuzzCheckExposition checks checkExposition against expfmt, the reference
// parser and writer of the text format. Whatever expfmt parses is written
// back in the canonical form servers emit (expfmt's own writer), and then:
//   - the canonical body is accepted (a false rejection would drop a good
//     scrape, and the snapshot with it), and the finish count it returns
//     is the one expfmt read from the e2e families;
//   - that body cut anywhere inside a line is rejected: a connection cut
//     mid-line never passes as a scrape.
//
// expfmt itself takes odd forms no server writes ("A+0"); those are not
// held against the check.
func FuzzCheckExposition(f *testing.F) {
	f.Add([]byte(simulate.NewServer(simulate.ServerConfig{}).AppendText(nil)), uint16(100))
	f.Add([]byte("up{a=\"}\"} 1 2\n"), uint16(3))
	f.Add([]byte("x 1e5\n"), uint16(0))
	f.Add([]byte("# TYPE vllm:e2e_request_latency_seconds histogram\nvllm:e2e_request_latency_seconds_count{model_name=\"m\"} 3\nvllm:e2e_request_latency_seconds_sum{model_name=\"m\"} 1.5\n"), uint16(40))
	f.Fuzz(func(t *testing.T, b []byte, cut uint16) {
		canon, ref, ok := canonical(b)
		if !ok {
			_, _, _ = checkExposition(b) // any input: no panic
			return
		}
		e2e, hasE2E, err := checkExposition(canon)
		if err != nil {
			t.Fatalf("rejects %q, which expfmt wrote: %v", canon, err)
		}
		if hasE2E != ref.hasE2E || !sameFloat(e2e, ref.e2e) {
			t.Fatalf("finish count %v/%v, expfmt %v/%v for %q", e2e, hasE2E, ref.e2e, ref.hasE2E, canon)
		}
		c := 1 + int(cut)%len(canon) // a non-empty prefix
		if c < len(canon) && canon[c-1] != '\n' {
			if _, _, err := checkExposition(canon[:c]); err == nil {
				t.Fatalf("accepted %q, cut inside a line of %q", canon[:c], canon)
			}
		}
	})
}

func sameFloat(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

type reference struct {
	e2e    float64
	hasE2E bool
}

// canonical parses body with expfmt (legacy names, as the servers capture
// fronts write them) and writes it back with expfmt's writer. ok is false
// when expfmt does not parse it or it holds no sample.
func canonical(body []byte) (canon []byte, ref reference, ok bool) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, ref, false
	}
	var buf bytes.Buffer
	for _, mf := range fams {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return nil, ref, false
		}
	}
	samples := 0
	for name, mf := range fams {
		for _, m := range mf.GetMetric() {
			samples++
			var count float64
			switch {
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				count = float64(h.GetSampleCount())
				if h.SampleCountFloat != nil {
					count = h.GetSampleCountFloat()
				}
			case m.GetSummary() != nil:
				count = float64(m.GetSummary().GetSampleCount())
			case isE2E([]byte(name)): // no TYPE line: the _count line is a family of its own
				ref.e2e += m.GetUntyped().GetValue() + m.GetCounter().GetValue() + m.GetGauge().GetValue()
				ref.hasE2E = true
				continue
			default:
				continue
			}
			if isE2E([]byte(name + "_count")) {
				ref.e2e += count
				ref.hasE2E = true
			}
		}
	}
	return buf.Bytes(), ref, samples > 0
}
