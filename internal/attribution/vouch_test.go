package attribution_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestMixedVouchedAndPlainPairs: a capture directory in which every third
// request's files look like another snapshot tool's pairs (no info
// sidecar, no first snapshot, no scrape-start lines), overlapping the
// requests capture vouches for. Without --attribution.trust-afters the
// plain pairs are kept out of the attribution: each of their values is
// withheld as unvouched, and the requests capture vouched for are decided
// around them, with nothing wrong against the truth. With the flag (true
// here: the simulator takes every after past the response's end) the
// plain pairs are attributed too, and still nothing is wrong.
func TestMixedVouchedAndPlainPairs(t *testing.T) {
	n := accuracyRequests(200, 60)
	for _, inflight := range []float64{4, 16} {
		cfg := runConfig(n, inflight, 0.3, simulate.ProfileVLLMSteps, 42)
		if testing.Short() {
			cfg.TimelineInterval = 250 * time.Millisecond
		}
		dir, truths := simulateDir(t, cfg)
		plain := map[string]bool{}
		for i, tr := range truths {
			if i%3 == 0 {
				plain[tr.RequestID] = true
			}
		}
		makePlain(t, dir, plain)
		for _, trust := range []bool{false, true} {
			rec := ingestWith(t, dir, trust)
			rec.NoRejections(t)
			s := score(t, rec.Results, truths)
			if s.wrong != 0 {
				t.Errorf("in flight %v, trust %v: %d wrong values %v", inflight, trust, s.wrong, s.wrongBy)
			}
			// Requests with an exact value: vouched for by capture, plain.
			var published [2]int
			for _, r := range rec.Results {
				i := 0
				if plain[r.RequestID] {
					i = 1
				}
				if r.Outcome == attribution.Exact || r.Outcome == attribution.Partial {
					published[i]++
				}
				for m, v := range r.Values {
					if i == 1 && !trust && v.Reason != attribution.ReasonUnvouched && v.Reason != attribution.ReasonAbsent {
						t.Errorf("in flight %v: plain pair %s %s %+v without the flag, want unvouched", inflight, r.RequestID, parser.Metric(m).Name(), v)
					}
				}
			}
			w := *rec.Assumptions[0].Status[attribution.AfterHolds].Windows
			if w.Capture != n-len(plain) || w.Flag+w.Unvouched != len(plain) || (w.Flag > 0) != trust {
				t.Errorf("in flight %v, trust %v: after windows %+v, want %d by capture and %d plain", inflight, trust, w, n-len(plain), len(plain))
			}
			if published[0] == 0 || (trust && published[1] == 0) {
				t.Errorf("in flight %v, trust %v: requests published %d vouched by capture, %d plain", inflight, trust, published[0], published[1])
			}
			t.Logf("in flight %v, trust %v: some value published for %d of %d requests capture vouched for, %d of %d plain pairs; A1 %s",
				inflight, trust, published[0], n-len(plain), published[1], len(plain), a1States(rec.Assumptions))
		}
	}
}

// makePlain turns the files of the requests in plain into another
// snapshot tool's: only the before and after, without capture's
// scrape-start line.
func makePlain(t *testing.T, dir string, plain map[string]bool) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		nm, err := parser.ParseName(e.Name())
		if err != nil || !plain[nm.RequestID] {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if nm.Stage != parser.Before && nm.Stage != parser.After {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if rest, ok := bytes.CutPrefix(data, []byte(parser.ScrapeStartedPrefix)); ok {
			data = rest[bytes.IndexByte(rest, '\n')+1:]
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
