package report

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/net/html"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/internal/testutil/browser"
	"github.com/delta-exporter/delta-exporter/parser"
)

func htmlObjectives(t *testing.T) *slo.Set {
	s, err := slo.Parse([]byte("objectives:\n  - {name: goodput, target: 0.9, thresholds: {ttft: 500ms, time_per_output_token: 35ms}}\n  - {name: e2e, target: 0.95, model_regex: 'qwen.*', thresholds: {e2e: 5s}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// busyReport is a simulated busy run (1,000 requests, 16 in flight on
// average, three models, one of them with a 200-character name), read by
// the real pipeline, plus a request with a hostile id and model name.
func busyReport(t *testing.T, n int) *Report {
	t.Helper()
	var sink simulate.MemSink
	if _, err := simulate.Run(simulate.Config{Seed: 3, Requests: n, MeanInFlight: 16, Models: []string{"llama-8b", "qwen-32b", testutil.LongModel},
		Engines: 2, AfterJitter: 10 * time.Millisecond, AfterDelay: 10 * time.Millisecond}, &sink); err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{}
	for _, f := range sink.Files() {
		fsys[f.Name] = &fstest.MapFile{Data: f.Body}
	}
	r, err := Run(context.Background(), Config{FS: fsys, TrustAfters: true, Objectives: htmlObjectives(t)})
	if err != nil {
		t.Fatal(err)
	}
	hostile := r.Requests[len(r.Requests)/2]
	hostile.RequestID, hostile.Model = testutil.HostileID, testutil.HostileModel
	r.Requests = append(r.Requests, hostile)
	r.Summary = summarize(r.Requests)
	r.SLO = nil
	r.sloSummary()
	return r
}

// TestHTMLReportInBrowser writes `report --format=html` for a busy run,
// loads the file in headless Chromium and checks the rendered page: one
// waterfall bar per request, placed and sized to scale on the run's time
// axis; a histogram per family whose bars are as tall as their counts;
// hostile ids and model names shown as text; a layout that holds.
func TestHTMLReportInBrowser(t *testing.T) {
	chromium := browser.Find(t) // first: in CI a missing browser fails even under -short
	if testing.Short() {
		t.Skip("a browser run takes seconds; run without -short")
	}
	r := busyReport(t, 1000)
	var page bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	measured := filepath.Join(dir, "measured.html")
	if err := os.WriteFile(file, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(measured, bytes.Replace(page.Bytes(), []byte("</body>"), []byte(browser.Measure+"</body>"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	const width, height = 1400, 1800
	browser.Screenshot(t, chromium, "file://"+file, filepath.Join(dir, "report-top.png"), width, height)
	doc := browser.Parse(t, browser.DumpDOM(t, chromium, "file://"+measured, width, height))

	for _, tag := range []string{"img", "b", "script"} {
		for _, n := range browser.All(doc, func(n *html.Node) bool { return n.Data == tag }) {
			if browser.Attr(n, "id") != "measure" {
				t.Errorf("a <%s> element in the report: markup from a file was not escaped", tag)
			}
		}
	}
	body := browser.All(doc, func(n *html.Node) bool { return n.Data == "body" })[0]
	if sw, iw := browser.Float(t, body, "data-scroll-width"), browser.Float(t, body, "data-inner-width"); sw > iw {
		t.Errorf("the report is %v px wide in a %v px window", sw, iw)
	}
	if !strings.Contains(browser.Text(body), testutil.HostileModel) || !strings.Contains(browser.Text(body), testutil.HostileID) {
		t.Error("the hostile id and model name are not shown as text")
	}

	checkWaterfall(t, doc, r)
	checkHistograms(t, doc, r)

	// The whole page of a smaller run, waterfall included, for people to
	// look at.
	small := filepath.Join(dir, "report-small.html")
	page.Reset()
	if err := WriteHTML(&page, busyReport(t, 150)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(small, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	browser.Screenshot(t, chromium, "file://"+small, filepath.Join(dir, "report-whole-150.png"), width, 6000)
}

func checkWaterfall(t *testing.T, doc *html.Node, r *Report) {
	table := browser.All(doc, func(n *html.Node) bool { return browser.Attr(n, "id") == "waterfall-table" })[0]
	span := browser.Float(t, table, "data-span")
	rows := browser.All(table, func(n *html.Node) bool {
		return n.Data == "tr" && len(browser.All(n, func(c *html.Node) bool { return browser.HasClass(c, "track") })) == 1
	})
	var drawn []*attribution.Result
	var start time.Time
	for i := range r.Requests {
		if res := &r.Requests[i]; res.BeforeFile != "" {
			drawn = append(drawn, res)
			if start.IsZero() || res.BeforeTime.Before(start) {
				start = res.BeforeTime
			}
		}
	}
	if len(rows) != len(drawn) || len(rows) < 1000 {
		t.Fatalf("%d waterfall rows, want %d", len(rows), len(drawn))
	}
	segments := 0
	for i, row := range rows {
		res := drawn[i]
		if id := browser.Text(browser.All(row, func(n *html.Node) bool { return browser.HasClass(n, "id") })[0]); id != res.RequestID {
			t.Fatalf("row %d: %q, want %q (sorted by start time)", i, id, res.RequestID)
		}
		if h := browser.Float(t, row, "data-px-height"); h > 24 {
			t.Errorf("%s: row %v px high: the layout does not hold", res.RequestID, h)
		}
		track := browser.All(row, func(n *html.Node) bool { return browser.HasClass(n, "track") })[0]
		w := browser.Float(t, track, "data-px-width")
		px := func(s float64) float64 { return s / span * w }
		at := res.BeforeTime.Sub(start).Seconds()
		for _, seg := range browser.All(track, func(n *html.Node) bool { return browser.HasClass(n, "seg") }) {
			phase := strings.Fields(browser.Attr(seg, "class"))[1]
			m := map[string]parser.Metric{"queue": parser.Queue, "prefill": parser.Prefill, "decode": parser.Decode}[phase]
			v := res.Values[m]
			if !v.Exact {
				t.Errorf("%s: %s drawn though withheld", res.RequestID, phase)
				continue
			}
			if gw, gl := browser.Float(t, seg, "data-px-width"), browser.Float(t, seg, "data-px-left"); math.Abs(gw-px(v.V)) > 1 || math.Abs(gl-px(at)) > 1 {
				t.Errorf("%s: %s at %.2f px, %.2f wide; want %.2f, %.2f", res.RequestID, phase, gl, gw, px(at), px(v.V))
			}
			at += v.V
			segments++
		}
	}
	if segments < 2000 {
		t.Errorf("%d phases drawn for %d requests", segments, len(rows))
	}
}

func checkHistograms(t *testing.T, doc *html.Node, r *Report) {
	hists := browser.All(doc, func(n *html.Node) bool { return browser.HasClass(n, "hist") })
	if len(hists) != numColumns {
		t.Fatalf("%d histograms, want one per family (%d)", len(hists), numColumns)
	}
	for i, h := range hists {
		c := columns[i]
		want := 0
		for j := range r.Requests {
			if c.value(&r.Requests[j]).Exact {
				want++
			}
		}
		if got := int(browser.Float(t, h, "data-count")); got != want || browser.Attr(h, "data-key") != c.key {
			t.Errorf("histogram %d (%s): %d values, want %s with %d", i, browser.Attr(h, "data-key"), got, c.key, want)
		}
		bins := browser.All(h, func(n *html.Node) bool { return browser.HasClass(n, "bins") })[0]
		full := browser.Float(t, bins, "data-px-height")
		bars := browser.All(bins, func(n *html.Node) bool { return n != bins && n.Data == "div" })
		tallest, sum := 0.0, 0
		for _, b := range bars {
			tallest = max(tallest, browser.Float(t, b, "data-count"))
			sum += int(browser.Float(t, b, "data-count"))
		}
		if sum != want {
			t.Errorf("%s: bins hold %d values, want %d", c.key, sum, want)
		}
		for _, b := range bars {
			n := browser.Float(t, b, "data-count")
			if got, exp := browser.Float(t, b, "data-px-height"), n/tallest*(full-1); math.Abs(got-exp) > 1.5 {
				t.Errorf("%s: a bin of %v is %.1f px high, want %.1f", c.key, n, got, exp)
			}
		}
	}
}

// TestHTMLReportIsSelfContained: the file asks for nothing from anywhere
// (no src, no external href, no url() but the page's own anchors).
func TestHTMLReportIsSelfContained(t *testing.T) {
	r := busyReport(t, 100)
	var page bytes.Buffer
	if err := WriteHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&page)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range browser.All(doc, func(*html.Node) bool { return true }) {
		for _, a := range n.Attr {
			if a.Key == "src" || (a.Key == "href" && !strings.HasPrefix(a.Val, "#")) || strings.Contains(a.Val, "url(") {
				t.Errorf("<%s %s=%q>: the report must not load anything", n.Data, a.Key, a.Val)
			}
		}
	}
	if n := len(browser.All(doc, func(n *html.Node) bool { return n.Data == "script" || n.Data == "link" })); n != 0 {
		t.Errorf("%d script or link elements", n)
	}
	if got := fmt.Sprint(len(r.SLO)); got == "0" {
		t.Error("no SLO attainment in the busy report")
	}
}
