package simulate

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Truth is what one simulated request really was: the values the server
// observed for it, and when.
type Truth struct {
	RequestID string `json:"request_id"`
	Model     string `json:"model"`
	Engine    int    `json:"engine"`

	// Seconds, exactly the values passed to the server's histograms.
	TTFT      float64 `json:"ttft"`
	Queue     float64 `json:"queue"`
	Prefill   float64 `json:"prefill"`
	Decode    float64 `json:"decode"`
	Inference float64 `json:"inference"`
	E2E       float64 `json:"e2e"`

	PromptTokens     int `json:"prompt_tokens"`
	GenerationTokens int `json:"generation_tokens"`

	// Arrival is when the request reached the server (vLLM's arrival_time:
	// TTFT and E2E are measured from it). FirstToken and Finish are the
	// moments the server observed the TTFT and the finish-time histograms.
	Arrival    time.Time `json:"arrival"`
	FirstToken time.Time `json:"first_token"`
	Finish     time.Time `json:"finish"`

	// BeforeScrape and AfterScrape are the moments of the request's before
	// and after snapshots (the names carry them truncated to microseconds).
	BeforeScrape time.Time `json:"before_scrape"`
	AfterScrape  time.Time `json:"after_scrape"`

	// Missing names the metrics (parser.Metric.Name) the server never
	// observed for this request: its style has no such family, it
	// observes it only for some requests, or it dropped the observation.
	// A value published for one of them is wrong.
	Missing []string `json:"missing,omitempty"`
}

// Observed reports whether the server observed metric m for the request.
func (t Truth) Observed(m parser.Metric) bool {
	for _, n := range t.Missing {
		if n == m.Name() {
			return false
		}
	}
	return true
}

// WriteTruth writes ts as a JSON array, one request per line. Floats are
// written in their shortest round-trip form, so ReadTruth gives back the
// exact values.
func WriteTruth(w io.Writer, ts []Truth) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("[")
	for i, t := range ts {
		b, err := json.Marshal(t)
		if err != nil {
			return fmt.Errorf("write truth: %w", err)
		}
		if i > 0 {
			bw.WriteString(",")
		}
		bw.WriteString("\n")
		bw.Write(b)
	}
	bw.WriteString("\n]\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write truth: %w", err)
	}
	return nil
}

// ReadTruth reads what WriteTruth wrote.
func ReadTruth(r io.Reader) ([]Truth, error) {
	var ts []Truth
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ts); err != nil {
		return nil, fmt.Errorf("read truth: %w", err)
	}
	return ts, nil
}

// MeasuredInFlight is the time-averaged number of requests in flight
// (between Arrival and Finish) over the span of the run: the sum of the
// requests' durations divided by the time from the first arrival to the
// last finish.
func MeasuredInFlight(ts []Truth) float64 {
	if len(ts) == 0 {
		return 0
	}
	first, last := ts[0].Arrival, ts[0].Finish
	var busy time.Duration
	for _, t := range ts {
		if t.Arrival.Before(first) {
			first = t.Arrival
		}
		if t.Finish.After(last) {
			last = t.Finish
		}
		busy += t.Finish.Sub(t.Arrival)
	}
	span := last.Sub(first)
	if span <= 0 {
		return 0
	}
	return float64(busy) / float64(span)
}

// Value is the request's true value of metric m, in the units the
// exporter publishes (seconds, or tokens).
func (t Truth) Value(m parser.Metric) float64 {
	return [parser.NumMetrics]float64{
		parser.TTFT: t.TTFT, parser.Queue: t.Queue, parser.Prefill: t.Prefill, parser.Decode: t.Decode,
		parser.Inference: t.Inference, parser.E2E: t.E2E,
		parser.PromptTokens: float64(t.PromptTokens), parser.GenerationTokens: float64(t.GenerationTokens),
	}[m]
}
