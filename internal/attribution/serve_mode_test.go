package attribution_test

import (
	"testing"
	"testing/fstest"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestServeModeProfilesNeverWrong is TestAccuracyProfiles as `serve`
// meets the files: one at a time in the order they were written, each
// followed by a decision, so that components are decided as soon as no
// open request overlaps them, with only the evidence seen so far. An
// assumption a server breaks must be caught before it makes any value
// wrong, not only once the whole directory is known.
func TestServeModeProfilesNeverWrong(t *testing.T) {
	n := accuracyRequests(150, 40)
	levels := []float64{1.5, 4, 16}
	if testing.Short() {
		levels = []float64{4}
	}
	for _, p := range append(simulate.Profiles(), "issue16") {
		lv := levels
		if p == "issue16" {
			lv = []float64{0} // closed loop: 16 clients
		}
		for _, inflight := range lv {
			for _, nonStreaming := range []float64{-1, 0.3} {
				var sink simulate.MemSink
				var cfg simulate.Config
				if p == "issue16" {
					// The run of issue 16: llm-d-inference-sim, 16
					// closed-loop clients, 8 slots, half streaming.
					cfg = runConfig(n, 0, nonStreaming, simulate.ProfileEmulator, 42)
					cfg.Clients, cfg.Engines, cfg.Models, cfg.MaxRunning = 16, 1, []string{"llama-8b"}, 8
					if nonStreaming >= 0 {
						cfg.NonStreaming = 0.5
					}
				} else {
					cfg = runConfig(n, inflight, nonStreaming, p, 42)
				}
				truths, err := simulate.Run(cfg, &sink)
				if err != nil {
					t.Fatal(err)
				}
				// Pairs with --attribution.trust-afters, as measure does.
				rec := serveFiles(sink.Files(), !cfg.Capture, 2*time.Second, nil)
				s := score(t, rec.Results, truths)
				if s.wrong > 0 {
					t.Errorf("%s at %v in flight (non-streaming %v): %d wrong %v", p, inflight, nonStreaming, s.wrong, s.wrongBy)
				}
				t.Logf("%-10s %5.1f %5.1f: %3d of %d exact", p, inflight, nonStreaming, s.exactRequests, s.requests)
			}
		}
	}
}

// serveFiles ingests files as serve meets them: one at a time in the
// order they were written, each followed by a decision, with
// --attribution.max-delay at maxDelay and --attribution.trust-afters as
// trust says. before, when not nil, is called before each file is read,
// with the time in its name.
func serveFiles(files []simulate.File, trust bool, maxDelay time.Duration, before func(time.Time, *ingest.Ingester)) *record.Recorder {
	fsys := fstest.MapFS{}
	rec := record.New()
	var now time.Time
	in := ingest.New(ingest.Config{FS: fsys, MaxObserveDelay: ingest.DefaultMaxObserveDelay, TrustAfters: trust, Results: rec.Publish, MaxDelay: maxDelay, Now: func() time.Time { return now }})
	for _, f := range files {
		fsys[f.Name] = &fstest.MapFile{Data: f.Body}
		if nm, err := parser.ParseName(f.Name); err == nil {
			now = nm.Time
		}
		if before != nil {
			before(now, in)
		}
		in.Ingest(f.Name)
		in.Decide()
	}
	in.Finish()
	return rec
}
