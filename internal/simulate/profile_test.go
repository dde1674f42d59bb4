package simulate

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// parseSink parses every snapshot as it comes, keeping nothing.
type parseSink struct {
	t           testing.TB
	files, bad  int
	lastSnap    []byte
	firstFailed error
}

func (p *parseSink) Snapshot(name string, body []byte) error {
	p.files++
	n, err := parser.ParseName(name)
	if err != nil {
		p.t.Fatalf("%s: %v", name, err)
	}
	if n.Stage == parser.Info {
		return nil
	}
	if _, err := parser.Scan(body); err != nil {
		p.bad++
		if p.firstFailed == nil {
			p.firstFailed = err
		}
	}
	p.lastSnap = append(p.lastSnap[:0], body...)
	return nil
}

// TestProfilesRun runs every profile, pairs and capture, and checks that
// the scrapes parse (only a lazy server's scrapes before its first
// observation may have nothing to read) and every request has its truth.
func TestProfilesRun(t *testing.T) {
	for _, p := range Profiles() {
		for _, capture := range []bool{false, true} {
			cfg := Config{Seed: 9, Requests: 40, MeanInFlight: 8, Models: []string{"a", "b"}, Engines: 2,
				AfterDelay: 5 * time.Millisecond, AfterJitter: 5 * time.Millisecond}
			if capture {
				cfg.Capture, cfg.FirstSnapshots, cfg.TimelineInterval, cfg.NonStreaming = true, true, 250*time.Millisecond, 0.3
			}
			if err := p.Apply(&cfg); err != nil {
				t.Fatal(err)
			}
			sink := &parseSink{t: t}
			truths, err := Run(cfg, sink)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if len(truths) != cfg.Requests {
				t.Fatalf("%s: %d truths", p, len(truths))
			}
			if sink.bad > 0 && !cfg.Server.Lazy {
				t.Errorf("%s capture=%v: %d of %d snapshots do not parse: %v", p, capture, sink.bad, sink.files, sink.firstFailed)
			}
			if _, err := parser.Scan(sink.lastSnap); err != nil {
				t.Errorf("%s capture=%v: the last snapshot does not parse: %v", p, capture, err)
			}
		}
	}
}

func runProfile(t *testing.T, p Profile, cfg Config) ([]File, []Truth) {
	t.Helper()
	if err := p.Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	var sink MemSink
	truths, err := Run(cfg, &sink)
	if err != nil {
		t.Fatal(err)
	}
	return sink.Files(), truths
}

// TestStepsObserveTogether: with step batching, the requests that finish
// in one engine step are observed at one moment and share the step's
// iteration timestamp (arrival + e2e); at 64 in flight many finishes share
// their step with another, as issue 12 measured on a real engine loop.
func TestStepsObserveTogether(t *testing.T) {
	_, truths := runProfile(t, ProfileVLLMSteps, Config{Seed: 4, Requests: 2000, MeanInFlight: 64, MaxRunning: 128})
	byMoment := map[time.Time][]Truth{}
	for _, tr := range truths {
		byMoment[tr.Finish] = append(byMoment[tr.Finish], tr)
		if tr.Inference < tr.Prefill || tr.E2E < tr.Queue+tr.Prefill || tr.TTFT > tr.E2E || tr.FirstToken.After(tr.Finish) {
			t.Errorf("%s: values out of order: %+v", tr.RequestID, tr)
		}
		if (tr.Decode == 0) != (tr.GenerationTokens == 1) {
			t.Errorf("%s: decode %v with %d tokens", tr.RequestID, tr.Decode, tr.GenerationTokens)
		}
	}
	shared := 0
	for _, g := range byMoment {
		if len(g) < 2 {
			continue
		}
		shared += len(g)
		it := g[0].Arrival.Add(time.Duration(g[0].E2E * 1e9))
		for _, tr := range g[1:] {
			if d := tr.Arrival.Add(time.Duration(tr.E2E * 1e9)).Sub(it); d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("%s and %s observed together, iteration timestamps %v apart", g[0].RequestID, tr.RequestID, d)
			}
		}
	}
	t.Logf("%d of %d finishes share their step, measured in flight %.1f", shared, len(truths), MeasuredInFlight(truths))
	if shared*100 < len(truths)*20 {
		t.Errorf("only %d of %d finishes share a step at 64 in flight", shared, len(truths))
	}
}

// TestProfileSemantics checks each profile's truth and scrapes against
// what the profile says the server does.
func TestProfileSemantics(t *testing.T) {
	base := Config{Seed: 21, Requests: 200, MeanInFlight: 4, Models: []string{"a"}, Engines: 1,
		AfterDelay: 5 * time.Millisecond, AfterJitter: 5 * time.Millisecond}
	t.Run("emulator", func(t *testing.T) {
		cfg := base
		cfg.MeanInFlight, cfg.MaxRunning = 16, 4
		files, truths := runProfile(t, ProfileEmulator, cfg)
		first, err := parser.Scan(files[0].Body)
		if err == nil && len(first.Series) > 0 {
			t.Errorf("first scrape has per-request series %v before any observation", first.Series)
		}
		waited := 0
		for _, tr := range truths {
			if tr.Observed(parser.Queue) {
				waited++
			}
			if tr.Prefill <= tr.TTFT || tr.Prefill > tr.TTFT+0.001 {
				t.Errorf("%s: prefill %v not just above TTFT %v", tr.RequestID, tr.Prefill, tr.TTFT)
			}
			if tr.TTFT >= tr.FirstToken.Sub(tr.Arrival).Seconds() {
				t.Errorf("%s: TTFT %v counts the wait", tr.RequestID, tr.TTFT)
			}
		}
		if waited == 0 || waited == len(truths) {
			t.Errorf("%d of %d requests have a queue observation; want some", waited, len(truths))
		}
		last := histograms(t, files[len(files)-1].Body)
		qc := last[seriesKey{"vllm:request_queue_time_seconds", "engine=0,model_name=a"}].count
		ec := last[seriesKey{"vllm:e2e_request_latency_seconds", "engine=0,model_name=a"}].count
		if qc != uint64(waited) || ec != uint64(len(truths)) {
			t.Errorf("queue count %d (want %d), e2e count %d (want %d)", qc, waited, ec, len(truths))
		}
	})
	t.Run("sglang", func(t *testing.T) {
		files, truths := runProfile(t, ProfileSGLang, base)
		last := files[len(files)-1].Body
		fams := parseScrape(t, last)
		checkHistograms(t, fams)
		for name := range fams {
			if !strings.HasPrefix(name, "sglang:") {
				t.Errorf("family %s in an SGLang scrape", name)
			}
		}
		snap, err := parser.Scan(last)
		if err != nil {
			t.Fatal(err)
		}
		got := map[parser.Metric]bool{}
		for _, s := range snap.Series {
			got[s.Metric] = true
		}
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			if got[m] != truths[0].Observed(m) {
				t.Errorf("%s: in the scrape %v, observed in the truth %v", m.Name(), got[m], truths[0].Observed(m))
			}
		}
	})
	t.Run("late", func(t *testing.T) {
		_, truths := runProfile(t, ProfileLate, base)
		after := 0
		for _, tr := range truths {
			if tr.Finish.After(tr.AfterScrape) {
				after++
			}
			if d := tr.Finish.Sub(tr.Arrival).Seconds() - tr.E2E; d < 0 || d > 0.2 {
				t.Errorf("%s: observed %v s after the e2e value ends", tr.RequestID, d)
			}
		}
		if after == 0 {
			t.Error("no after taken before a late observation")
		}
	})
	for _, tc := range []struct {
		p    Profile
		want float64
	}{{ProfileEarly5, 0.05}, {ProfileEarly30, 0.3}} {
		t.Run(string(tc.p), func(t *testing.T) {
			cfg := base
			cfg.Requests = 1000
			_, truths := runProfile(t, tc.p, cfg)
			early := 0
			for _, tr := range truths {
				if tr.Finish.After(tr.AfterScrape) {
					early++
				}
			}
			if got := float64(early) / float64(len(truths)); math.Abs(got-tc.want) > 0.03+tc.want/5 {
				t.Errorf("%d of %d afters before the finish, want about %.0f%%", early, len(truths), 100*tc.want)
			}
		})
	}
	t.Run("drops", func(t *testing.T) {
		cfg := base
		cfg.Requests = 1000
		_, truths := runProfile(t, ProfileDrops, cfg)
		dropped := 0
		for _, tr := range truths {
			if len(tr.Missing) > 1 {
				t.Errorf("%s: %d observations dropped", tr.RequestID, len(tr.Missing))
			}
			dropped += len(tr.Missing)
		}
		if dropped < 15 || dropped > 50 {
			t.Errorf("%d of %d requests lost an observation, want about 3 %%", dropped, len(truths))
		}
	})
	t.Run("multi-api", func(t *testing.T) {
		files, truths := runProfile(t, ProfileMultiAPI, base)
		last := files[len(files)-1].Body
		if bytes.Contains(last, []byte("_created")) || bytes.Contains(last, []byte("process_start_time_seconds")) {
			t.Error("multiprocess output with _created or process families")
		}
		checkHistograms(t, parseScrape(t, last))
		// The scrapes are not atomic, but nothing is lost: at the end
		// every observation is there.
		h := histograms(t, last)
		if c := h[seriesKey{"vllm:e2e_request_latency_seconds", "engine=0,model_name=a"}].count; c != uint64(len(truths)) {
			t.Errorf("e2e count %d for %d requests", c, len(truths))
		}
	})
}

// TestStepsLargeBatchAnswersFirst: above 128 outputs in a step, vLLM's
// output handler yields between slices, so a request in an earlier slice
// can have its answer, and an after taken at once, before the step's
// statistics are recorded; at 128 outputs or fewer never.
func TestStepsLargeBatchAnswersFirst(t *testing.T) {
	for _, tc := range []struct {
		slots int
		early bool
	}{{128, false}, {256, true}} {
		_, truths := runProfile(t, ProfileVLLMSteps, Config{Seed: 8, Requests: 1500, MeanInFlight: 250, MaxRunning: tc.slots})
		early := 0
		for _, tr := range truths {
			if tr.AfterScrape.Before(tr.Finish) {
				early++
			}
		}
		t.Logf("%d slots: %d of %d afters before the finish was recorded", tc.slots, early, len(truths))
		if (early > 0) != tc.early {
			t.Errorf("%d slots: %d early afters", tc.slots, early)
		}
	}
}
