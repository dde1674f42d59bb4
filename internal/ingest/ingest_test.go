package ingest

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

const model = "org/model-a"

// dirWriter writes snapshots of a simulated server into a new directory,
// 10 ms apart.
type dirWriter struct{ *testutil.Snapshots }

func newDirWriter(t *testing.T) *dirWriter {
	w := testutil.NewSnapshots(t, t.TempDir(), model)
	w.Now, w.Step = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), 10*time.Millisecond
	return &dirWriter{w}
}

func finish(i int) simulate.Finish {
	f := simulate.Finish{Queue: 0.001 * float64(i), Prefill: 0.02, Decode: 0.3, PromptTokens: 10 + i, GenerationTokens: 5 + i}
	f.Inference = f.Prefill + f.Decode
	f.E2E = f.Queue + f.Inference + 0.001
	return f
}

// request writes a complete sequential request.
func (w *dirWriter) request(id string, i int) simulate.Finish {
	f := finish(i)
	w.Request(id, model, f.Queue+f.Prefill, f)
	return f
}

// attributed reports whether res is what a server process's first
// requests give when the pipeline works: e2e and TTFT exact (they rest on
// the count rule and the vouched windows alone), and every other family
// exact or withheld as unconfirmed (a handful of requests cannot confirm
// that the server observes it with the finish: docs/attribution.md).
func attributed(res attribution.Result) bool {
	if res.Outcome != attribution.Exact && res.Outcome != attribution.Partial {
		return false
	}
	for m, v := range res.Values {
		switch {
		case parser.Metric(m) == parser.E2E || parser.Metric(m) == parser.TTFT:
			if !v.Exact {
				return false
			}
		case !v.Exact && v.Reason != attribution.ReasonUnconfirmed && v.Reason != attribution.ReasonAbsent:
			return false
		}
	}
	return true
}

// newTestIngester reads dir as serve and report do. The tests' directories
// are pairs a test writes once each request's finish is observed, so they
// are read with --attribution.trust-afters (TrustAfters); what vouches
// without it is TestCaptureSidecarVouches.
func newTestIngester(dir string, rec *record.Recorder) *Ingester {
	return New(Config{TrustAfters: true, FS: os.DirFS(dir), MaxObserveDelay: DefaultMaxObserveDelay, Results: rec.Publish, Metrics: rec, MaxDelay: time.Second})
}

func TestSequentialPairsAreExact(t *testing.T) {
	w := newDirWriter(t)
	want := map[string]simulate.Finish{}
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("chatcmpl-%d_with_underscores", i)
		want[id] = w.request(id, i)
	}
	rec := record.Once(t)
	in := newTestIngester(w.Dir, rec)
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	if len(rec.ByID) != 5 || rec.Read != 10 {
		t.Fatalf("results %d, read %d", len(rec.ByID), rec.Read)
	}
	for id, f := range want {
		res := rec.ByID[id]
		if res.Outcome != attribution.Exact || res.Model != model {
			t.Fatalf("%s: outcome %s model %q", id, res.Outcome, res.Model)
		}
		for m, v := range map[parser.Metric]float64{parser.E2E: f.E2E, parser.Queue: f.Queue, parser.Decode: f.Decode,
			parser.PromptTokens: float64(f.PromptTokens), parser.TTFT: f.Queue + f.Prefill} {
			if math.Abs(res.Values[m].V-v) > 1e-9 {
				t.Errorf("%s %s = %v, want %v", id, m.Name(), res.Values[m].V, v)
			}
		}
	}
	// A second scan finds nothing new: nothing is counted twice.
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	if len(rec.ByID) != 5 || rec.Read != 10 {
		t.Fatalf("after rescan: results %d, read %d", len(rec.ByID), rec.Read)
	}
}

// TestOddFiles: every kind of bad input is counted by reason, and the good
// pairs around it are still exact.
func TestOddFiles(t *testing.T) {
	w := newDirWriter(t)
	w.request("good-1", 1)
	// A request whose after is curl's error text.
	w.Snap("curl-err", parser.Before)
	w.Put(parser.FormatName("curl-err", parser.After, w.Now.Add(time.Millisecond)), []byte("curl: (28) Operation timed out after 10001 milliseconds with 0 bytes received\n"))
	// A request whose after is empty (the scrape timed out).
	w.Snap("empty", parser.Before)
	w.Put(parser.FormatName("empty", parser.After, w.Now.Add(2*time.Millisecond)), nil)
	// Truncated mid-line.
	w.Snap("trunc", parser.Before)
	full := w.Scrape()
	w.Put(parser.FormatName("trunc", parser.After, w.Now.Add(3*time.Millisecond)), full[:len(full)/2])
	// Binary junk.
	w.Put(parser.FormatName("junk", parser.Before, w.Now.Add(4*time.Millisecond)), []byte{0, 1, 2, 0xff, '\n'})
	// A directory and a symlink with snapshot names.
	if err := os.Mkdir(filepath.Join(w.Dir, parser.FormatName("adir", parser.Before, w.Now)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(w.Dir, parser.FormatName("alink", parser.Before, w.Now))); err != nil {
		t.Fatal(err)
	}
	// Not snapshots at all.
	w.Put("README.md", []byte("hi"))
	w.Put("x_before_20251106_225030_12345.txt", []byte("hi"))
	// A before whose after never comes, and an after without a before.
	w.Snap("lonely-before", parser.Before)
	w.Server.ObserveFinish(model, 0, finish(9))
	w.Snap("lonely-after", parser.After)
	w.request("good-2", 2)

	rec := record.Once(t)
	in := newTestIngester(w.Dir, rec)
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	checks := []struct {
		id      string
		outcome attribution.Outcome
		reason  attribution.Reason
	}{
		{"good-1", attribution.Partial, ""},
		{"good-2", attribution.Partial, ""},
		{"curl-err", attribution.Rejected, attribution.RejectBadSnapshot},
		{"empty", attribution.Rejected, attribution.RejectBadSnapshot},
		{"trunc", attribution.Rejected, attribution.RejectBadSnapshot},
		{"lonely-before", attribution.Unpaired, ""},
		{"lonely-after", attribution.Unpaired, ""},
		{"junk", attribution.Unpaired, ""},
	}
	for _, c := range checks {
		res, ok := rec.ByID[c.id]
		if !ok {
			t.Errorf("%s: no result", c.id)
			continue
		}
		if res.Outcome != c.outcome || res.RejectReason != c.reason || (c.outcome == attribution.Partial && !attributed(res)) {
			t.Errorf("%s: %s/%s, want %s/%s", c.id, res.Outcome, res.RejectReason, c.outcome, c.reason)
		}
	}
	if rec.Ignored["name"] != 2 {
		t.Errorf("ignored names = %d, want 2", rec.Ignored["name"])
	}
	if rec.Rejected["not_regular"] != 2 {
		t.Errorf("not_regular = %d, want 2 (directory and symlink)", rec.Rejected["not_regular"])
	}
	if rec.Rejected["empty"] != 1 || rec.Rejected["incomplete"] != 1 {
		t.Errorf("rejected = %v", rec.Rejected)
	}
	if rec.Rejected["parse_error"]+rec.Rejected["no_families"] != 2 {
		t.Errorf("curl text and junk: rejected = %v", rec.Rejected)
	}
	if rec.Unpaired != 0 || rec.Attributing != 0 {
		t.Errorf("pending after Finish: unpaired %d, attributing %d", rec.Unpaired, rec.Attributing)
	}
}

func TestDuplicateRequestID(t *testing.T) {
	w := newDirWriter(t)
	w.request("dup", 1)
	w.request("dup", 2) // same id again, later timestamps
	rec := record.Once(t)
	in := newTestIngester(w.Dir, rec)
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	if res := rec.ByID["dup"]; res.Outcome != attribution.Rejected || res.RejectReason != attribution.RejectDuplicate {
		t.Fatalf("dup: %+v", res)
	}
	n := 0
	for _, id := range rec.IDs() {
		if id == "dup" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("dup published %d times, want 2 (both requests rejected)", n)
	}
}

// TestInfoBeforeItsBefore: a capture sidecar named (by the proxy's receive
// time) before its before snapshot still applies in a sorted scan. Its
// after_observed=false keeps the request out of the finish matching, and,
// without a first snapshot, out of the first-token matching too (it may
// have ended with no token, or as an error the engine never saw: it has
// no observation of its own to find); an info whose request has no
// snapshot at all leaves no result.
func TestInfoBeforeItsBefore(t *testing.T) {
	w := newDirWriter(t)
	id := "chatcmpl-early-info"
	w.Put(parser.FormatName(id, parser.Info, w.Now.Add(time.Millisecond)), []byte(`{"after_observed": false}`))
	w.Put(parser.FormatName("chatcmpl-abandoned", parser.Info, w.Now.Add(2*time.Millisecond)), []byte(`{"after_observed": false}`))
	w.request(id, 1)
	w.request("chatcmpl-plain", 2)
	rec := record.Once(t)
	in := newTestIngester(w.Dir, rec)
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	if len(rec.ByID) != 2 {
		t.Fatalf("%d results, want 2: %v", len(rec.ByID), rec.IDs())
	}
	if v := rec.ByID[id].Values[parser.E2E]; v.Exact {
		t.Errorf("e2e of a request whose after was not confirmed published: %v", v.V)
	}
	if rec.ByID[id].Values[parser.TTFT].Reason != attribution.ReasonUnvouched || !attributed(rec.ByID["chatcmpl-plain"]) {
		t.Errorf("outcomes: %s TTFT %v, plain %s", id, rec.ByID[id].Values[parser.TTFT], rec.ByID["chatcmpl-plain"].Outcome)
	}
}

// TestCaptureSuffixedNames: capture gives a request whose id the server
// gave another request too names of its own ({id}+{8 hex}), and names the
// server's id in the info's server_id. Both requests are measured, and
// both are published under the server's id. A server_id that is not the
// start of the name is ignored.
func TestCaptureSuffixedNames(t *testing.T) {
	w := newDirWriter(t)
	const id, second, third = "chatcmpl-a", "chatcmpl-a+0123abcd", "chatcmpl-b+4567cdef"
	w.request(id, 1)
	w.Put(parser.FormatName(second, parser.Info, w.Now.Add(time.Millisecond)), []byte(`{"request_id":"`+second+`","server_id":"`+id+`"}`))
	w.request(second, 2)
	w.Put(parser.FormatName(third, parser.Info, w.Now.Add(time.Millisecond)), []byte(`{"request_id":"`+third+`","server_id":"chatcmpl-z"}`))
	w.request(third, 3)
	rec := record.New() // both requests are published under the server's id
	in := New(Config{TrustAfters: true, FS: os.DirFS(w.Dir), MaxObserveDelay: DefaultMaxObserveDelay, Results: rec.Publish, Metrics: rec, MaxDelay: time.Second})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	var got []string
	for _, res := range rec.Results {
		if !attributed(res) {
			t.Errorf("%s: %s %s %+v", res.RequestID, res.Outcome, res.RejectReason, res.Values)
		}
		got = append(got, res.RequestID+" "+res.BeforeFile[:len(res.BeforeFile)-len("_before_20260102_030405_010000.txt")])
	}
	slices.Sort(got)
	if want := []string{id + " " + id, id + " " + second, third + " " + third}; !slices.Equal(got, want) {
		t.Errorf("published %q, want %q", got, want)
	}
	if len(in.serverIDs) != 0 {
		t.Errorf("server ids kept after publishing: %v", in.serverIDs)
	}
}

// TestInfoProxyTimes: the info sidecar's receive, first-byte and last-byte
// times reach the result as client-side latencies, whatever the
// attribution decides: TTFT for a stream only (a JSON body's first byte
// says nothing of the first token), none for a response cut short, and
// for a request that ends unpaired too.
func TestInfoProxyTimes(t *testing.T) {
	w := newDirWriter(t)
	info := func(id, extra string) {
		w.Put(parser.FormatName(id, parser.Info, w.Now.Add(time.Millisecond)), []byte(`{"model":"served","received_at":"2026-01-02T03:04:05.100Z",`+
			`"first_byte_at":"2026-01-02T03:04:05.350Z","last_byte_at":"2026-01-02T03:04:06.100Z"`+extra+`}`))
	}
	info("stream", `,"stream":true`)
	w.request("stream", 1)
	info("json", ``)
	w.request("json", 2)
	info("cut", `,"stream":true,"client_disconnected":true`)
	w.request("cut", 3)
	info("unpaired", `,"stream":true,"after_error":"no scrape"`)
	w.Snap("unpaired", parser.Before)
	rec := record.Once(t)
	in := newTestIngester(w.Dir, rec)
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	want := map[string]attribution.ProxyTimes{
		"stream":   {Model: "served", TTFT: 0.25, E2E: 1, HasTTFT: true, HasE2E: true},
		"json":     {Model: "served", E2E: 1, HasE2E: true},
		"cut":      {Model: "served"},
		"unpaired": {Model: "served", TTFT: 0.25, E2E: 1, HasTTFT: true, HasE2E: true},
	}
	for id, px := range want {
		got, ok := rec.ByID[id]
		if !ok {
			t.Errorf("%s: no result", id)
			continue
		}
		g := got.Proxy
		if g.Model != px.Model || g.HasTTFT != px.HasTTFT || g.HasE2E != px.HasE2E || math.Abs(g.TTFT-px.TTFT) > 1e-9 || math.Abs(g.E2E-px.E2E) > 1e-9 {
			t.Errorf("%s (%s): proxy times %+v, want %+v", id, got.Outcome, g, px)
		}
	}
	if rec.ByID["unpaired"].Outcome != attribution.Unpaired {
		t.Errorf("unpaired: %s", rec.ByID["unpaired"].Outcome)
	}
}
