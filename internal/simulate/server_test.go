package simulate

import (
	"bytes"
	"flag"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// parseScrape parses a scrape with the reference text parser.
func parseScrape(t testing.TB, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("scrape does not parse: %v", err)
	}
	return fams
}

// checkHistograms asserts the invariants of every histogram: cumulative
// buckets, +Inf bucket == _count.
func checkHistograms(t testing.TB, fams map[string]*dto.MetricFamily) {
	t.Helper()
	for name, f := range fams {
		if f.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			prev := uint64(0)
			for _, b := range h.GetBucket() {
				if b.GetCumulativeCount() < prev {
					t.Errorf("%s %v: buckets not cumulative", name, m.GetLabel())
				}
				prev = b.GetCumulativeCount()
			}
			bs := h.GetBucket()
			if len(bs) == 0 || !math.IsInf(bs[len(bs)-1].GetUpperBound(), 1) {
				t.Errorf("%s %v: no +Inf bucket", name, m.GetLabel())
			} else if c := bs[len(bs)-1].GetCumulativeCount(); c != h.GetSampleCount() {
				t.Errorf("%s %v: +Inf bucket %d != count %d", name, m.GetLabel(), c, h.GetSampleCount())
			}
		}
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// findHist returns the histogram of family name with the given labels.
func findHist(t testing.TB, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Histogram {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("family %s missing", name)
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range labels {
			if labelValue(m, k) != v {
				continue next
			}
		}
		return m.GetHistogram()
	}
	t.Fatalf("%s%v missing", name, labels)
	return nil
}

func TestServerScrapeParses(t *testing.T) {
	models := []string{"Qwen/Qwen3-8B", `/models/llama "3"\8b/`}
	for _, style := range []Style{V1, V1NoEngine, V0Multiproc} {
		for _, padding := range []bool{false, true} {
			t.Run(style.String()+map[bool]string{false: "", true: "-padding"}[padding], func(t *testing.T) {
				s := NewServer(ServerConfig{Models: models, Engines: 2, Padding: padding, Style: style})
				fams := parseScrape(t, s.AppendText(nil))
				checkHistograms(t, fams)
				s.ObserveFirstToken(models[1], 1, 0.25)
				s.ObserveFinish(models[1], 1, Finish{Queue: 0.5, Prefill: 0.2, Decode: 3, Inference: 3.2, E2E: 3.8, PromptTokens: 1234, GenerationTokens: 100, MaxTokens: 2048})
				s.ObserveFinish(models[0], 0, Finish{Queue: 0.001, Prefill: 0.05, Decode: 0, Inference: 0.05, E2E: 0.06, PromptTokens: 20, GenerationTokens: 1, FinishedReason: "length"})
				s.SetLoad(models[0], 1, Load{Running: 3, Waiting: 1, KVCacheUsage: 0.25})
				fams = parseScrape(t, s.AppendText(nil))
				checkHistograms(t, fams)

				want := map[string]string{"model_name": models[1]}
				if style == V1 {
					want["engine"] = "1"
				}
				e2e := findHist(t, fams, "vllm:e2e_request_latency_seconds", want)
				if e2e.GetSampleCount() != 1 || e2e.GetSampleSum() != 3.8 {
					t.Errorf("e2e count/sum = %d/%v, want 1/3.8", e2e.GetSampleCount(), e2e.GetSampleSum())
				}
				ttft := findHist(t, fams, "vllm:time_to_first_token_seconds", want)
				if ttft.GetSampleCount() != 1 || ttft.GetSampleSum() != 0.25 {
					t.Errorf("ttft count/sum = %d/%v", ttft.GetSampleCount(), ttft.GetSampleSum())
				}
				// 1234 prompt tokens fall in the (1000, 2000] bucket.
				pt := findHist(t, fams, "vllm:request_prompt_tokens", want)
				for _, b := range pt.GetBucket() {
					wantC := uint64(0)
					if b.GetUpperBound() >= 2000 {
						wantC = 1
					}
					if b.GetCumulativeCount() != wantC {
						t.Errorf("prompt tokens bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), wantC)
					}
				}
				_, hasStart := fams["process_start_time_seconds"]
				if hasStart != (style != V0Multiproc) {
					t.Errorf("process_start_time_seconds present = %v", hasStart)
				}
				_, hasGC := fams["python_gc_objects_collected_total"]
				if hasGC != (padding && style != V0Multiproc) {
					t.Errorf("python_gc present = %v", hasGC)
				}
				_, hasCreated := fams["vllm:e2e_request_latency_seconds_created"]
				if hasCreated != (style != V0Multiproc) {
					t.Errorf("_created present = %v", hasCreated)
				}
				succ := fams["vllm:request_success_total"]
				var length float64
				for _, m := range succ.GetMetric() {
					if labelValue(m, "finished_reason") == "length" {
						length += m.GetCounter().GetValue()
					}
				}
				if length != 1 {
					t.Errorf("request_success_total{finished_reason=length} = %v, want 1", length)
				}
			})
		}
	}
}

// TestScrapeLayout checks the raw text: +Inf bucket == _count for every
// series, le in the middle of the label set, and the multiprocess layout.
func TestScrapeLayout(t *testing.T) {
	for _, style := range []Style{V1, V1NoEngine, V0Multiproc} {
		t.Run(style.String(), func(t *testing.T) {
			s := NewServer(ServerConfig{Models: []string{"a", "b"}, Engines: 2, Padding: true, Style: style})
			feedRandom(s, []string{"a", "b"}, 2, 50, 1)
			text := string(s.AppendText(nil))
			inf := map[string]string{}
			counts := map[string]string{}
			sawSum := map[string]bool{}
			var sumsFirst = true
			for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
				if strings.HasPrefix(line, "#") {
					continue
				}
				sp := strings.LastIndexByte(line, ' ')
				series, val := line[:sp], line[sp+1:]
				name := series
				if i := strings.IndexByte(series, '{'); i >= 0 {
					name = series[:i]
				}
				switch {
				case strings.HasSuffix(name, "_bucket") && strings.Contains(series, `le="+Inf"`):
					id := strings.TrimSuffix(name, "_bucket") + stripLe(series[len(name):])
					inf[id] = val
					if sawSum[strings.TrimSuffix(name, "_bucket")] == false && style == V0Multiproc {
						sumsFirst = false
					}
				case strings.HasSuffix(name, "_count"):
					counts[strings.TrimSuffix(name, "_count")+series[len(name):]] = val
				case strings.HasSuffix(name, "_sum"):
					sawSum[strings.TrimSuffix(name, "_sum")] = true
				}
				if style == V1 && strings.HasSuffix(name, "_bucket") && strings.HasPrefix(name, "vllm:") &&
					!strings.Contains(series, `{engine="`) {
					t.Fatalf("le not after engine: %s", line)
				}
			}
			if len(inf) < 10 {
				t.Fatalf("only %d histogram series found", len(inf))
			}
			for id, v := range inf {
				if counts[id] != v {
					t.Errorf("%s: +Inf bucket %s != _count %s", id, v, counts[id])
				}
			}
			if style == V0Multiproc && !sumsFirst {
				t.Errorf("multiprocess layout: a histogram's buckets came before its _sum lines")
			}
		})
	}
}

func stripLe(labels string) string {
	i := strings.Index(labels, `le="`)
	j := strings.Index(labels[i+4:], `"`) + i + 4
	out := labels[:i] + labels[j+1:]
	out = strings.Replace(out, ",,", ",", 1)
	out = strings.Replace(out, "{,", "{", 1)
	out = strings.Replace(out, ",}", "}", 1)
	if out == "{}" {
		return ""
	}
	return out
}

func TestServerSumDelta(t *testing.T) {
	// The per-request value is recovered exactly from the _sum delta, to
	// float rounding of the running sum.
	s := NewServer(ServerConfig{})
	feedRandom(s, []string{DefaultModel}, 1, 3000, 7)
	before := parseScrape(t, s.AppendText(nil))
	f := Finish{Queue: 0.0123, Prefill: 0.456, Decode: 7.89, Inference: 0.456 + 7.89, E2E: 8.5, PromptTokens: 777, GenerationTokens: 321}
	s.ObserveFinish(DefaultModel, 0, f)
	after := parseScrape(t, s.AppendText(nil))
	l := map[string]string{"model_name": DefaultModel, "engine": "0"}
	for name, want := range map[string]float64{
		"vllm:request_queue_time_seconds":     f.Queue,
		"vllm:request_prefill_time_seconds":   f.Prefill,
		"vllm:request_decode_time_seconds":    f.Decode,
		"vllm:request_inference_time_seconds": f.Inference,
		"vllm:e2e_request_latency_seconds":    f.E2E,
		"vllm:request_prompt_tokens":          777,
		"vllm:request_generation_tokens":      321,
	} {
		b, a := findHist(t, before, name, l), findHist(t, after, name, l)
		if d := a.GetSampleCount() - b.GetSampleCount(); d != 1 {
			t.Errorf("%s count delta %d", name, d)
		}
		if d := a.GetSampleSum() - b.GetSampleSum(); math.Abs(d-want) > 1e-9 {
			t.Errorf("%s sum delta %v, want %v", name, d, want)
		}
	}
}

func TestServerConcurrent(t *testing.T) {
	s := NewServer(ServerConfig{Engines: 2, Padding: true})
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 200 {
				s.ObserveFirstToken(DefaultModel, g%2, 0.1)
				s.ObserveFinish(DefaultModel, g%2, Finish{E2E: 1, GenerationTokens: i%5 + 1})
				s.SetLoad(DefaultModel, g%2, Load{Running: i % 3})
				var buf bytes.Buffer
				if _, err := s.WriteTo(&buf); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	fams := parseScrape(t, s.AppendText(nil))
	var n uint64
	for _, m := range fams["vllm:e2e_request_latency_seconds"].GetMetric() {
		n += m.GetHistogram().GetSampleCount()
	}
	if n != 800 {
		t.Errorf("e2e count = %d, want 800", n)
	}
}

func TestServeHTTP(t *testing.T) {
	s := NewServer(ServerConfig{})
	s.ObserveFinish(DefaultModel, 0, Finish{E2E: 2})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	fams := parseScrape(t, rec.Body.Bytes())
	if h := findHist(t, fams, "vllm:e2e_request_latency_seconds", map[string]string{"engine": "0"}); h.GetSampleSum() != 2 {
		t.Errorf("e2e sum %v, want 2", h.GetSampleSum())
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", rec.Code)
	}
}

func TestBuild125Buckets(t *testing.T) {
	got := build125Buckets(40960)
	want := []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v", got)
		}
	}
	if got := build125Buckets(2000); got[len(got)-1] != 2000 {
		t.Errorf("max bound not included: %v", got)
	}
}

// feedRandom makes n plausible requests, spread over models and engines.
func feedRandom(s *Server, models []string, engines, n int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := range n {
		m, e := models[i%len(models)], rng.IntN(engines)
		prompt := 20 + rng.IntN(4000)
		gen := 1 + rng.IntN(1000)
		if rng.IntN(10) == 0 {
			gen = 1
		}
		q := 0.002 + rng.ExpFloat64()*0.05
		pre := float64(prompt)/6000 + 0.01
		dec := float64(gen-1) * (0.015 + 0.01*rng.Float64())
		tok := 0.002 + 0.001*rng.Float64()
		s.ObserveFirstToken(m, e, tok+q+pre)
		reason := "stop"
		if rng.IntN(20) == 0 {
			reason = "length"
		}
		s.ObserveFinish(m, e, Finish{Queue: q, Prefill: pre, Decode: dec, Inference: pre + dec, E2E: tok + q + pre + dec + 0.001,
			PromptTokens: prompt, GenerationTokens: gen, FinishedReason: reason, MaxTokens: []int{0, 1024, 4096}[i%3]})
	}
}

// TestRealisticFixtures writes (with -update) and checks the shipped
// realistic scrapes in ../../testdata/realistic. Other packages benchmark
// their parsers on them.
func TestRealisticFixtures(t *testing.T) {
	start := time.Date(2025, 11, 3, 8, 12, 45, 570_000_000, time.UTC)
	fixtures := []struct {
		file    string
		cfg     ServerConfig
		n       int
		minSize int
	}{
		{"vllm-v1-34k.prom", ServerConfig{Models: []string{DefaultModel}, Engines: 1, Padding: true, StartTime: start}, 4217, 30000},
		{"vllm-v1-2engines-2models.prom", ServerConfig{Models: []string{"Qwen/Qwen3-8B", "/data/models/Llama-3.1-8B-Instruct/"}, Engines: 2, Padding: true, StartTime: start}, 9000, 60000},
		{"vllm-v0-multiproc.prom", ServerConfig{Models: []string{"Qwen/Qwen2.5-Coder-1.5B-Instruct", "sql-lora"}, Style: V0Multiproc, Padding: true, StartTime: start}, 2500, 20000},
	}
	for i, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			s := NewServer(fx.cfg)
			feedRandom(s, s.cfg.Models, s.cfg.Engines, fx.n, uint64(100+i))
			for j, m := range s.cfg.Models {
				for e := range s.cfg.Engines {
					s.SetLoad(m, e, Load{Running: 2 + j + e, Waiting: e, KVCacheUsage: 0.0317 * float64(1+j+e)})
				}
			}
			s.SetTime(start.Add(6*time.Hour + 17*time.Minute))
			got := s.AppendText(nil)
			path := filepath.Join("..", "..", "testdata", "realistic", fx.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./simulate -run TestRealisticFixtures -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the generated scrape; rerun with -update if the change is intended", path)
			}
			if len(got) < fx.minSize {
				t.Errorf("%s is %d bytes, want >= %d", fx.file, len(got), fx.minSize)
			}
			checkHistograms(t, parseScrape(t, got))
		})
	}
}

func BenchmarkAppendText(b *testing.B) {
	s := NewServer(ServerConfig{Padding: true})
	feedRandom(s, []string{DefaultModel}, 1, 3000, 3)
	buf := s.AppendText(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendText(buf[:0])
	}
}
