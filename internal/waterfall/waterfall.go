// Package waterfall lays out one request's phases as a bar for the
// pictures of the live /requests page and of `report --format=html`:
// queue | prefill | decode, each to scale from the request's arrival, and
// TTFT as a mark. A phase is drawn only where its place is known: it
// needs its own value and every earlier phase's to be exact, because the
// bar is never allowed to show a guess.
package waterfall

import (
	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// Phase names, as CSS classes and legends use them.
const (
	Queue   = "queue"
	Prefill = "prefill"
	Decode  = "decode"
)

// Segment is one drawn phase, in seconds from the request's arrival.
type Segment struct {
	Phase      string
	Start, Len float64
}

// Bar is the layout of one request.
type Bar struct {
	Segments []Segment
	// TTFT is the time to first token, with HasTTFT when it is exact.
	TTFT    float64
	HasTTFT bool
	// E2E is the end-to-end latency, with HasE2E when it is exact: the
	// outline of the whole bar (the phases need not fill it: the server's
	// e2e also holds tokenisation and the response's last step).
	E2E    float64
	HasE2E bool
	// Stopped names the first phase that could not be placed ("" when
	// all three are drawn).
	Stopped string
}

// Extent is how far the bar reaches, in seconds: the scale a picture
// needs to show it whole.
func (b *Bar) Extent() float64 {
	x := 0.0
	if b.HasE2E {
		x = b.E2E
	}
	if b.HasTTFT {
		x = max(x, b.TTFT)
	}
	for _, s := range b.Segments {
		x = max(x, s.Start+s.Len)
	}
	return x
}

// Layout places the request's phases.
func Layout(r *attribution.Result) Bar {
	var b Bar
	if v := r.Values[parser.TTFT]; v.Exact {
		b.TTFT, b.HasTTFT = v.V, true
	}
	if v := r.Values[parser.E2E]; v.Exact {
		b.E2E, b.HasE2E = v.V, true
	}
	at := 0.0
	for _, p := range []struct {
		name string
		m    parser.Metric
	}{{Queue, parser.Queue}, {Prefill, parser.Prefill}, {Decode, parser.Decode}} {
		v := r.Values[p.m]
		if !v.Exact {
			b.Stopped = p.name
			break
		}
		b.Segments = append(b.Segments, Segment{Phase: p.name, Start: at, Len: v.V})
		at += v.V
	}
	return b
}

// Percent is x as a percentage of scale, for CSS widths and offsets;
// 0 when scale is not positive.
func Percent(x, scale float64) float64 {
	if scale <= 0 || x <= 0 {
		return 0
	}
	return 100 * x / scale
}
