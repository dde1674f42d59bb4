package capture

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
	"github.com/delta-exporter/delta-exporter/parser"
)

// splitStartedLine checks that a snapshot file starts with the
// scrape_started line and returns its time and the rest of the file.
func splitStartedLine(t *testing.T, name string, b []byte) (time.Time, []byte) {
	t.Helper()
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	stamp, found := bytes.CutPrefix(line, []byte(parser.ScrapeStartedPrefix))
	if !ok || !found {
		t.Fatalf("%s does not start with %q: %.80q", name, parser.ScrapeStartedPrefix, b)
	}
	started, err := time.Parse(time.RFC3339Nano, string(stamp))
	if err != nil || started.Location() != time.UTC || started.Format(time.RFC3339Nano) != string(stamp) {
		t.Fatalf("%s: scrape_started=%s is not RFC 3339 UTC with nanoseconds (%v)", name, stamp, err)
	}
	return started, rest
}

// TestScrapeStartedLine: a scrape's content is the scrape_started line
// with its start time, then the upstream body unchanged, with and without
// a Content-Length from the upstream.
func TestScrapeStartedLine(t *testing.T) {
	sim := simulate.NewServer(simulate.ServerConfig{Padding: true})
	sim.ObserveFinish(simulate.DefaultModel, 0, simulate.Finish{E2E: 1.25, PromptTokens: 3, GenerationTokens: 2})
	body := sim.AppendText(nil)
	for _, withLength := range []bool{false, true} {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if withLength {
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			}
			_, _ = w.Write(body)
		}))
		sc := &scraper{url: up.URL, client: up.Client(), timeout: 10 * time.Second, maxBytes: 1 << 20}
		asked := time.Now()
		s := sc.next()
		<-s.done
		up.Close()
		if !s.ok() {
			t.Fatalf("content-length %v: scrape failed: %v", withLength, s.err)
		}
		started, rest := splitStartedLine(t, "scrape", s.data)
		if !started.Equal(s.started) || s.started.Before(asked) {
			t.Errorf("content-length %v: line says %v, the scrape started at %v", withLength, started, s.started)
		}
		if !bytes.Equal(rest, body) || !bytes.Equal(s.body, body) {
			t.Errorf("content-length %v: the content after the line is not the upstream body", withLength)
		}
		if s.e2eCount != 1 || !s.hasE2E {
			t.Errorf("content-length %v: e2e count %v %v", withLength, s.e2eCount, s.hasE2E)
		}
	}
}

// servedScrape is one /metrics answer of the upstream, as sent.
type servedScrape struct {
	arrived time.Time // when the upstream got the GET
	body    []byte
}

// TestSnapshotFilesStartWithScrapeStart: every snapshot file (before,
// first, after, timeline) is the scrape_started line, then byte for byte
// one body the upstream sent; the line's time is the scrape's start, as
// the info records it, before the upstream got the GET, and before the
// name's time.
func TestSnapshotFilesStartWithScrapeStart(t *testing.T) {
	fake := fakeupstream.New(fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan {
		return fakeupstream.Plan{Prefill: 2 * time.Millisecond, Decode: 40 * time.Millisecond, PromptTokens: 5, GenerationTokens: 5}
	}})
	var mu sync.Mutex
	var served []servedScrape
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			fake.ServeHTTP(w, r)
			return
		}
		arrived := time.Now()
		rec := httptest.NewRecorder()
		fake.ServeHTTP(rec, r)
		mu.Lock()
		// A comment line makes every body distinct.
		b := append(rec.Body.Bytes(), "# served "+strconv.Itoa(len(served))+"\n"...)
		served = append(served, servedScrape{arrived, b})
		mu.Unlock()
		_, _ = w.Write(b)
	}))
	h := startProxy(t, up, func(c *Config) {
		// Without a budget: under load a slow /metrics spent it and the
		// timeline's scrapes were skipped (TestTimelineWhileInFlight).
		c.TimelineInterval, c.ScrapeBudget = 5*time.Millisecond, -1
	})
	h.waitReady()
	for _, stream := range []bool{true, false, true} {
		if r := h.chat(stream, 5, nil); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	h.p.Wait()
	// A timeline scrape started while the last request ran can be
	// written after Wait: stop the loop before the directory is read.
	h.stop()
	<-h.runDone

	// The scrape start of each request file, as the info records it.
	infoStart := map[string]time.Time{}
	d := h.files()
	for id, stages := range d.byID {
		info := h.info(d.one(t, id, parser.Info))
		for _, ref := range []*SnapshotRef{info.Before, info.First, info.After} {
			if ref != nil {
				infoStart[ref.File] = ref.ScrapeStartedAt
			}
		}
		if len(stages[parser.Before]) != 1 || len(stages[parser.After]) != 1 {
			t.Errorf("%s: files %v", id, stages)
		}
	}
	if len(d.byID) != 3 || len(d.timeline) == 0 {
		t.Fatalf("%d requests, %d timeline files", len(d.byID), len(d.timeline))
	}
	mu.Lock()
	defer mu.Unlock()
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".txt") {
			continue
		}
		n, err := parser.ParseName(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(h.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		started, rest := splitStartedLine(t, e.Name(), b)
		var match *servedScrape
		for i := range served {
			if bytes.Equal(served[i].body, rest) {
				match = &served[i]
				break
			}
		}
		if match == nil {
			t.Errorf("%s: the content after the first line is not a body the upstream sent", e.Name())
			continue
		}
		if started.After(match.arrived) || started.After(n.Time) {
			t.Errorf("%s: scrape_started %v after the upstream got the GET (%v) or the name's time (%v)",
				e.Name(), started, match.arrived, n.Time)
		}
		if want, ok := infoStart[e.Name()]; ok && !started.Equal(want) {
			t.Errorf("%s: scrape_started %v, the info says %v", e.Name(), started, want)
		} else if !ok && n.Stage != parser.Timeline {
			t.Errorf("%s: not named by any info", e.Name())
		}
		checked++
	}
	if checked != len(infoStart)+len(d.timeline) {
		t.Errorf("checked %d files, want %d", checked, len(infoStart)+len(d.timeline))
	}
}
