package capture

import (
	"net/http"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestRecorderMessageOrder: the recorder decides from the order of the
// messages alone, however late it runs. Every case queues all of its
// messages before the recorder starts (a short stream that ended before
// its recorder ran; with two closed channels and a select, that case once
// picked either). The upstream's metrics fail after the before, so no
// after can be had: only a stream whose id came before its end has its
// before written (early), as readers learn of it while it runs; otherwise
// nothing but the info is written.
func TestRecorderMessageOrder(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{}, func(c *Config) {
		c.ScrapeTimeout = 40 * time.Millisecond
		c.AfterTimeout = 100 * time.Millisecond
	})
	h.waitReady()
	before := h.p.scr.latest.Load()
	h.fake.SetMetricsFault(fakeupstream.MetricsFault{Status: http.StatusInternalServerError})

	now := time.Now()
	end := seen{status: http.StatusOK, firstByteAt: now, lastByteAt: now}
	stream := end
	stream.stream, stream.rawID = true, "chatcmpl-early"
	late := end
	late.stream, late.rawID = true, "chatcmpl-late"
	body := end
	body.body = []byte(`{"id":"cmpl-body","model":"m","usage":{"prompt_tokens":3,"completion_tokens":2}}`)
	for _, tc := range []struct {
		name      string
		msgs      []message
		id, model string
		early     bool // the before is written though no after is
	}{
		{"stream, id then end", []message{{seen: seen{rawID: stream.rawID}}, {seen: stream, over: true}}, stream.rawID, "", true},
		{"stream, id only at the end", []message{{seen: late, over: true}}, late.rawID, "", false},
		{"body read by the recorder", []message{{seen: body, over: true}}, "cmpl-body", "m", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := make(chan message, len(tc.msgs))
			for _, m := range tc.msgs {
				ch <- m
			}
			h.p.wg.Add(1) // as ServeHTTP does
			h.p.record(arrival{receivedAt: now, method: http.MethodPost, path: "/v1/chat/completions", before: before}, ch)
			d := h.files()
			info := h.info(d.one(t, tc.id, parser.Info))
			if info.RequestID != tc.id || info.Model != tc.model || info.After != nil || info.AfterError == "" {
				t.Errorf("info %+v", info)
			}
			if got := len(d.byID[tc.id][parser.Before]); (info.Before != nil) != tc.early || got != map[bool]int{true: 1}[tc.early] {
				t.Errorf("early %v: info.Before %+v, %d before files", tc.early, info.Before, got)
			}
		})
	}
}

// BenchmarkRequestInProcess: a client, the proxy and the fake upstream in
// one process on loopback, requests with no model time (no prefill, no
// decode), one at a time: per request, the proxy's whole work from the
// client's send to the request's last file written (ns/op), and the CPU
// time it took (cpu_µs/op; it, allocs/op and B/op count the whole process,
// client and fake included). Narrower than BenchmarkAddedLatency (no
// competition with a server in another process for the cores), and
// steadier, cpu_µs/op above all on a shared machine: it shows a change in
// the proxy's own cost per request.
func BenchmarkRequestInProcess(b *testing.B) {
	for _, stream := range []bool{false, true} {
		name := "json"
		if stream {
			name = "sse"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan {
				return fakeupstream.Plan{PromptTokens: 9, GenerationTokens: 4}
			}}, func(c *Config) {
				c.ScrapeBudget = -1 // the proxy's cost, not the budget's waits
			})
			h.waitReady()
			b.ReportAllocs()
			cpu0, cpuOK := processCPU()
			for b.Loop() {
				if r := h.chat(stream, 4, nil); r.status != http.StatusOK || r.id == "" {
					b.Fatalf("status %d, id %q", r.status, r.id)
				}
				h.p.Wait()
			}
			if cpu1, ok := processCPU(); ok && cpuOK {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "cpu_µs/op")
			}
		})
	}
}
