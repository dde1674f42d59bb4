package capture

import (
	"bufio"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestSequentialExact: one request at a time, each client waiting until
// the previous request's files are written. Every request's before/after
// pair (before/first for TTFT of streams) must isolate exactly its own
// observations, with the values the fake observed, and the info sidecar
// must carry what the response reported.
func TestSequentialExact(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{
		PerRequestMetrics: true,
		Plan: func(r *fakeupstream.Request) fakeupstream.Plan {
			return fakeupstream.Plan{
				Queue:            time.Duration(r.Seq%3) * time.Millisecond,
				Prefill:          2 * time.Millisecond,
				Decode:           time.Duration(r.MaxTokens) * time.Millisecond,
				PromptTokens:     100 + r.Seq,
				GenerationTokens: r.MaxTokens,
			}
		},
	}, nil)
	h.waitReady()
	var ids []string
	for i := range 6 {
		stream := i%2 == 1
		r := h.chat(stream, 1+i, nil)
		if r.status != http.StatusOK || r.id == "" {
			t.Fatalf("request %d: status %d, id %q, body %s", i, r.status, r.id, r.body)
		}
		ids = append(ids, r.id)
		h.p.Wait()
	}
	d := h.files()
	if len(d.other) != 0 {
		t.Errorf("files that are not snapshots: %v", d.other)
	}
	if len(d.byID) != len(ids) {
		t.Fatalf("files for %d ids, want %d: %v", len(d.byID), len(ids), d.byID)
	}
	for i, id := range ids {
		stream := i%2 == 1
		o, ok := h.fake.Observation(id)
		if !ok || !o.Finished {
			t.Fatalf("%s: the fake has no finished request with this id", id)
		}
		before, after := d.one(t, id, parser.Before), d.one(t, id, parser.After)
		info := h.info(d.one(t, id, parser.Info))
		var first string
		if stream {
			first = d.one(t, id, parser.First)
		} else if len(d.byID[id][parser.First]) != 0 {
			t.Errorf("%s: first snapshot for a non-streaming response", id)
		}
		b, a := h.readSnap(before), h.readSnap(after)
		for _, tr := range truth {
			end := a
			if tr.first && stream {
				end = h.readSnap(first)
			}
			dc := end[tr.family].count - b[tr.family].count
			got := end[tr.family].sum - b[tr.family].sum
			if dc != 1 || !sameValue(got, tr.value(o)) {
				t.Errorf("%s %s: count delta %d, value %v; the fake observed %v", id, tr.family, dc, got, tr.value(o))
			}
		}
		if info.RequestID != id || info.IDSource != "response" || info.Stream != stream || info.Status != 200 ||
			info.ClientDisconnected || !info.AfterObserved || info.AfterError != "" || info.Version != InfoVersion {
			t.Errorf("%s: info %+v", id, info)
		}
		if info.Before == nil || info.Before.File != before || info.After == nil || info.After.File != after ||
			(stream && (info.First == nil || info.First.File != first)) {
			t.Errorf("%s: info names other files: %+v %+v %+v", id, info.Before, info.First, info.After)
		}
		if info.Usage == nil || info.Usage.PromptTokens != o.Finish.PromptTokens || info.Usage.CompletionTokens != o.Finish.GenerationTokens {
			t.Errorf("%s: usage %+v, the fake observed %d/%d tokens", id, info.Usage, o.Finish.PromptTokens, o.Finish.GenerationTokens)
		}
		if v, _ := info.ServerMetrics["time_to_first_token_ms"].(float64); !sameValue(v, o.TTFT*1000) {
			t.Errorf("%s: server metrics %v, TTFT %v s", id, info.ServerMetrics, o.TTFT)
		}
		if info.FirstByteAt.Before(info.ReceivedAt) || info.LastByteAt.Before(info.FirstByteAt) {
			t.Errorf("%s: received %v, first byte %v, last byte %v", id, info.ReceivedAt, info.FirstByteAt, info.LastByteAt)
		}
		if !info.After.ScrapeStartedAt.After(info.LastByteAt) || info.Before.ScrapeDoneAt.After(info.ReceivedAt) {
			t.Errorf("%s: scrape times out of order: before done %v, received %v, last byte %v, after started %v",
				id, info.Before.ScrapeDoneAt, info.ReceivedAt, info.LastByteAt, info.After.ScrapeStartedAt)
		}
	}
	if got := h.counter("delta_exporter_capture_requests_total", "kind", "inference", "outcome", "ok"); got != 6 {
		t.Errorf("requests_total ok = %v, want 6", got)
	}
	if got := h.counter("delta_exporter_capture_snapshots_written_total", "stage", "first"); got != 3 {
		t.Errorf("first snapshots written %v, want 3", got)
	}
	// Every file was created once and timed: as many creates as distinct
	// files (a shared scrape's other names are hard links to one file).
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	var distinct []os.FileInfo
	for _, e := range ents {
		fi, err := os.Stat(filepath.Join(h.dir, e.Name()))
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		if !slices.ContainsFunc(distinct, func(d os.FileInfo) bool { return os.SameFile(d, fi) }) {
			distinct = append(distinct, fi)
		}
	}
	if got := h.histogramCount("delta_exporter_capture_file_create_seconds"); got != uint64(len(distinct)) {
		t.Errorf("file creates timed: %d, distinct files: %d", got, len(distinct))
	}
	lint(t, h.reg)
}

// concurrentPlan draws each request's timing from its sequence number.
func concurrentPlan(r *fakeupstream.Request) fakeupstream.Plan {
	rng := rand.New(rand.NewPCG(uint64(r.Seq), 7))
	return fakeupstream.Plan{
		Queue:            time.Duration(rng.IntN(3)) * time.Millisecond,
		Prefill:          time.Duration(1+rng.IntN(6)) * time.Millisecond,
		Decode:           time.Duration(2+rng.IntN(30)) * time.Millisecond,
		PromptTokens:     20 + rng.IntN(2000),
		GenerationTokens: 2 + rng.IntN(7),
	}
}

// TestConcurrentWindows runs 16 clients at once. Each request's before
// must precede its own observations and its after (first, for TTFT) must
// contain them, by the fake's sequence numbers; timeline snapshots must be
// there; and wherever two snapshots of the directory isolate one of a
// request's observations, their difference must be its value.
func TestConcurrentWindows(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{Plan: concurrentPlan}, func(c *Config) {
		c.TimelineInterval, c.ScrapeBudget = 10*time.Millisecond, -1 // as in TestTimelineWhileInFlight
	})
	h.waitReady()
	const workers, perWorker = 16, 6
	var mu sync.Mutex
	stream := map[string]bool{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				s := (w+i)%2 == 0
				r := h.chat(s, 4, nil)
				if r.status != 200 || r.id == "" {
					t.Errorf("status %d id %q body %.200q", r.status, r.id, r.body)
					return
				}
				mu.Lock()
				stream[r.id] = s
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	h.p.Wait()
	d := h.files()
	if len(d.byID) != workers*perWorker {
		t.Fatalf("files for %d ids, want %d", len(d.byID), workers*perWorker)
	}
	if len(d.timeline) == 0 {
		t.Error("no timeline snapshots")
	}
	// Every snapshot in the directory, for the isolation check.
	var all []snap
	for _, name := range d.timeline {
		all = append(all, h.readSnap(name))
	}
	for id := range stream {
		for _, st := range []parser.Stage{parser.Before, parser.First, parser.After} {
			for _, name := range d.byID[id][st] {
				all = append(all, h.readSnap(name))
			}
		}
	}
	levels := map[string]map[uint64]float64{} // family -> count -> sum
	for _, s := range all {
		for fam, v := range s {
			if levels[fam] == nil {
				levels[fam] = map[uint64]float64{}
			}
			if old, ok := levels[fam][v.count]; ok && old != v.sum {
				t.Fatalf("%s: two snapshots with count %d and sums %v, %v", fam, v.count, old, v.sum)
			}
			levels[fam][v.count] = v.sum
		}
	}
	isolated := 0
	for id, s := range stream {
		o, ok := h.fake.Observation(id)
		if !ok || !o.Finished {
			t.Fatalf("%s: not finished in the fake", id)
		}
		b := h.readSnap(d.one(t, id, parser.Before))
		a := h.readSnap(d.one(t, id, parser.After))
		info := h.info(d.one(t, id, parser.Info))
		const ttft, e2e = "vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds"
		if k := uint64(o.FinishSeq); b[e2e].count >= k || a[e2e].count < k {
			t.Errorf("%s: finish #%d outside its window (%d, %d]", id, k, b[e2e].count, a[e2e].count)
		}
		if k := uint64(o.TTFTSeq); b[ttft].count >= k || a[ttft].count < k {
			t.Errorf("%s: first token #%d outside its window (%d, %d]", id, k, b[ttft].count, a[ttft].count)
		}
		if s {
			f := h.readSnap(d.one(t, id, parser.First))
			if k := uint64(o.TTFTSeq); f[ttft].count < k {
				t.Errorf("%s: first snapshot (count %d) misses its first token #%d", id, f[ttft].count, k)
			}
		}
		if !info.AfterObserved {
			t.Errorf("%s: after not observed", id)
		}
		all := true
		for _, tr := range truth {
			k := uint64(o.FinishSeq)
			if tr.first {
				k = uint64(o.TTFTSeq)
			}
			hi, okHi := levels[tr.family][k]
			lo, okLo := levels[tr.family][k-1]
			if !okHi || !okLo {
				all = false
				continue
			}
			if !sameValue(hi-lo, tr.value(o)) {
				t.Errorf("%s %s: isolated value %v, the fake observed %v", id, tr.family, hi-lo, tr.value(o))
			}
		}
		if all {
			isolated++
		}
	}
	t.Logf("%d of %d requests have every observation isolated by two snapshots (%d timeline snapshots)",
		isolated, len(stream), len(d.timeline))
}

// TestAfterWaitsForLateFinish: the server observes the finish 40ms after
// the response ended (vLLM V0's race); the after snapshot must still
// contain it.
func TestAfterWaitsForLateFinish(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{FinishDelay: 40 * time.Millisecond}, nil)
	h.waitReady()
	for _, stream := range []bool{false, true} {
		r := h.chat(stream, 3, nil)
		h.p.Wait()
		d := h.files()
		a := h.readSnap(d.one(t, r.id, parser.After))
		info := h.info(d.one(t, r.id, parser.Info))
		h.fake.WaitFinishes()
		o, _ := h.fake.Observation(r.id)
		if got := a["vllm:e2e_request_latency_seconds"].count; got < uint64(o.FinishSeq) {
			t.Errorf("stream=%v: after has %d finishes, the request's is #%d", stream, got, o.FinishSeq)
		}
		if !info.AfterObserved {
			t.Errorf("stream=%v: after_observed false", stream)
		}
	}
}

// TestAfterTimeout: a finish that does not land within the after timeout
// gives an after file marked after_observed=false, and is counted.
func TestAfterTimeout(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{FinishDelay: 400 * time.Millisecond}, func(c *Config) {
		c.AfterTimeout = 30 * time.Millisecond
	})
	h.waitReady()
	r := h.chat(false, 2, nil)
	h.p.Wait()
	d := h.files()
	info := h.info(d.one(t, r.id, parser.Info))
	a := h.readSnap(d.one(t, r.id, parser.After))
	if info.AfterObserved || info.After == nil || a["vllm:e2e_request_latency_seconds"].count != 0 {
		t.Errorf("info %+v, after count %d: want an after without the finish, marked", info, a["vllm:e2e_request_latency_seconds"].count)
	}
	if got := h.counter("delta_exporter_capture_after_unobserved_total"); got != 1 {
		t.Errorf("after_unobserved_total %v", got)
	}
	h.fake.WaitFinishes()
}

// TestTimelineWhileInFlight: timeline snapshots are written while a
// request runs, under the documented name.
func TestTimelineWhileInFlight(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan {
		return fakeupstream.Plan{Decode: 300 * time.Millisecond, GenerationTokens: 3}
	}}, func(c *Config) {
		// Not the budget's test: under load (-race, a busy machine) a
		// slow /metrics spends it, and the timeline's scrapes are skipped.
		c.TimelineInterval, c.ScrapeBudget = 5*time.Millisecond, -1
	})
	h.waitReady()
	h.chat(true, 3, nil)
	h.p.Wait()
	d := h.files()
	if len(d.timeline) < 2 {
		t.Fatalf("%d timeline snapshots during a 300ms request at a 5ms interval", len(d.timeline))
	}
	for _, name := range d.timeline {
		if !strings.HasPrefix(name, TimelineID+"_timeline_") {
			t.Errorf("timeline name %s", name)
		}
		if len(h.readSnap(name)) == 0 {
			t.Errorf("timeline %s has no histograms", name)
		}
	}
}

// TestTimelineReusesRequestScrapes: while requests keep the proxy busy,
// a request's recent first or after scrape stands for the timeline's: the
// timeline file is then a hard link to the request's file, and no two
// timeline files hold the same scrape.
func TestTimelineReusesRequestScrapes(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan {
		return fakeupstream.Plan{Prefill: time.Millisecond, Decode: 8 * time.Millisecond, GenerationTokens: 3}
	}}, func(c *Config) {
		c.TimelineInterval, c.ScrapeBudget = 20*time.Millisecond, -1 // as in TestTimelineWhileInFlight
	})
	h.waitReady()
	for end := time.Now().Add(400 * time.Millisecond); time.Now().Before(end); {
		h.chat(true, 3, nil)
	}
	h.p.Wait()
	h.stop()
	<-h.runDone
	d := h.files()
	stat := func(name string) os.FileInfo {
		fi, err := os.Stat(filepath.Join(h.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	var requestFiles []os.FileInfo
	for _, stages := range d.byID {
		for stage, names := range stages {
			if stage != parser.Info {
				for _, name := range names {
					requestFiles = append(requestFiles, stat(name))
				}
			}
		}
	}
	var timeline []os.FileInfo
	linked := 0
	for _, name := range d.timeline {
		fi := stat(name)
		for _, other := range timeline {
			if os.SameFile(fi, other) {
				t.Errorf("timeline %s holds the scrape of an earlier timeline file", name)
			}
		}
		timeline = append(timeline, fi)
		for _, r := range requestFiles {
			if os.SameFile(fi, r) {
				linked++
				break
			}
		}
	}
	t.Logf("%d requests, %d timeline files, %d of them a request's scrape, %d upstream scrapes",
		len(d.byID), len(d.timeline), linked, h.fake.Scrapes())
	if len(d.timeline) < 3 || linked == 0 {
		t.Errorf("%d timeline files, %d of them a request's scrape", len(d.timeline), linked)
	}
}

// TestPassThrough: everything is forwarded unchanged, and only inference
// requests get snapshots.
func TestPassThrough(t *testing.T) {
	sim := simulate.NewServer(simulate.ServerConfig{})
	type seen struct {
		Method, Path, Query, Body string
		Header                    http.Header
	}
	got := make(chan seen, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			_, _ = sim.WriteTo(w)
			return
		}
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.Path, r.URL.RawQuery, string(b), r.Header}
		w.Header().Set("X-Upstream", "yes")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusTeapot)
		_, _ = w.Write([]byte("\x00binary\xff"))
	}))
	h := startProxy(t, up, nil)
	h.waitReady()
	req, _ := http.NewRequest(http.MethodPut, h.srv.URL+"/v1/anything?a=1&b=%2F", strings.NewReader("payload\x00"))
	req.Header.Set("X-Custom", "v1")
	req.Header.Set("X-Forwarded-For", "10.1.2.3")
	req.Header.Set("Authorization", "Bearer k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	s := <-got
	if s.Method != http.MethodPut || s.Path != "/v1/anything" || s.Query != "a=1&b=%2F" || s.Body != "payload\x00" ||
		s.Header.Get("X-Custom") != "v1" || s.Header.Get("X-Forwarded-For") != "10.1.2.3" || s.Header.Get("Authorization") != "Bearer k" {
		t.Errorf("upstream saw %+v", s)
	}
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Upstream") != "yes" || string(body) != "\x00binary\xff" {
		t.Errorf("client got %d %v %q", resp.StatusCode, resp.Header, body)
	}
	// A GET on an inference path is not an inference request either.
	resp, err = http.Get(h.srv.URL + "/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-got
	h.srv.Close() // waits for the handlers, which count the requests when they return
	h.p.Wait()
	if d := h.files(); len(d.byID)+len(d.other)+len(d.timeline) != 0 {
		t.Errorf("files written for pass-through requests: %+v", d)
	}
	if n := h.counter("delta_exporter_capture_requests_total", "kind", "other"); n != 2 {
		t.Errorf("other requests counted %v, want 2", n)
	}
}

// TestStreamIsNotBuffered: an event reaches the client while the upstream
// still holds the rest of the stream.
func TestStreamIsNotBuffered(t *testing.T) {
	sim := simulate.NewServer(simulate.ServerConfig{})
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			_, _ = sim.WriteTo(w)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: {\"id\":\"chatcmpl-held\"}\n\n"))
		http.NewResponseController(w).Flush()
		<-release
		sim.ObserveFinish(simulate.DefaultModel, 0, simulate.Finish{E2E: 1})
		_, _ = w.Write([]byte("data: [DONE]\n\n"))
	}))
	h := startProxy(t, up, nil)
	h.waitReady()
	resp, err := http.Post(h.srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(`{"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(resp.Body).ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if !strings.Contains(l, "chatcmpl-held") {
			t.Errorf("first line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first event did not reach the client while the upstream held the stream")
	}
	close(release)
	_, _ = io.Copy(io.Discard, resp.Body)
	h.p.Wait()
	d := h.files()
	d.one(t, "chatcmpl-held", parser.After)
	d.one(t, "chatcmpl-held", parser.First)
}

// TestErrorStatusNoFiles: an error answer is relayed as is; the server
// observed no request, so no files are written.
func TestErrorStatusNoFiles(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{}, nil)
	h.waitReady()
	r := h.post("/v1/chat/completions", `{"model":"no-such-model","messages":[]}`, nil)
	var e struct{ Object, Message string }
	if r.status != http.StatusNotFound || json.Unmarshal(r.body, &e) != nil || e.Object != "error" {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	h.p.Wait()
	if d := h.files(); len(d.byID) != 0 {
		t.Errorf("files for an error answer: %v", d.byID)
	}
	if n := h.counter("delta_exporter_capture_requests_total", "kind", "inference", "outcome", "error_status"); n != 1 {
		t.Errorf("error_status count %v", n)
	}
}
