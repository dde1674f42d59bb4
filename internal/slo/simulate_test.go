package slo_test

import (
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

const simObjectives = `
objectives:
  - name: goodput
    target: 0.9
    thresholds: {ttft: 500ms, time_per_output_token: 35ms}
  - name: llama-e2e
    target: 0.95
    models: [llama-8b]
    thresholds: {e2e: 5s}
  - name: qwen-start
    target: 0.9
    model_regex: "qwen-.*"
    thresholds: {queue: 100ms, prefill: 300ms}
`

// truthVerdict judges the truth of a request, independently of package
// slo's code: every threshold must hold; a one-token answer has no time
// per output token to hold.
func truthVerdict(o *slo.Objective, tr simulate.Truth) slo.Result {
	vals := [slo.NumValues]float64{slo.Queue: tr.Queue, slo.Prefill: tr.Prefill, slo.Decode: tr.Decode, slo.TTFT: tr.TTFT, slo.E2E: tr.E2E}
	for v, limit := range o.Thresholds {
		if limit == 0 {
			continue
		}
		x := vals[v]
		if slo.Value(v) == slo.TPOT {
			if tr.GenerationTokens < 2 {
				continue
			}
			x = tr.Decode / float64(tr.GenerationTokens-1)
		}
		if x > limit.Seconds() {
			return slo.Missed
		}
	}
	return slo.Met
}

// needsWithheld reports whether a value the objective needs is not exact
// for the request: the definition of unknown, stated on the attribution's
// result.
func needsWithheld(o *slo.Objective, r *attribution.Result) bool {
	metric := [slo.NumValues]parser.Metric{slo.Queue: parser.Queue, slo.Prefill: parser.Prefill, slo.Decode: parser.Decode, slo.TTFT: parser.TTFT, slo.E2E: parser.E2E}
	for v, limit := range o.Thresholds {
		switch {
		case limit == 0:
		case slo.Value(v) == slo.TPOT:
			d, g := r.Values[parser.Decode], r.Values[parser.GenerationTokens]
			if !r.TPOT.Exact && !(d.Exact && g.Exact && g.V < 2) {
				return true
			}
		case !r.Values[metric[v]].Exact:
			return true
		}
	}
	return false
}

// TestAttainmentOnTheSimulator: on simulated runs attributed by the real
// pipeline, every verdict that is not unknown equals the truth's, so the
// attainment equals the truth's attainment over the requests whose values
// are exact; and the unknown count equals the requests with a needed value
// withheld. The figures it logs are the ones quoted in docs/slo.md.
func TestAttainmentOnTheSimulator(t *testing.T) {
	set, err := slo.Parse([]byte(simObjectives))
	if err != nil {
		t.Fatal(err)
	}
	n := 1000
	if testing.Short() {
		n = 150 // the capture layout costs seconds per hundred requests under -race
	}
	for _, run := range []struct {
		name     string
		inflight float64
		capture  bool
	}{
		{"pairs", 4, false},
		{"pairs", 16, false},
		{"capture", 16, true},
	} {
		t.Run(fmt.Sprintf("%s-%g", run.name, run.inflight), func(t *testing.T) {
			cfg := simulate.Config{Seed: 7, Requests: n, MeanInFlight: run.inflight,
				Models: []string{"llama-8b", "qwen-32b"}, Engines: 2,
				AfterJitter: 10 * time.Millisecond, AfterDelay: 10 * time.Millisecond}
			if run.capture {
				cfg.FirstSnapshots, cfg.TimelineInterval, cfg.Capture = true, 50*time.Millisecond, true
				cfg.NonStreaming, cfg.ObserveDelay = 0.5, 3*time.Millisecond
			}
			var sink simulate.MemSink
			truths, err := simulate.Run(cfg, &sink)
			if err != nil {
				t.Fatal(err)
			}
			fsys := fstest.MapFS{}
			for _, f := range sink.Files() {
				fsys[f.Name] = &fstest.MapFile{Data: f.Body}
			}
			c := record.New()
			// Pairs with --attribution.trust-afters (the simulator takes
			// each after once the finish is recorded).
			in := ingest.New(ingest.Config{FS: fsys, MaxObserveDelay: ingest.DefaultMaxObserveDelay, TrustAfters: !cfg.Capture, Results: c.Publish, Metrics: c})
			if err := in.Scan(true); err != nil {
				t.Fatal(err)
			}
			in.Finish()
			c.NoRejections(t)
			byID := map[string]simulate.Truth{}
			for _, tr := range truths {
				byID[tr.RequestID] = tr
			}
			if len(c.Results) != len(truths) {
				t.Fatalf("%d results for %d requests", len(c.Results), len(truths))
			}

			for oi := range set.Objectives {
				o := &set.Objectives[oi]
				var got, truthKnown, truthAll slo.Tally
				wantUnknown, wrong, noModel := 0, 0, 0
				for i := range c.Results {
					r := &c.Results[i]
					tr, ok := byID[r.RequestID]
					if !ok {
						t.Fatalf("result for %q, not a simulated request", r.RequestID)
					}
					if r.Model != "" && r.Model != tr.Model {
						t.Fatalf("%s attributed to %q, truth %q", r.RequestID, r.Model, tr.Model)
					}
					truth := truthVerdict(o, tr)
					if o.Applies(tr.Model) {
						truthAll.Add(truth)
					}
					if !o.Applies(r.Model) {
						continue
					}
					if r.Model == "" {
						noModel++
					}
					if needsWithheld(o, r) {
						wantUnknown++
					} else {
						truthKnown.Add(truth)
					}
					var verdict slo.Result
					for _, j := range set.Judge(r) {
						if j.Objective == o.Name {
							verdict = j.Result
						}
					}
					if verdict == "" {
						t.Fatalf("%s: %s (model %q, truth %q) not judged", o.Name, r.RequestID, r.Model, tr.Model)
					}
					got.Add(verdict)
					if verdict != slo.Unknown && (verdict != truth || !o.Applies(tr.Model)) {
						wrong++
						t.Errorf("%s: %s judged %s, truth %s", o.Name, r.RequestID, verdict, truth)
					}
				}
				if got.Unknown != wantUnknown {
					t.Errorf("%s: %d unknown, want %d (requests with a needed value withheld)", o.Name, got.Unknown, wantUnknown)
				}
				if got.Met != truthKnown.Met || got.Missed != truthKnown.Missed {
					t.Errorf("%s: met %d missed %d, truth over the exact requests met %d missed %d", o.Name, got.Met, got.Missed, truthKnown.Met, truthKnown.Missed)
				}
				if got.Total() == 0 || got.Known() == 0 {
					t.Errorf("%s: nothing judged (%+v)", o.Name, got)
				}
				att, _ := got.Attainment()
				tk, _ := truthKnown.Attainment()
				ta, _ := truthAll.Attainment()
				unk, _ := got.UnknownShare()
				t.Logf("| %-8s | %4.0f | %-10s | %4d | %6.2f%% | %6.2f%% | %6.2f%% | %5.2f%% | %d | %d |", run.name, run.inflight, o.Name,
					got.Total(), 100*att, 100*tk, 100*ta, 100*unk, noModel, wrong)
			}
		})
	}
}
