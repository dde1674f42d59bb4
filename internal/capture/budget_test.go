package capture

import (
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
)

// TestBudgetArithmetic: the bucket fills at share per second up to its
// burst; a scrape is charged the shortest duration of the recent ones, so
// one slow scrape (a wait in the upstream's loop) is not charged whole,
// and a slower upstream (every recent scrape slow) is.
func TestBudgetArithmetic(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := newBudget(0.02) // 20 ms of credit to start with, 20 ms per second
	if d := b.wait(t0); d != 0 {
		t.Fatalf("fresh budget waits %v", d)
	}
	if c := b.spend(t0, 30*time.Millisecond); c != 30*time.Millisecond {
		t.Fatalf("first scrape charged %v", c)
	}
	// 20 - 30 = -10 ms of credit: 0.5 s until it is paid back.
	if d := b.wait(t0.Add(30 * time.Millisecond)); d < 470*time.Millisecond || d > 471*time.Millisecond {
		t.Fatalf("wait %v, want 470 ms", d)
	}
	at := t0.Add(time.Second) // +20 ms: 10 ms of credit
	if c := b.spend(at, 5*time.Millisecond); c != 5*time.Millisecond {
		t.Fatalf("charged %v", c)
	}
	if c := b.spend(at, 80*time.Millisecond); c != 5*time.Millisecond {
		t.Fatalf("a slow scrape after a fast one charged %v, want the fast one's 5 ms", c)
	}
	// Credit is 0 now: no wait, then the burst caps what an idle minute saves.
	if d := b.wait(at); d != 0 {
		t.Fatalf("wait %v at zero credit", d)
	}
	if d := b.wait(at.Add(time.Minute)); d != 0 || b.credit != b.burst {
		t.Fatalf("after a minute: wait %v, credit %v, burst %v", d, b.credit, b.burst)
	}
	for range costWindow { // the upstream slowed: every scrape takes 40 ms
		at = at.Add(time.Minute)
		b.spend(at, 40*time.Millisecond)
	}
	if c := b.spend(at, 40*time.Millisecond); c != 40*time.Millisecond {
		t.Fatalf("a slowed upstream's scrape charged %v, want 40 ms", c)
	}
	unbounded := newBudget(0)
	unbounded.spend(t0, time.Second)
	if d := unbounded.wait(t0); d != 0 {
		t.Fatalf("no budget, yet a wait of %v", d)
	}
	slow := newBudget(0.02)
	slow.spend(t0, time.Second) // a timed-out scrape: 49 s of debt
	if d := slow.wait(t0.Add(time.Second)); d != maxBudgetWait {
		t.Fatalf("wait %v after a 1 s scrape, want the cap %v", d, maxBudgetWait)
	}
}

// TestScrapeBudgetBoundsUpstreamTime: with /metrics answering in 20 ms
// and a budget of 5 %, 32 requests that each want a first and an after
// scrape get them, shared, at about 2.5 scrapes per second; timeline
// scrapes are skipped rather than queued; the metrics say so; nothing is
// lost (every request has its files, confirmed).
func TestScrapeBudgetBoundsUpstreamTime(t *testing.T) {
	if testing.Short() {
		t.Skip("3 s of load")
	}
	fake := fakeupstream.New(fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan {
		return fakeupstream.Plan{Prefill: 10 * time.Millisecond, Decode: 200 * time.Millisecond, GenerationTokens: 5}
	}})
	fake.SetMetricsFault(fakeupstream.MetricsFault{Delay: 20 * time.Millisecond})
	h := startProxy(t, httptest.NewServer(fake), func(c *Config) {
		c.ScrapeBudget, c.TimelineInterval, c.AfterTimeout = 0.05, 20*time.Millisecond, 5*time.Second
	})
	h.fake = fake
	h.waitReady()
	scrapes0 := h.fake.Scrapes()
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 60 * time.Millisecond)
			h.chat(i%2 == 0, 5, nil)
		})
	}
	wg.Wait()
	h.p.Wait()
	elapsed := time.Since(t0).Seconds()
	n := h.fake.Scrapes() - scrapes0
	// 5 % of the window at >= 20 ms per scrape, plus the 50 ms burst.
	if limit := (0.05*elapsed + 0.05) / 0.020; float64(n) > limit+1 {
		t.Errorf("%d scrapes in %.2f s, budget allows %.1f", n, elapsed, limit)
	}
	if got := h.counter("delta_exporter_capture_scrapes_total"); got < float64(n) {
		t.Errorf("scrapes_total %v, upstream saw %d since the load began", got, n)
	}
	if h.counter("delta_exporter_capture_scrapes_skipped_total", "stage", "timeline") == 0 {
		t.Error("no timeline scrape skipped for the budget")
	}
	if h.histogramCount("delta_exporter_capture_scrape_budget_wait_seconds") == 0 {
		t.Error("no scrape waited for the budget")
	}
	if cost := h.counter("delta_exporter_capture_upstream_scrape_seconds_total"); cost < 0.020*float64(n) {
		t.Errorf("upstream_scrape_seconds_total %v for %d scrapes of >= 20 ms", cost, n)
	}
	if h.counter("delta_exporter_capture_scrape_budget_ratio") != 0.05 {
		t.Error("budget gauge")
	}
	d := h.files()
	for _, o := range h.fake.Observations() {
		id := SanitizeID(o.ID)
		if len(d.byID[id]["after"]) != 1 || len(d.byID[id]["before"]) != 1 {
			t.Errorf("%s: files %v", id, d.byID[id])
		}
	}
	if u := h.counter("delta_exporter_capture_after_unobserved_total"); u != 0 {
		t.Errorf("%v afters unconfirmed", u)
	}
	t.Logf("%d scrapes in %.2f s for 32 requests", n, elapsed)
}

// TestZeroBudgetIsOff: a zero ScrapeBudget is no bound, as 0 is in
// --upstream.scrape-budget (whose default is DefaultScrapeBudget).
func TestZeroBudgetIsOff(t *testing.T) {
	for _, tc := range []struct {
		budget float64
		want   float64 // delta_exporter_capture_scrape_budget_ratio; 0: no bound
	}{{0, 0}, {DefaultScrapeBudget, 0.02}, {0.05, 0.05}} {
		dir := t.TempDir()
		p, err := New(Config{Upstream: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, Dir: dir, ScrapeBudget: tc.budget})
		if err != nil {
			t.Fatal(err)
		}
		if got := promtestutil.ToFloat64(p.m.budget); got != tc.want {
			t.Errorf("ScrapeBudget %v: budget gauge %v, want %v", tc.budget, got, tc.want)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
