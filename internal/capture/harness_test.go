package capture

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
	"github.com/delta-exporter/delta-exporter/parser"
)

// harness runs a capture proxy in front of an upstream, with its snapshot
// directory and registry.
type harness struct {
	t       testing.TB
	fake    *fakeupstream.Server // nil for a custom upstream
	up      *httptest.Server
	p       *Proxy
	srv     *httptest.Server
	dir     string
	reg     *prometheus.Registry
	client  *http.Client // keeps connections to the proxy alive
	stop    context.CancelFunc
	runDone chan struct{}
}

// newHarness starts a fake upstream from fc and a proxy in front of it.
func newHarness(t testing.TB, fc fakeupstream.Config, mod func(*Config)) *harness {
	t.Helper()
	fake := fakeupstream.New(fc)
	h := startProxy(t, httptest.NewServer(fake), mod)
	h.fake = fake
	return h
}

// startProxy starts a proxy in front of up; it owns up from then on.
func startProxy(t testing.TB, up *httptest.Server, mod func(*Config)) *harness {
	t.Helper()
	h := startProxyAt(t, up.URL, mod)
	h.up = up
	return h
}

// startProxyAt starts a proxy in front of the upstream at base.
func startProxyAt(t testing.TB, base string, mod func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), reg: prometheus.NewRegistry(), runDone: make(chan struct{})}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Upstream: u, Dir: h.dir, Registerer: h.reg, ScrapeBudget: DefaultScrapeBudget}
	if mod != nil {
		mod(&cfg)
	}
	h.dir = cfg.Dir
	h.p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() {
		_ = h.p.Run(ctx)
		close(h.runDone)
	}()
	h.srv = httptest.NewServer(h.p)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	h.client = &http.Client{Transport: tr}
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	h.client.CloseIdleConnections()
	h.srv.Close()
	h.stop()
	<-h.runDone
	if err := h.p.Close(); err != nil {
		h.t.Error(err)
	}
	// Nothing is left in TempDir once the proxy has stopped: every
	// temporary file was renamed or removed.
	if left, err := os.ReadDir(filepath.Join(h.dir, TempDir)); err == nil && len(left) != 0 {
		h.t.Errorf("files left in %s after Close: %v", TempDir, left)
	}
	if h.up != nil {
		h.up.Close()
	}
}

func (h *harness) waitReady() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.p.WaitReady(ctx); err != nil {
		h.t.Fatal("proxy never ready: ", err)
	}
}

// response is what a client got.
type response struct {
	status int
	header http.Header
	body   []byte
	id     string // from the body, or the first event of a stream
}

func (h *harness) post(path, body string, header http.Header) response {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Errorf("POST %s: %v", path, err)
		return response{status: -1}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Errorf("POST %s: reading the response: %v", path, err)
		return response{status: -1}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b, id: bodyID(b)}
}

// chat sends a chat completion with max_tokens tokens.
func (h *harness) chat(stream bool, maxTokens int, header http.Header) response {
	body := `{"messages":[{"role":"user","content":"say something nice"}],"max_tokens":` +
		strconv.Itoa(maxTokens) + `,"stream":` + btoa(stream) + `,"stream_options":{"include_usage":true},"include_metrics":true}`
	if !stream {
		body = strings.Replace(body, `,"stream_options":{"include_usage":true}`, "", 1)
	}
	return h.post("/v1/chat/completions", body, header)
}

func btoa(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// bodyID reads the id from a JSON body or the first SSE data event.
func bodyID(b []byte) string {
	var v struct{ ID string }
	if json.Unmarshal(b, &v) == nil {
		return v.ID
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			_ = json.Unmarshal([]byte(data), &v)
			return v.ID
		}
	}
	return ""
}

// dirFiles lists the snapshot directory: per request id and stage the file
// names, and the names that are not snapshot names.
type dirFiles struct {
	byID     map[string]map[parser.Stage][]string
	timeline []string
	other    []string
}

func (h *harness) files() dirFiles {
	h.t.Helper()
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	d := dirFiles{byID: map[string]map[parser.Stage][]string{}}
	for _, e := range ents {
		if e.Name() == TempDir {
			// A timeline write may be under way here; close checks that
			// nothing is left once the proxy has stopped.
			continue
		}
		n, err := parser.ParseName(e.Name())
		if err != nil {
			d.other = append(d.other, e.Name())
			continue
		}
		if n.Stage == parser.Timeline {
			if n.RequestID != TimelineID {
				h.t.Errorf("timeline file %s has id %q", e.Name(), n.RequestID)
			}
			d.timeline = append(d.timeline, e.Name())
			continue
		}
		if d.byID[n.RequestID] == nil {
			d.byID[n.RequestID] = map[parser.Stage][]string{}
		}
		d.byID[n.RequestID][n.Stage] = append(d.byID[n.RequestID][n.Stage], e.Name())
	}
	return d
}

// one returns the single file of id and stage, failing if there is not
// exactly one.
func (d dirFiles) one(t *testing.T, id string, stage parser.Stage) string {
	t.Helper()
	names := d.byID[id][stage]
	if len(names) != 1 {
		t.Fatalf("request %s: %d %s files, want 1 (have %v)", id, len(names), stage, d.byID[id])
	}
	return names[0]
}

func (h *harness) info(name string) Info {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, name))
	if err != nil {
		h.t.Fatal(err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	return info
}

// famVal is one histogram family's count and sum in a snapshot, summed
// over series.
type famVal struct {
	count uint64
	sum   float64
}

type snap map[string]famVal

// readSnap parses a snapshot file with the reference text parser.
func (h *harness) readSnap(name string) snap {
	h.t.Helper()
	f, err := os.Open(filepath.Join(h.dir, name))
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		h.t.Fatalf("%s: %v", name, err)
	}
	s := snap{}
	for name, fam := range fams {
		if fam.GetType().String() != "HISTOGRAM" {
			continue
		}
		var v famVal
		for _, m := range fam.GetMetric() {
			v.count += m.GetHistogram().GetSampleCount()
			v.sum += m.GetHistogram().GetSampleSum()
		}
		s[name] = v
	}
	return s
}

// truth lists the per-request histograms and how to read the value the
// fake observed for them.
var truth = []struct {
	family string
	first  bool // observed at the first token
	value  func(o fakeupstream.Observation) float64
}{
	{"vllm:time_to_first_token_seconds", true, func(o fakeupstream.Observation) float64 { return o.TTFT }},
	{"vllm:request_queue_time_seconds", false, func(o fakeupstream.Observation) float64 { return o.Finish.Queue }},
	{"vllm:request_prefill_time_seconds", false, func(o fakeupstream.Observation) float64 { return o.Finish.Prefill }},
	{"vllm:request_decode_time_seconds", false, func(o fakeupstream.Observation) float64 { return o.Finish.Decode }},
	{"vllm:request_inference_time_seconds", false, func(o fakeupstream.Observation) float64 { return o.Finish.Inference }},
	{"vllm:e2e_request_latency_seconds", false, func(o fakeupstream.Observation) float64 { return o.Finish.E2E }},
	{"vllm:request_prompt_tokens", false, func(o fakeupstream.Observation) float64 { return float64(o.Finish.PromptTokens) }},
	{"vllm:request_generation_tokens", false, func(o fakeupstream.Observation) float64 { return float64(o.Finish.GenerationTokens) }},
}

// sameValue compares a value recovered as a difference of two float sums
// with the observed one.
func sameValue(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want))
}

// metrics returns the proxy's metrics of family name whose labels
// include the given name/value pairs.
func (h *harness) metrics(name string, labels ...string) []*dto.Metric {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			out = append(out, m)
		}
	}
	return out
}

// histogramCount is the observation count of the proxy's histogram name.
func (h *harness) histogramCount(name string) uint64 {
	h.t.Helper()
	var n uint64
	for _, m := range h.metrics(name) {
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}

// counter is the sum of the proxy's counters (or gauges) of family name
// whose labels include the given name/value pairs.
func (h *harness) counter(name string, labels ...string) float64 {
	h.t.Helper()
	var total float64
	for _, m := range h.metrics(name, labels...) {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

func lint(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
