package recent

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/internal/testutil/browser"
	"github.com/delta-exporter/delta-exporter/parser"
)

// entries makes n decided requests, oldest first: most exact, some with
// withheld values, rejected and unpaired ones, two hostile, one with a
// 200-character model name.
func entries(n int) []Entry {
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var out []Entry
	for i := range n {
		model := []string{"llama-8b", "qwen-32b"}[i%2]
		switch i {
		case 3:
			model = testutil.LongModel
		case 5:
			model = testutil.HostileModel
		}
		id := fmt.Sprintf("chatcmpl-%032x", rng.Uint64())
		if i == 7 {
			id = testutil.HostileID
		}
		r := attribution.Result{RequestID: id, Model: model, Outcome: attribution.Exact,
			BeforeTime: start.Add(time.Duration(i) * time.Second), BeforeFile: id + "_before.txt"}
		q, p, d := 0.001+rng.ExpFloat64()*0.05, 0.02+rng.Float64()*0.3, rng.Float64()*3
		gen := 1 + rng.IntN(500)
		vals := [parser.NumMetrics]float64{parser.Queue: q, parser.Prefill: p, parser.Decode: d, parser.TTFT: q + p + 0.002,
			parser.Inference: p + d, parser.E2E: q + p + d + 0.003, parser.PromptTokens: float64(rng.IntN(4000)), parser.GenerationTokens: float64(gen)}
		for m, v := range vals {
			r.Values[m] = attribution.Value{V: v, Exact: true}
		}
		r.TPOT = attribution.Value{V: d / float64(max(gen-1, 1)), Exact: gen > 1}
		switch {
		case i%9 == 4:
			r.Outcome = attribution.Partial
			r.Values[parser.Prefill] = attribution.Value{Reason: attribution.ReasonOverlap}
			r.Values[parser.TTFT] = attribution.Value{Reason: attribution.ReasonOverlap}
		case i%17 == 8:
			r = attribution.NewRejected(&attribution.Request{ID: id, BeforeTime: r.BeforeTime, BeforeFile: r.BeforeFile}, attribution.RejectRestart)
		case i%23 == 11:
			r = attribution.NewUnpaired(&attribution.Request{ID: id, BeforeTime: r.BeforeTime, BeforeFile: r.BeforeFile})
		}
		out = append(out, Entry{Result: r, Decided: start.Add(time.Duration(i) * time.Second),
			SLO: testObjectives.Judge(&r)})
	}
	return out
}

var testObjectives = func() *slo.Set {
	s, err := slo.Parse([]byte("objectives:\n  - {name: goodput, target: 0.9, thresholds: {ttft: 300ms, time_per_output_token: 10ms}}\n"))
	if err != nil {
		panic(err)
	}
	return s
}()

// measured serves the page with the measuring script appended. The page's
// own Content-Security-Policy forbids scripts, so it is left out here;
// the screenshots load the page as served, with it.
func measured(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h(rec, r)
		w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
		w.Write(bytes.Replace(rec.Body.Bytes(), []byte("</body>"), []byte(browser.Measure+"</body>"), 1))
	}
}

func serveRing(t *testing.T, es []Entry) (page, measure string) {
	ring := NewRing(len(es))
	for _, e := range es {
		ring.Add(e)
	}
	h := NewHandlers(ring, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("/requests", h.Page)
	mux.HandleFunc("/measure", measured(h.Page))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/requests?refresh=0", srv.URL + "/measure?refresh=0"
}

// TestRequestsPageInBrowser loads /requests in headless Chromium and
// checks the rendered page: a bar per request with its phases to scale
// and TTFT marked, hostile ids and model names shown as text, and a
// layout that holds at 1,000 requests with a 200-character model name.
func TestRequestsPageInBrowser(t *testing.T) {
	chromium := browser.Find(t) // first: in CI a missing browser fails even under -short
	if testing.Short() {
		t.Skip("a browser run takes seconds; run without -short")
	}
	for _, n := range []int{60, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			es := entries(n)
			pageURL, measureURL := serveRing(t, es)
			const width, height = 1400, 900
			browser.Screenshot(t, chromium, pageURL, filepath.Join(t.TempDir(), fmt.Sprintf("requests-%d.png", n)), width, height)
			// Sorted by model name, the hostile and the long names come first.
			browser.Screenshot(t, chromium, pageURL+"&sort=model&order=asc", filepath.Join(t.TempDir(), fmt.Sprintf("requests-%d-by-model.png", n)), width, 400)
			doc := browser.Parse(t, browser.DumpDOM(t, chromium, measureURL, width, height))
			checkPage(t, doc, es)
		})
	}
}

func checkPage(t *testing.T, doc *html.Node, es []Entry) {
	// Markup from files never becomes elements.
	for _, tag := range []string{"img", "b", "script"} {
		for _, n := range browser.All(doc, func(n *html.Node) bool { return n.Data == tag }) {
			if browser.Attr(n, "id") != "measure" {
				t.Errorf("a <%s> element in the page: markup from a file was not escaped", tag)
			}
		}
	}
	if title := browser.Text(browser.All(doc, func(n *html.Node) bool { return n.Data == "title" })[0]); strings.Contains(title, "pwned") {
		t.Error("a script from a file ran")
	}
	rows := browser.All(doc, func(n *html.Node) bool {
		return n.Data == "tr" && strings.HasPrefix(browser.Attr(n, "class"), "outcome-")
	})
	if len(rows) != len(es) {
		t.Fatalf("%d rows, want %d", len(rows), len(es))
	}
	byID := map[string]*Entry{}
	for i := range es {
		byID[es[i].Result.RequestID] = &es[i]
	}
	// Newest first.
	if id := browser.Text(cell(rows[0], "id")); id != es[len(es)-1].Result.RequestID {
		t.Errorf("first row %q, want the newest request", id)
	}
	scaleNodes := browser.All(doc, func(n *html.Node) bool { return browser.Attr(n, "id") == "scale" })
	scale := browser.Float(t, scaleNodes[0], "data-seconds")
	body := browser.All(doc, func(n *html.Node) bool { return n.Data == "body" })[0]
	if sw, iw := browser.Float(t, body, "data-scroll-width"), browser.Float(t, body, "data-inner-width"); sw > iw {
		t.Errorf("the page is %v px wide in a %v px window", sw, iw)
	}
	var barWidth float64
	seen := map[string]bool{}
	for _, row := range rows {
		id := browser.Text(cell(row, "id"))
		e := byID[id]
		if e == nil {
			t.Fatalf("row for unknown id %q", id)
		}
		seen[id] = true
		model := browser.Text(cell(row, "model"))
		if e.Result.Model != "" && model != e.Result.Model {
			t.Errorf("%s: model shown as %q, want %q", id, model, e.Result.Model)
		}
		if h := browser.Float(t, row, "data-px-height"); h > 24 {
			t.Errorf("%s: row %v px high: the layout does not hold", id, h)
		}
		if w := browser.Float(t, cell(row, "model"), "data-px-width"); w > 160 {
			t.Errorf("%s: model cell %v px wide", id, w)
		}
		bar := browser.All(row, func(n *html.Node) bool { return browser.HasClass(n, "bar") })[0]
		bw := browser.Float(t, bar, "data-px-width")
		if barWidth == 0 {
			barWidth = bw
		}
		if bw < 200 || math.Abs(bw-barWidth) > 0.5 {
			t.Errorf("%s: bar %v px wide, others %v", id, bw, barWidth)
		}
		px := func(seconds float64) float64 { return seconds / scale * bw }
		// Each phase to scale and after the previous one; only exact phases.
		at := 0.0
		segs := browser.All(bar, func(n *html.Node) bool { return browser.HasClass(n, "seg") })
		wantSegs := 0
		for _, m := range []parser.Metric{parser.Queue, parser.Prefill, parser.Decode} {
			if !e.Result.Values[m].Exact {
				break
			}
			wantSegs++
		}
		if len(segs) != wantSegs {
			t.Errorf("%s: %d phases drawn, want %d", id, len(segs), wantSegs)
			continue
		}
		for i, s := range segs {
			v := e.Result.Values[[]parser.Metric{parser.Queue, parser.Prefill, parser.Decode}[i]].V
			if w, l := browser.Float(t, s, "data-px-width"), browser.Float(t, s, "data-px-left"); math.Abs(w-px(v)) > 1 || math.Abs(l-px(at)) > 1 {
				t.Errorf("%s: %s at %.1f px, %.1f px wide; want %.1f, %.1f", id, browser.Attr(s, "class"), l, w, px(at), px(v))
			}
			at += v
		}
		marks := browser.All(bar, func(n *html.Node) bool { return browser.HasClass(n, "ttft") })
		if ttft := e.Result.Values[parser.TTFT]; ttft.Exact != (len(marks) == 1) {
			t.Errorf("%s: %d TTFT marks, TTFT exact %v", id, len(marks), ttft.Exact)
		} else if ttft.Exact {
			if l := browser.Float(t, marks[0], "data-px-left"); math.Abs(l-px(ttft.V)) > 1 {
				t.Errorf("%s: TTFT mark at %.1f px, want %.1f", id, l, px(ttft.V))
			}
		}
		// Withheld values are named with their reasons.
		withheld := browser.Text(cell(row, "withheld"))
		if v := e.Result.Values[parser.Prefill]; e.Result.Outcome == attribution.Partial && !strings.Contains(withheld, "prefill: "+string(v.Reason)) {
			t.Errorf("%s: withheld %q does not name prefill's reason", id, withheld)
		}
	}
	for _, id := range []string{testutil.HostileID} {
		if !seen[id] && len(es) > 7 {
			t.Errorf("hostile id %q not shown as text", id)
		}
	}
}

// cell is the row's <td> with the class.
func cell(row *html.Node, class string) *html.Node {
	cs := browser.All(row, func(n *html.Node) bool { return n.Data == "td" && browser.HasClass(n, class) })
	if len(cs) == 0 {
		return &html.Node{}
	}
	return cs[0]
}
