package simulate

import (
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// TestProfilesRun runs every profile, pairs and capture, and checks that
// each scrape parses, every request has its truth, and the truth says
// what the profile does.
func TestProfilesRun(t *testing.T) {
	for _, p := range Profiles() {
		for _, capture := range []bool{false, true} {
			cfg := Config{Seed: 9, Requests: 120, MeanInFlight: 8, Models: []string{"a", "b"}, Engines: 2,
				AfterDelay: 5 * time.Millisecond, AfterJitter: 5 * time.Millisecond}
			if capture {
				cfg.Capture, cfg.FirstSnapshots, cfg.TimelineInterval, cfg.NonStreaming = true, true, 100*time.Millisecond, 0.3
			}
			if err := p.Apply(&cfg); err != nil {
				t.Fatal(err)
			}
			var sink MemSink
			truths, err := Run(cfg, &sink)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if len(truths) != cfg.Requests {
				t.Fatalf("%s: %d truths", p, len(truths))
			}
			rejected := 0
			for _, f := range sink.Files() {
				n, err := parser.ParseName(f.Name)
				if err != nil {
					t.Fatalf("%s: %s: %v", p, f.Name, err)
				}
				if n.Stage == parser.Info {
					continue
				}
				if _, err := parser.Scan(f.Body); err != nil {
					rejected++
				}
			}
			missing := map[string]int{}
			for _, tr := range truths {
				for _, m := range tr.Missing {
					missing[m]++
				}
			}
			t.Logf("%-10s capture=%v: %d files, %d unparsable, missing %v, in flight %.1f",
				p, capture, len(sink.Files()), rejected, missing, MeasuredInFlight(truths))
		}
	}
}
