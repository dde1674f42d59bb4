package attribution_test

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/delta-exporter/delta-exporter/attribution"
	"github.com/delta-exporter/delta-exporter/ingest"
	"github.com/delta-exporter/delta-exporter/parser"
	"github.com/delta-exporter/delta-exporter/simulate"
)

// The accuracy benchmark: a ground-truth load simulation at several mean
// concurrencies, attributed by the real ingest pipeline, every published
// value compared with the truth. It fails on a single wrong value. The
// table it logs is the one quoted in the README:
//
//	ACCURACY_REQUESTS=1000 go test -run TestAccuracy -v ./attribution
//
// Rows: "pairs" is a directory of before/after pairs only, the after
// taken 0-20 ms after the request finished (as a log-hook tool does at
// best); "capture" adds what `delta-exporter capture` writes: a first
// snapshot right after the first response byte, timeline snapshots every
// 50 ms, scrape times and the info sidecars (proxy times, token usage),
// all requests streaming; "capture½" is the same with half of the
// requests not streaming (no first snapshot); "naive" is the per-pair
// delta the original tool prints (after minus before of the first series,
// no count check). In the capture rows the server observes each value up
// to 3 ms after its timestamp, as vLLM's output handler does.

type collect struct{ results []attribution.Result }

func (c *collect) Publish(r attribution.Result)                 { c.results = append(c.results, r) }
func (c *collect) SnapshotRead()                                {}
func (c *collect) SnapshotRejected(_, reason string, err error) { panic(reason + ": " + err.Error()) }
func (c *collect) FileIgnored(string)                           {}
func (c *collect) SetPending(string, int)                       {}

// close enough: 1 µs for seconds, exact for tokens.
func matches(m parser.Metric, got, want float64) bool {
	if m.IsTokens() {
		return got == want
	}
	return math.Abs(got-want) <= 1e-6
}

type tally struct {
	requests, exactRequests int
	values, exact, withheld int
	wrong                   int
	ttftExact, finishExact  int
}

func (t tally) row(name string, inflight float64) string {
	pct := func(a, b int) string { return strconv.FormatFloat(100*float64(a)/float64(max(b, 1)), 'f', 1, 64) + "%" }
	return fmt.Sprintf("| %-8s | %5.1f | %7s | %7s | %7s | %7s | %7s | %d |", name, inflight,
		pct(t.exactRequests, t.requests), pct(t.ttftExact, t.requests), pct(t.finishExact, t.requests),
		pct(t.exact, t.values), pct(t.withheld, t.values), t.wrong)
}

// simulateRun runs the simulation; nonStreaming < 0 means pairs only,
// else the capture layout with that fraction of requests not streaming.
func simulateRun(t *testing.T, n int, inflight, nonStreaming float64) ([]simulate.File, []simulate.Truth) {
	t.Helper()
	cfg := simulate.Config{Seed: 42, Requests: n, MeanInFlight: inflight,
		Models: []string{"llama-8b", "qwen-32b"}, Engines: 2,
		AfterJitter: 10 * time.Millisecond, AfterDelay: 10 * time.Millisecond}
	if nonStreaming >= 0 {
		cfg.FirstSnapshots = true
		cfg.TimelineInterval = 50 * time.Millisecond
		cfg.Capture, cfg.NonStreaming = true, nonStreaming
		cfg.ObserveDelay = 3 * time.Millisecond
	}
	var sink simulate.MemSink
	truths, err := simulate.Run(cfg, &sink)
	if err != nil {
		t.Fatal(err)
	}
	return sink.Files(), truths
}

func attribute(t *testing.T, files []simulate.File) []attribution.Result {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, f := range files {
		fsys[f.Name] = &fstest.MapFile{Data: f.Body}
	}
	c := &collect{}
	in := ingest.New(ingest.Config{FS: fsys, Publisher: c})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	return c.results
}

func score(t *testing.T, results []attribution.Result, truths []simulate.Truth) tally {
	byID := map[string]simulate.Truth{}
	for _, tr := range truths {
		byID[tr.RequestID] = tr
	}
	var s tally
	for _, r := range results {
		tr, ok := byID[r.RequestID]
		if !ok {
			continue // timeline snapshots have no request
		}
		s.requests++
		if r.Outcome == attribution.Exact {
			s.exactRequests++
		}
		if r.Model != "" && r.Model != tr.Model {
			s.wrong++
			t.Errorf("%s attributed to model %q, truth %q", r.RequestID, r.Model, tr.Model)
		}
		finish := true
		for m, v := range r.Values {
			s.values++
			switch {
			case v.Exact && !matches(parser.Metric(m), v.V, tr.Value(parser.Metric(m))):
				s.wrong++
				t.Errorf("%s %s = %v, truth %v", r.RequestID, parser.Metric(m).Name(), v.V, tr.Value(parser.Metric(m)))
			case v.Exact:
				s.exact++
			default:
				s.withheld++
			}
			if parser.Metric(m).Group() == parser.Finish && !v.Exact {
				finish = false
			}
		}
		if r.Values[parser.TTFT].Exact {
			s.ttftExact++
		}
		if finish {
			s.finishExact++
		}
	}
	return s
}

// naive scores the per-pair delta without a count check: after minus
// before, summed over the series of each family (the original tool even
// takes only the first series, which is worse with several models).
func naive(t *testing.T, files []simulate.File, truths []simulate.Truth) tally {
	type pair struct{ before, after *parser.Snapshot }
	pairs := map[string]*pair{}
	for _, f := range files {
		n, err := parser.ParseName(f.Name)
		if err != nil || (n.Stage != parser.Before && n.Stage != parser.After) {
			continue
		}
		s, err := parser.Scan(f.Body)
		if err != nil {
			t.Fatal(err)
		}
		p := pairs[n.RequestID]
		if p == nil {
			p = &pair{}
			pairs[n.RequestID] = p
		}
		if n.Stage == parser.Before {
			p.before = s
		} else {
			p.after = s
		}
	}
	first := func(s *parser.Snapshot, m parser.Metric) float64 {
		v := 0.0
		for _, se := range s.Series {
			if se.Metric == m {
				v += se.Sum
			}
		}
		return v
	}
	var s tally
	for _, tr := range truths {
		p := pairs[tr.RequestID]
		s.requests++
		all := true
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			s.values++
			v := first(p.after, m) - first(p.before, m)
			if matches(m, v, tr.Value(m)) {
				s.exact++
				if m == parser.TTFT {
					s.ttftExact++
				}
			} else {
				s.wrong++
				all = false
			}
		}
		if all {
			s.exactRequests++
			s.finishExact++
		}
	}
	return s
}

func TestAccuracy(t *testing.T) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("ACCURACY_REQUESTS")); err == nil && v > 0 {
		n = v
	}
	if testing.Short() {
		n = 100
	}
	var table []string
	table = append(table,
		"| method   | in flight | requests exact | TTFT exact | finish exact | values exact | values withheld | values wrong |",
		"|---|---|---|---|---|---|---|---|")
	for _, inflight := range []float64{0, 1.5, 4, 16} {
		// One run's files at a time: a capture run at 16 in flight holds
		// tens of thousands of timeline snapshots.
		files, truths := simulateRun(t, n, inflight, -1)
		pairs := score(t, attribute(t, files), truths)
		nv := naive(t, files, truths)
		if pairs.requests != len(truths) {
			t.Fatalf("in flight %v: %d results for %d requests", inflight, pairs.requests, len(truths))
		}
		files = nil
		cfiles, ctruths := simulateRun(t, n, inflight, 0)
		capture := score(t, attribute(t, cfiles), ctruths)
		cfiles, ctruths = simulateRun(t, n, inflight, 0.5)
		half := score(t, attribute(t, cfiles), ctruths)
		cfiles = nil
		table = append(table, pairs.row("pairs", inflight), capture.row("capture", inflight),
			half.row("capture½", inflight), nv.row("naive", inflight))
		if pairs.wrong != 0 || capture.wrong != 0 || half.wrong != 0 {
			t.Errorf("in flight %v: %d, %d and %d wrong values", inflight, pairs.wrong, capture.wrong, half.wrong)
		}
		// The target for capture-written directories.
		if inflight == 16 && (capture.exactRequests*100 < capture.requests*94 || half.exactRequests*100 < half.requests*90) {
			t.Errorf("capture at 16 in flight: %d and %d of %d exact", capture.exactRequests, half.exactRequests, capture.requests)
		}
		// Sequential requests are all exact; the naive delta agrees there.
		if inflight == 0 && (pairs.exactRequests != pairs.requests || nv.wrong != 0) {
			t.Errorf("sequential: %d of %d exact, naive wrong %d", pairs.exactRequests, pairs.requests, nv.wrong)
		}
		// The capture layout must resolve most requests even under load.
		if inflight == 4 && (capture.exactRequests*100 < capture.requests*98 || half.exactRequests*100 < half.requests*95) {
			t.Errorf("capture at 4 in flight: only %d of %d exact", capture.exactRequests, capture.requests)
		}
	}
	t.Logf("accuracy over %d requests per row (values wrong tolerance 1 µs, tokens exact):\n%s", n, strings.Join(table, "\n"))
}
