package parser

import "time"

// Bucket is one cumulative histogram bucket.
type Bucket struct {
	UpperBound float64
	Count      float64
}

// Series is one histogram series of a per-request source family: one
// (model, engine, ...) label set.
type Series struct {
	Metric Metric
	// Labels is the series identity: every label except le, as
	// name="value" pairs sorted by name and joined by ','. Values are kept
	// as escaped in the file.
	Labels string
	// Model is the unescaped value of the model_name label (SGLang's first
	// version: name), "" if absent.
	Model   string
	Count   float64
	Sum     float64
	Buckets []Bucket // sorted by UpperBound, cumulative; the last is +Inf when present
}

// Snapshot is what the exporter keeps of one scrape.
type Snapshot struct {
	// ProcessStartTime is process_start_time_seconds; HasProcessStartTime
	// is false when the scrape has none (multiprocess mode).
	ProcessStartTime    float64
	HasProcessStartTime bool
	Series              []Series
	// ScrapeStarted is when capture started the scrape (its first line,
	// ScrapeStartedPrefix); zero for files not written by capture.
	ScrapeStarted time.Time
}
