package fakeupstream

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// histCount returns the count of a histogram family summed over series.
func histCount(t *testing.T, base, name string) (count uint64, sum float64) {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	for _, m := range f.GetMetric() {
		count += m.GetHistogram().GetSampleCount()
		sum += m.GetHistogram().GetSampleSum()
	}
	return count, sum
}

const (
	ttftFam = "vllm:time_to_first_token_seconds"
	e2eFam  = "vllm:e2e_request_latency_seconds"
)

// TestStreamObservationOrder checks the vLLM V1 order: TTFT is observed
// before the first chunk reaches the client, the finish histograms before
// the chunk carrying the finish reason.
func TestStreamObservationOrder(t *testing.T) {
	fake := New(Config{Plan: func(*Request) Plan {
		return Plan{Prefill: 3 * time.Millisecond, Decode: 6 * time.Millisecond, PromptTokens: 11, GenerationTokens: 4}
	}})
	srv := httptest.NewServer(fake)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"messages":[{"content":"a b c"}],"stream":true,"stream_options":{"include_usage":true}}`))
	req.Header.Set("X-Request-Id", "abc")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	var events []map[string]any
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			break
		}
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			break
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("bad event %q: %v", data, err)
		}
		events = append(events, ev)
		ttft, _ := histCount(t, srv.URL, ttftFam)
		e2e, _ := histCount(t, srv.URL, e2eFam)
		if ttft != 1 {
			t.Fatalf("event %d reached the client before TTFT was observed", len(events))
		}
		choices, _ := ev["choices"].([]any)
		final := len(choices) == 1 && choices[0].(map[string]any)["finish_reason"] != nil
		if final && e2e != 1 {
			t.Fatalf("finish chunk reached the client before the finish observation")
		}
	}
	// role+token 1, tokens 2 and 3, token 4 with the finish reason, usage.
	if len(events) != 5 {
		t.Fatalf("got %d events, want 5", len(events))
	}
	for _, ev := range events {
		if ev["id"] != "chatcmpl-abc" {
			t.Fatalf("id %v, want chatcmpl-abc (from X-Request-Id)", ev["id"])
		}
	}
	usage := events[4]["usage"].(map[string]any)
	if usage["prompt_tokens"] != 11.0 || usage["completion_tokens"] != 4.0 {
		t.Fatalf("usage %v", usage)
	}
	o, ok := fake.Observation("chatcmpl-abc")
	if !ok || !o.Finished || !o.HasTTFT || o.TTFTSeq != 1 || o.FinishSeq != 1 {
		t.Fatalf("observation %+v", o)
	}
	f := o.Finish
	if f.Prefill < 0.003 || f.Decode < 0.006 || f.PromptTokens != 11 || f.GenerationTokens != 4 {
		t.Fatalf("finish %+v does not follow the plan", f)
	}
	if math.Abs(f.Inference-(f.Prefill+f.Decode)) > 1e-9 || f.E2E < f.Queue+f.Inference || o.TTFT < f.Prefill {
		t.Fatalf("finish %+v breaks vLLM's relations", f)
	}
	_, sum := histCount(t, srv.URL, e2eFam)
	if sum != f.E2E {
		t.Fatalf("e2e histogram sum %v, recorded %v", sum, f.E2E)
	}
}

func TestNonStreamAndMetricsObject(t *testing.T) {
	fake := New(Config{PerRequestMetrics: true})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":"one two three","max_tokens":3,"include_metrics":true}`))
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		ID    string
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		}
		Metrics map[string]float64
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(body.ID, "cmpl-") {
		t.Fatalf("id %q", body.ID)
	}
	// DefaultPlan: a prompt token per word plus 8.
	if body.Usage.PromptTokens != 11 || body.Usage.CompletionTokens != 3 {
		t.Fatalf("usage %+v", body.Usage)
	}
	o, _ := fake.Observation(body.ID)
	if got := body.Metrics["time_to_first_token_ms"]; math.Abs(got-o.TTFT*1000) > 1e-9 {
		t.Fatalf("metrics ttft %v, observed %v s", got, o.TTFT)
	}
}

func TestAbortMakesNoFinishObservation(t *testing.T) {
	done := make(chan Observation, 1)
	fake := New(Config{
		Plan:   func(*Request) Plan { return Plan{Decode: time.Hour, GenerationTokens: 3} },
		OnDone: func(o Observation) { done <- o },
	})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	o := <-done
	if !o.Aborted || o.Finished || !o.HasTTFT {
		t.Fatalf("observation %+v: want aborted after the first token, not finished", o)
	}
	if n, _ := histCount(t, srv.URL, e2eFam); n != 0 {
		t.Fatalf("e2e count %d after an abort", n)
	}
}

func TestMetricsFaults(t *testing.T) {
	fake := New(Config{})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	fake.SetMetricsFault(MetricsFault{Status: 503})
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	fake.SetMetricsFault(MetricsFault{Truncate: true})
	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("a truncated body read without error")
	}
	fake.SetMetricsFault(MetricsFault{})
	if n, _ := histCount(t, srv.URL, e2eFam); n != 0 {
		t.Fatalf("count %d", n)
	}
	if fake.Scrapes() != 3 {
		t.Fatalf("scrapes %d, want 3", fake.Scrapes())
	}
}

// TestAfter: waits made in any order end in order of their due times,
// none before it is due.
func TestAfter(t *testing.T) {
	start := time.Now()
	type w struct {
		due  time.Time
		done <-chan struct{}
	}
	var ws []w
	for i := range 40 {
		due := start.Add(time.Duration((i*7)%40) * 500 * time.Microsecond)
		ws = append(ws, w{due, after(due)})
	}
	for _, x := range ws {
		select {
		case <-x.done:
			if now := time.Now(); now.Before(x.due) {
				t.Fatalf("a wait due at +%v ended at +%v", x.due.Sub(start), now.Sub(start))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("a wait due at +%v never ended", x.due.Sub(start))
		}
	}
	// A wait already due ends at once.
	select {
	case <-after(time.Now().Add(-time.Second)):
	case <-time.After(10 * time.Second):
		t.Fatal("a past wait never ended")
	}
}
