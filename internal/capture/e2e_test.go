package capture

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/report"
	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// attribute runs the exporter's ingest and attribution over the capture
// directory, as `delta-exporter report` does.
func (h *harness) attribute() *record.Recorder {
	h.t.Helper()
	res := record.New()
	in := ingest.New(ingest.Config{FS: os.DirFS(h.dir), MaxObserveDelay: ingest.DefaultMaxObserveDelay, Results: res.Publish, Metrics: res})
	if err := in.Scan(true); err != nil {
		h.t.Fatal(err)
	}
	in.Finish()
	res.NoRejections(h.t)
	return res
}

// score compares every published value with what the fake observed. It
// fails the test on any wrong value and returns how many requests were
// decided exact.
type scoreCard struct {
	requests, exact, ttftExact, finishExact, values, exactValues int
	// the same for streaming requests only
	streams, streamExact, streamTTFTExact int
}

func (h *harness) score(res *record.Recorder) scoreCard {
	h.t.Helper()
	return h.scoreAgainst(res, h.fake.Observations())
}

// scoreAgainst scores res against the observations obs of any upstream.
func (h *harness) scoreAgainst(res *record.Recorder, obs []fakeupstream.Observation) scoreCard {
	h.t.Helper()
	var s scoreCard
	for _, o := range obs {
		if !o.Finished {
			continue
		}
		s.requests++
		r, ok := res.ByID[SanitizeID(o.ID)]
		if !ok {
			h.t.Errorf("%s: no result", o.ID)
			continue
		}
		if r.Outcome == attribution.Exact {
			s.exact++
		}
		finish := true
		for i, tr := range truth {
			m := parser.Metric(i)
			v := r.Values[m]
			s.values++
			if v.Exact {
				s.exactValues++
				if !sameValue(v.V, tr.value(o)) {
					h.t.Errorf("%s %s: published %v, the fake observed %v", o.ID, m.Name(), v.V, tr.value(o))
				}
			} else if m.Group() == parser.Finish {
				finish = false
			}
		}
		if r.Values[parser.TTFT].Exact {
			s.ttftExact++
		}
		if finish {
			s.finishExact++
		}
		if o.Stream {
			s.streams++
			if r.Outcome == attribution.Exact {
				s.streamExact++
			}
			if r.Values[parser.TTFT].Exact {
				s.streamTTFTExact++
			}
		}
	}
	return s
}

// TestEndToEndSequential: fake upstream -> capture -> ingest and
// attribution. With one request at a time every value of every request is
// published and equals what the fake observed, once the server is
// confirmed to observe every family with its finish: 12 requests, as the
// queue's moment takes 10 (docs/attribution.md, moments).
func TestEndToEndSequential(t *testing.T) {
	if parser.Metric(len(truth)) != parser.NumMetrics {
		t.Fatal("truth table does not follow parser's metric order")
	}
	for i, tr := range truth {
		if fam, ok := parser.LookupSource(tr.family); !ok || fam != parser.Metric(i) {
			t.Fatalf("truth row %d (%s) is not parser metric %d", i, tr.family, i)
		}
	}
	h := newHarness(t, fakeupstream.Config{Plan: concurrentPlan}, nil)
	h.waitReady()
	const n = 12
	for i := range n {
		h.chat(i%2 == 0, 3, nil)
		h.p.Wait() // the next request's before follows this request's after
	}
	h.p.Wait()
	s := h.score(h.attribute())
	if s.requests != n || s.exact != n {
		t.Errorf("%d of %d requests exact", s.exact, s.requests)
	}
}

// TestEndToEndConcurrent: the same under concurrency, with timeline
// snapshots. Every published value must be right; the share published is
// logged (it depends on timing: see BenchmarkAttributable for the figures).
func TestEndToEndConcurrent(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{Plan: concurrentPlan}, nil)
	h.waitReady()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 5 {
				h.chat((w+i)%2 == 0, 3, nil)
			}
		})
	}
	wg.Wait()
	h.p.Wait()
	got := h.attribute()
	s := h.score(got)
	if s.requests != 40 {
		t.Errorf("%d requests scored", s.requests)
	}
	// `report` on the same directory: the same request values (it is the
	// same ingest; serve's initial scan is too, see e2e TestServeAndReportAgree).
	rep, err := report.Run(context.Background(), report.Config{FS: os.DirFS(h.dir), MaxObserveDelay: ingest.DefaultMaxObserveDelay})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Requests {
		want, ok := got.ByID[r.RequestID]
		if !ok || want.Outcome != r.Outcome || want.Values != r.Values || want.Model != r.Model {
			t.Errorf("report differs for %s: %+v vs %+v", r.RequestID, r, want)
		}
	}
	t.Logf("8 clients: %d of %d requests exact (TTFT %d, finish %d), %d of %d values",
		s.exact, s.requests, s.ttftExact, s.finishExact, s.exactValues, s.values)
}

// BenchmarkAttributable measures the share of requests the exporter
// attributes exactly from a capture directory: Poisson arrivals at a mean
// of 4 and of 16 requests in flight, requests of 0.2-1.2 s on one model
// and engine (one series: every observation competes with every other),
// all streaming or half streaming, and half streaming with timeline
// snapshots every 10 ms instead of 50. About 70 s; run it alone:
//
//	go test -run XXX -bench Attributable -benchtime 1x ./internal/capture
func BenchmarkAttributable(b *testing.B) {
	for _, run := range []struct {
		mix      string
		timeline time.Duration
	}{{"all", 0}, {"half", 0}, {"half", 10 * time.Millisecond}} {
		for _, inflight := range []float64{4, 16} {
			name := "stream=" + run.mix + "/inflight=" + strconv.FormatFloat(inflight, 'g', -1, 64)
			if run.timeline > 0 {
				name += "/timeline=" + run.timeline.String()
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					s := attributableRun(b, inflight, 100, run.mix == "all", run.timeline)
					pct := func(a, n int) float64 { return 100 * float64(a) / float64(max(n, 1)) }
					b.ReportMetric(pct(s.exact, s.requests), "%exact")
					b.ReportMetric(pct(s.ttftExact, s.requests), "%ttft_exact")
					b.ReportMetric(pct(s.finishExact, s.requests), "%finish_exact")
					b.ReportMetric(pct(s.streamExact, s.streams), "%stream_exact")
				}
			})
		}
	}
}

// durationPlan: requests of 0.2-1.2 s: prefill 20-200 ms, decode
// 180-1000 ms over 4-40 tokens.
func durationPlan(r *fakeupstream.Request) fakeupstream.Plan {
	rng := rand.New(rand.NewPCG(uint64(r.Seq), 11))
	return fakeupstream.Plan{
		Prefill:          time.Duration(20+rng.IntN(180)) * time.Millisecond,
		Decode:           time.Duration(180+rng.IntN(820)) * time.Millisecond,
		PromptTokens:     50 + rng.IntN(4000),
		GenerationTokens: 4 + rng.IntN(37),
	}
}

// attributableRun sends n requests with Poisson arrivals at a rate giving
// inflight requests in flight on average, then attributes the directory.
func attributableRun(tb testing.TB, inflight float64, n int, allStream bool, timeline time.Duration) scoreCard {
	// The rows documented in docs/capture.md were measured with timeline
	// snapshots every 50 ms and no scrape budget, then the defaults.
	if timeline == 0 {
		timeline = 50 * time.Millisecond
	}
	mod := func(c *Config) { c.TimelineInterval, c.ScrapeBudget = timeline, 0 }
	h := newHarness(tb, fakeupstream.Config{Plan: durationPlan}, mod)
	h.waitReady()
	const meanDuration = 0.71 // seconds: mean prefill + decode of durationPlan
	rng := rand.New(rand.NewPCG(uint64(inflight), 3))
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { h.chat(allStream || i%2 == 0, 8, nil) })
		time.Sleep(time.Duration(rng.ExpFloat64() * meanDuration / inflight * float64(time.Second)))
	}
	wg.Wait()
	h.p.Wait()
	return h.score(h.attribute())
}
