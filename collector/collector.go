// Package collector publishes what the pipeline decided: one observation
// per exactly attributed request value in the llm_request_* histograms, and
// the exporter's own delta_exporter_* metrics. It is the only place that
// touches Prometheus types; nothing in it is global.
package collector

import (
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// OtherModel is the model_name under which models beyond MaxModels are
// published.
const OtherModel = "other"

// DefaultMaxModels bounds the model_name label values.
const DefaultMaxModels = 100

// secondsBuckets are the classic buckets of the latency histograms: finer
// than vLLM's own (which start at 0.3 s for queue/prefill/decode) so that
// sub-second phases have useful quantiles without native histograms.
var secondsBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
	0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300, 600}

// tokenBuckets follow vLLM's 1-2-5 series.
var tokenBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000,
	20000, 50000, 100000, 200000, 500000, 1000000}

// Config configures a Collector.
type Config struct {
	// Registerer receives every metric. Required.
	Registerer prometheus.Registerer
	// MaxModels caps distinct model_name values; 0 means DefaultMaxModels.
	MaxModels int
	// Now is the clock for the last-ingest gauge; nil means time.Now.
	Now func() time.Time
}

// Collector owns the exporter's metrics.
type Collector struct {
	now       func() time.Time
	maxModels int

	perRequest [parser.NumMetrics]*prometheus.HistogramVec
	tpot       *prometheus.HistogramVec

	mu     sync.Mutex
	models map[string]bool

	requests         *prometheus.CounterVec
	rejections       *prometheus.CounterVec
	withheld         *prometheus.CounterVec
	snapshotsRead    prometheus.Counter
	snapshotsRejects *prometheus.CounterVec
	filesIgnored     *prometheus.CounterVec
	pending          *prometheus.GaugeVec
	lastIngest       prometheus.Gauge
	folded           prometheus.Counter
	watchEvents      *prometheus.CounterVec
	rescans          *prometheus.CounterVec
	assumptions      *prometheus.GaugeVec
}

var help = [parser.NumMetrics]string{
	parser.TTFT:             "Time to first token of each request whose value is exact, from arrival to the first output token.",
	parser.Queue:            "Time each request waited in the scheduler queue (exact values only).",
	parser.Prefill:          "Prefill time of each request (exact values only).",
	parser.Decode:           "Decode time of each request, first to last output token (exact values only).",
	parser.Inference:        "Inference time of each request, prefill plus decode (exact values only).",
	parser.E2E:              "End-to-end latency of each request as the server measured it (exact values only).",
	parser.PromptTokens:     "Prompt tokens of each request (exact values only).",
	parser.GenerationTokens: "Generated tokens of each request (exact values only).",
}

// SnapshotRejectReasons are the label values of delta_exporter_snapshots_rejected_total.
var SnapshotRejectReasons = []string{"empty", "parse_error", "incomplete", "too_large", "not_regular", "read_error", "no_families"}

// New creates the metrics and registers them on cfg.Registerer.
func New(cfg Config) (*Collector, error) {
	c := &Collector{now: cfg.Now, maxModels: cfg.MaxModels, models: map[string]bool{}}
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxModels <= 0 {
		c.maxModels = DefaultMaxModels
	}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "llm_request_" + name,
			Help:                            help,
			Buckets:                         buckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
		}, []string{"model_name"})
	}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		b := secondsBuckets
		if m.IsTokens() {
			b = tokenBuckets
		}
		c.perRequest[m] = hist(m.Name(), help[m], b)
	}
	c.tpot = hist("time_per_output_token_seconds", "Mean time per output token of each request, decode / (generation tokens - 1), when both are exact and at least 2 tokens were generated.", secondsBuckets)

	c.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_requests_total",
		Help: "Requests decided, by outcome (exact, partial, withheld, rejected, unpaired)."}, []string{"outcome"})
	c.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_request_rejections_total",
		Help: "Rejected requests, by reason."}, []string{"reason"})
	c.withheld = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_values_withheld_total",
		Help: "Per-request values not published because they could not be attributed exactly, by metric and reason."}, []string{"metric", "reason"})
	c.snapshotsRead = prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_snapshots_read_total",
		Help: "Snapshot files parsed successfully."})
	c.snapshotsRejects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_snapshots_rejected_total",
		Help: "Snapshot files not used, by reason."}, []string{"reason"})
	c.filesIgnored = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_files_ignored_total",
		Help: "Directory entries that are not snapshot files, by reason."}, []string{"reason"})
	c.pending = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "delta_exporter_pending_requests",
		Help: "Requests held: unpaired (waiting for the other half) or attributing (waiting for overlapping requests)."}, []string{"state"})
	c.lastIngest = prometheus.NewGauge(prometheus.GaugeOpts{Name: "delta_exporter_last_ingest_timestamp_seconds",
		Help: "Unix time at which the last request was decided."})
	c.folded = prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_models_folded_total",
		Help: "Observations published under model_name=\"other\" because --labels.max-models was reached."})
	c.watchEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_watch_events_total",
		Help: "Filesystem events seen on the snapshot directory, by event."}, []string{"event"})
	c.rescans = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_rescans_total",
		Help: "Full scans of the snapshot directory, by trigger."}, []string{"trigger"})

	c.assumptions = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "delta_exporter_assumptions",
		Help: "Server processes seen, by attribution assumption and what their data said of it (unchecked, confirmed, contradicted)."}, []string{"assumption", "state"})

	// Pre-create the series of bounded label sets so that rates start at 0
	// instead of appearing with the first event.
	for _, o := range attribution.Outcomes {
		c.requests.WithLabelValues(string(o))
	}
	for _, r := range attribution.RejectReasons {
		c.rejections.WithLabelValues(string(r))
	}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		for _, r := range attribution.WithheldReasons {
			c.withheld.WithLabelValues(m.Name(), string(r))
		}
	}
	for _, r := range SnapshotRejectReasons {
		c.snapshotsRejects.WithLabelValues(r)
	}
	for _, e := range []string{"create", "write", "remove", "rename", "overflow", "error"} {
		c.watchEvents.WithLabelValues(e)
	}
	for _, tr := range []string{"initial", "timer", "overflow", "error", "recreated"} {
		c.rescans.WithLabelValues(tr)
	}
	for _, a := range attribution.Assumptions() {
		for _, st := range attribution.States {
			c.assumptions.WithLabelValues(a.Name(), string(st))
		}
	}
	c.filesIgnored.WithLabelValues("name")
	c.pending.WithLabelValues("unpaired")
	c.pending.WithLabelValues("attributing")

	cs := []prometheus.Collector{c.tpot, c.requests, c.rejections, c.withheld, c.snapshotsRead,
		c.snapshotsRejects, c.filesIgnored, c.pending, c.lastIngest, c.folded, c.watchEvents, c.rescans, c.assumptions}
	for _, h := range c.perRequest {
		cs = append(cs, h)
	}
	for _, x := range cs {
		if err := cfg.Registerer.Register(x); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Publish records one decided request: its exact values as observations
// with a request_id exemplar, its outcome and the reasons of what was
// withheld.
func (c *Collector) Publish(res attribution.Result) {
	c.requests.WithLabelValues(string(res.Outcome)).Inc()
	c.lastIngest.Set(float64(c.now().UnixNano()) / 1e9)
	switch res.Outcome {
	case attribution.Rejected:
		c.rejections.WithLabelValues(string(res.RejectReason)).Inc()
		return
	case attribution.Unpaired:
		return
	}
	for m, v := range res.Values {
		if !v.Exact && v.Reason != attribution.ReasonAbsent {
			c.withheld.WithLabelValues(parser.Metric(m).Name(), string(v.Reason)).Inc()
		}
	}
	if res.Outcome == attribution.Withheld {
		return
	}
	model := c.modelLabel(res.Model)
	ex := prometheus.Labels{"request_id": ExemplarID(res.RequestID)}
	observe := func(h *prometheus.HistogramVec, v float64) {
		h.WithLabelValues(model).(prometheus.ExemplarObserver).ObserveWithExemplar(v, ex)
	}
	for m, v := range res.Values {
		if v.Exact {
			observe(c.perRequest[m], v.V)
		}
	}
	if res.TPOT.Exact {
		observe(c.tpot, res.TPOT.V)
	}
}

// modelLabel bounds the model_name values: model names are input.
func (c *Collector) modelLabel(model string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.models[model] {
		return model
	}
	if len(c.models) < c.maxModels && model != OtherModel {
		c.models[model] = true
		return model
	}
	c.folded.Inc()
	return OtherModel
}

// maxExemplarRunes is what an exemplar's labels may hold in total
// (OpenMetrics), less the label name.
const maxExemplarRunes = 128 - len("request_id")

// ExemplarID makes a request id safe as an exemplar label value: valid
// UTF-8 and within the exemplar size limit (the head is kept: ids are
// prefixes like chatcmpl- followed by a unique part, so a long id is
// trimmed and marked with a trailing '~').
func ExemplarID(id string) string {
	id = strings.ToValidUTF8(id, "\uFFFD")
	if utf8.RuneCountInString(id) <= maxExemplarRunes {
		return id
	}
	r := []rune(id)
	return string(r[:maxExemplarRunes-1]) + "~"
}

// SnapshotRead counts a parsed snapshot file.
func (c *Collector) SnapshotRead() { c.snapshotsRead.Inc() }

// SnapshotRejected counts an unusable snapshot file by reason (one of
// SnapshotRejectReasons). The file name and error are logged by the
// ingester, never used as labels.
func (c *Collector) SnapshotRejected(_, reason string, _ error) {
	c.snapshotsRejects.WithLabelValues(reason).Inc()
}

// FileIgnored counts a directory entry that is not a snapshot.
func (c *Collector) FileIgnored(reason string) { c.filesIgnored.WithLabelValues(reason).Inc() }

// SetPending sets the number of held requests in a state (unpaired, attributing).
func (c *Collector) SetPending(state string, n int) { c.pending.WithLabelValues(state).Set(float64(n)) }

// WatchEvent counts a filesystem event (create, write, remove, rename, overflow, error).
func (c *Collector) WatchEvent(event string) { c.watchEvents.WithLabelValues(event).Inc() }

// Rescan counts a full directory scan by trigger (initial, timer, overflow, error).
func (c *Collector) Rescan(trigger string) { c.rescans.WithLabelValues(trigger).Inc() }

// SetAssumptions shows what the data said about each server process's
// attribution assumptions: per assumption and state, how many processes
// are in it (ingest.AssumptionPublisher). Labels are a fixed set.
func (c *Collector) SetAssumptions(servers []attribution.ServerAssumptions) {
	n := map[[2]string]int{}
	for _, sa := range servers {
		for _, st := range sa.Status {
			n[[2]string{st.Assumption.Name(), string(st.State)}]++
		}
	}
	for _, a := range attribution.Assumptions() {
		for _, st := range attribution.States {
			c.assumptions.WithLabelValues(a.Name(), string(st)).Set(float64(n[[2]string{a.Name(), string(st)}]))
		}
	}
}
