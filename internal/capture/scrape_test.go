package capture

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
)

func TestCheckExpositionAcceptsServerOutput(t *testing.T) {
	for _, style := range []simulate.Style{simulate.V1, simulate.V1NoEngine, simulate.V0Multiproc} {
		sim := simulate.NewServer(simulate.ServerConfig{
			Style: style, Padding: true, Engines: 2,
			Models: []string{"m/a", "/models/with \"quotes\" and } brace/"},
		})
		for i := range 3 {
			sim.ObserveFinish("m/a", i%2, simulate.Finish{E2E: 1.5, PromptTokens: 3, GenerationTokens: 2})
		}
		e2e, has, err := checkExposition(sim.AppendText(nil))
		if err != nil || !has || e2e != 3 {
			t.Errorf("%v: e2e %v has %v err %v", style, e2e, has, err)
		}
	}
	sg := "# TYPE sglang:e2e_request_latency_seconds histogram\n" +
		"sglang:e2e_request_latency_seconds_count{model_name=\"x\"} 7\n" +
		"sglang:e2e_request_latency_seconds_sum{model_name=\"x\"} 1.5e+01 1712345678000\n"
	if e2e, has, err := checkExposition([]byte(sg)); err != nil || !has || e2e != 7 {
		t.Errorf("sglang: %v %v %v", e2e, has, err)
	}
	if _, has, err := checkExposition([]byte("up 1\nfoo{a=\"b\\\"}\"} NaN\nbar -Inf\n")); err != nil || has {
		t.Errorf("no e2e family: has %v err %v", has, err)
	}
}

func TestCheckExpositionRejects(t *testing.T) {
	good := string(simulate.NewServer(simulate.ServerConfig{}).AppendText(nil))
	for name, body := range map[string]string{
		"empty":          "",
		"blank":          "\n\n",
		"comments only":  "# HELP x y\n# TYPE x counter\n",
		"curl error":     "curl: (7) Failed to connect to localhost port 8000 after 0 ms: Couldn't connect to server\n",
		"curl timeout":   "curl: (28) Operation timed out after 10001 milliseconds with 0 bytes received\n",
		"html":           "<html><body>502 Bad Gateway</body></html>\n",
		"json":           "{\"detail\":\"Not Found\"}\n",
		"cut mid-line":   good[:len(good)/2],
		"cut at newline": good[:strings.LastIndexByte(good[:len(good)/2], '\n')] + "\nvllm:num_requests_running{",
		"no value":       "vllm:num_requests_running\n",
		"bad value":      "vllm:num_requests_running 12abc\n",
		"bad timestamp":  "up 1 12.5\n",
		"extra field":    "up 1 2 3\n",
		"open labels":    "up{a=\"b\" 1\n",
		"no space":       "up{a=\"b\"}1\n",
	} {
		if _, _, err := checkExposition([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestScraperShares: while a scrape runs, every caller gets the one queued
// scrape, which starts after they asked; at most one scrape is in flight.
func TestScraperShares(t *testing.T) {
	gate := make(chan struct{})
	entered := make(chan struct{}, 10)
	var inFlight, maxInFlight, calls atomic.Int32
	sim := simulate.NewServer(simulate.ServerConfig{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		if n > maxInFlight.Load() {
			maxInFlight.Store(n)
		}
		if calls.Add(1) == 1 {
			entered <- struct{}{}
			<-gate
		}
		_, _ = sim.WriteTo(w)
	}))
	defer up.Close()
	sc := &scraper{url: up.URL, client: up.Client(), timeout: 10 * time.Second, maxBytes: 1 << 20}
	first := sc.next()
	<-entered // the first scrape is at the upstream now
	asked := time.Now()
	var wg sync.WaitGroup
	got := make([]*scrape, 20)
	for i := range got {
		wg.Go(func() { got[i] = sc.next() })
	}
	wg.Wait()
	close(gate)
	<-first.done
	for i, s := range got {
		<-s.done
		if s != got[0] || s == first {
			t.Fatalf("caller %d got another scrape", i)
		}
	}
	if !got[0].ok() || got[0].started.Before(asked) {
		t.Errorf("shared scrape: ok %v, started %v, asked %v", got[0].ok(), got[0].started, asked)
	}
	if calls.Load() != 2 || maxInFlight.Load() != 1 {
		t.Errorf("%d scrapes, %d at once; want 2, 1", calls.Load(), maxInFlight.Load())
	}
	if sc.latest.Load() != got[0] {
		t.Error("latest is not the last successful scrape")
	}
}

func TestScrapeFailures(t *testing.T) {
	for name, tc := range map[string]struct {
		h      http.HandlerFunc
		reason string
	}{
		"status": {func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }, reasonStatus},
		"empty":  {func(http.ResponseWriter, *http.Request) {}, reasonEmpty},
		"text":   {func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("upstream connect error\n")) }, reasonInvalid},
		"large": {func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("up 1\n", 1000)))
		}, reasonTooLarge},
		"slow": {func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, reasonTimeout},
	} {
		t.Run(name, func(t *testing.T) {
			up := httptest.NewServer(tc.h)
			defer up.Close()
			sc := &scraper{url: up.URL, client: up.Client(), timeout: 50 * time.Millisecond, maxBytes: 1000}
			s := sc.next()
			<-s.done
			if s.failure != tc.reason || s.body != nil || sc.latest.Load() != nil {
				t.Errorf("failure %q (%v), want %q", s.failure, s.err, tc.reason)
			}
		})
	}
}
