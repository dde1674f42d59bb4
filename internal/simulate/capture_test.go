package simulate

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// TestCaptureLayout: with Capture, every snapshot carries its scrape start
// before its name time, each request has one info sidecar whose times are
// in causal order around the server's, and only streams get a first.
func TestCaptureLayout(t *testing.T) {
	cfg := Config{Seed: 7, Requests: 200, MeanInFlight: 4, FirstSnapshots: true,
		TimelineInterval: 50 * time.Millisecond, Capture: true, NonStreaming: 0.5, ObserveDelay: 3 * time.Millisecond}
	var sink MemSink
	truths, err := Run(cfg, &sink)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Truth{}
	for _, tr := range truths {
		byID[tr.RequestID] = tr
	}
	infos, firsts, stream := map[string]bool{}, map[string]bool{}, map[string]bool{}
	streams := 0
	for _, f := range sink.Files() {
		n, err := parser.ParseName(f.Name)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if n.Stage != parser.Info {
			snap, err := parser.Scan(f.Body)
			if err != nil {
				t.Fatalf("%s: %v", f.Name, err)
			}
			if snap.ScrapeStarted.IsZero() || !snap.ScrapeStarted.Before(n.Time) {
				t.Fatalf("%s: scrape started %v, named %v", f.Name, snap.ScrapeStarted, n.Time)
			}
			if n.Stage == parser.First {
				firsts[n.RequestID] = true
			}
			continue
		}
		var info struct {
			Stream   bool
			Received time.Time `json:"received_at"`
			First    time.Time `json:"first_byte_at"`
			Last     time.Time `json:"last_byte_at"`
		}
		if err := json.Unmarshal(f.Body, &info); err != nil {
			t.Fatal(err)
		}
		tr, ok := byID[n.RequestID]
		if !ok || infos[n.RequestID] {
			t.Fatalf("%s: unknown or repeated request", f.Name)
		}
		infos[n.RequestID] = true
		if info.Stream {
			streams++
		}
		if !info.Received.Before(tr.Arrival) || !info.Last.After(tr.Finish) || info.First.After(info.Last) ||
			(info.Stream && !info.First.After(tr.FirstToken)) || (!info.Stream && !info.First.Equal(info.Last)) {
			t.Errorf("%s: proxy times %v %v %v around arrival %v first token %v finish %v",
				n.RequestID, info.Received, info.First, info.Last, tr.Arrival, tr.FirstToken, tr.Finish)
		}
		stream[n.RequestID] = info.Stream
	}
	for id, s := range stream {
		if firsts[id] != s {
			t.Errorf("%s: stream %v but first snapshot %v", id, s, firsts[id])
		}
	}
	if len(infos) != len(truths) || streams < 70 || streams > 130 {
		t.Errorf("%d infos for %d requests, %d streams", len(infos), len(truths), streams)
	}
}

// TestServerMetricsObject: with ServerMetrics, every info sidecar carries
// the per-request object, agreeing with the truth within its rounding.
func TestServerMetricsObject(t *testing.T) {
	cfg := Config{Seed: 3, Requests: 50, MeanInFlight: 2, Capture: true, ServerMetrics: true}
	var sink MemSink
	truths, err := Run(cfg, &sink)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Truth{}
	for _, tr := range truths {
		byID[tr.RequestID] = tr
	}
	n := 0
	for _, f := range sink.Files() {
		name, err := parser.ParseName(f.Name)
		if err != nil || name.Stage != parser.Info {
			continue
		}
		var info struct {
			M map[string]float64 `json:"server_metrics"`
		}
		if err := json.Unmarshal(f.Body, &info); err != nil {
			t.Fatal(err)
		}
		tr := byID[name.RequestID]
		if d := info.M["queue_time_ms"] - 1000*tr.Queue; d < -0.0005 || d > 0.0005 {
			t.Errorf("%s: queue_time_ms %v, truth %v s", name.RequestID, info.M["queue_time_ms"], tr.Queue)
		}
		if d := info.M["time_to_first_token_ms"] - 1000*tr.Prefill; d < -0.0005 || d > 0.0005 {
			t.Errorf("%s: time_to_first_token_ms %v, truth prefill %v s", name.RequestID, info.M["time_to_first_token_ms"], tr.Prefill)
		}
		n++
	}
	if n != len(truths) {
		t.Errorf("%d objects for %d requests", n, len(truths))
	}
}
