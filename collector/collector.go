// Package collector publishes what the pipeline decided: one observation
// per exactly attributed request value in the llm_request_* histograms, and
// the exporter's own delta_exporter_* metrics. It is the only place that
// touches Prometheus types; nothing in it is global.
//
// What it holds: the metric vectors of each part of the pipeline, created
// and registered on the Registerer it is given, and the methods that part
// reports through. Collector takes the decided requests (Publish, the
// ingester's results callback) and is ingest.Metrics and watch.Counter;
// StateMetrics is state.Metrics; RetentionMetrics is retention.Metrics;
// SLOMetrics counts the objectives' verdicts. The label values of every
// vector fed by the pipeline come from the lists of the package that
// reports them (attribution.Outcomes, snapfile.RejectReasons,
// watch.Triggers, ...), and every series is created at 0 from them.
//
// Why Collector is not itself a prometheus.Collector that reads state at
// scrape time, as node_exporter's collectors are: a per-request value is
// an event (one observation, with the request's id as its exemplar) that
// no state kept afterwards could reproduce, so it is recorded when the
// request is decided, by the one goroutine that owns the ingester. The
// population families are the exception, and are one: they are read
// from state (population.Population) at each scrape (PopulationMetrics).
package collector

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/internal/watch"
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

// DefaultMaxExemplars is the default of Config.MaxExemplars.
const DefaultMaxExemplars = 100

// exemplarKeepNewest makes client_golang evict the oldest native exemplar
// when a histogram holds MaxExemplars: any negative TTL does, except -1ns,
// which disables native exemplars altogether.
const exemplarKeepNewest = -time.Second

// Config configures a Collector.
type Config struct {
	// Registerer receives every metric. Required.
	Registerer prometheus.Registerer
	// MaxModels caps distinct model_name values; 0 means DefaultMaxModels.
	MaxModels int
	// MaxExemplars is how many exemplars each native histogram series
	// (one family, one model) keeps between scrapes; 0 means
	// DefaultMaxExemplars. Size it to the peak number of requests decided
	// per model in one scrape interval: a request beyond it pushes out the
	// oldest exemplar, which Prometheus then never sees.
	MaxExemplars int
	// Now is the clock for the start-time and last-ingest gauges; nil
	// means time.Now.
	Now func() time.Time
}

// Collector owns the exporter's metrics.
type Collector struct {
	now       func() time.Time
	maxModels int

	perRequest [parser.NumMetrics]*prometheus.HistogramVec
	tpot       *prometheus.HistogramVec
	// proxyTTFT and proxyE2E are client-side: what capture measured.
	proxyTTFT, proxyE2E *prometheus.HistogramVec

	mu     sync.Mutex
	models map[string]bool

	requests         *prometheus.CounterVec
	rejections       *prometheus.CounterVec
	withheld         *prometheus.CounterVec
	snapshotsRead    prometheus.Counter
	snapshotsFuture  prometheus.Counter
	snapshotsRejects *prometheus.CounterVec
	filesIgnored     *prometheus.CounterVec
	pending          *prometheus.GaugeVec
	lastIngest       prometheus.Gauge
	startTime        prometheus.Gauge
	folded           prometheus.Counter
	truncated        prometheus.Counter
	watchEvents      *prometheus.CounterVec
	rescans          *prometheus.CounterVec
	assumptions      *prometheus.GaugeVec

	// unpaired and attributing are pending's two series: the two counts
	// of ingest.Metrics.SetPending.
	unpaired, attributing prometheus.Gauge
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

// New creates the metrics and registers them on cfg.Registerer.
func New(cfg Config) (*Collector, error) {
	c := &Collector{now: cfg.Now, maxModels: cfg.MaxModels, models: map[string]bool{}}
	if c.now == nil {
		c.now = time.Now
	}
	if c.maxModels <= 0 {
		c.maxModels = DefaultMaxModels
	}
	maxExemplars := cfg.MaxExemplars
	if maxExemplars <= 0 {
		maxExemplars = DefaultMaxExemplars
	}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            "llm_request_" + name,
			Help:                            help,
			Buckets:                         buckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour,
			// The default (10 exemplars, evicted by proximity after 5 min)
			// drops most of a burst of decisions before Prometheus
			// scrapes them; keep the newest MaxExemplars instead.
			NativeHistogramMaxExemplars: maxExemplars,
			NativeHistogramExemplarTTL:  exemplarKeepNewest,
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
	c.proxyTTFT = hist("proxy_time_to_first_token_seconds", "Client-side time to first token of each streaming request, as the capture proxy saw it: from receiving the request to relaying the first response byte. Every request capture relayed whole, whatever the attribution decided.", secondsBuckets)
	c.proxyE2E = hist("proxy_e2e_seconds", "Client-side end-to-end latency of each request, as the capture proxy saw it: from receiving the request to relaying the last response byte. Every request capture relayed whole, whatever the attribution decided.", secondsBuckets)

	c.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_requests_total",
		Help: "Requests decided, by outcome (exact, partial, withheld, rejected, unpaired)."}, []string{"outcome"})
	c.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_request_rejections_total",
		Help: "Rejected requests, by reason."}, []string{"reason"})
	c.withheld = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_values_withheld_total",
		Help: "Per-request values not published because they could not be attributed exactly, by metric and reason."}, []string{"metric", "reason"})
	c.snapshotsRead = prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_snapshots_read_total",
		Help: "Snapshot files parsed successfully."})
	c.snapshotsFuture = prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_snapshots_future_dated_total",
		Help: "Snapshot files dated more than 100ms ahead of the exporter's clock (the writer's or the volume's clock is ahead), once per file: read once they have not changed for --snapshot.settle on the exporter's clock."})
	c.snapshotsRejects = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_snapshots_rejected_total",
		Help: "Snapshot files not used, by reason."}, []string{"reason"})
	c.filesIgnored = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_files_ignored_total",
		Help: "Directory entries not used, by reason: name (not a snapshot name), changed (a snapshot that changed after it was read; the change is ignored, counted once per file)."}, []string{"reason"})
	c.pending = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "delta_exporter_pending_requests",
		Help: "Requests held: unpaired (waiting for the other half) or attributing (waiting for overlapping requests)."}, []string{"state"})
	c.lastIngest = prometheus.NewGauge(prometheus.GaugeOpts{Name: "delta_exporter_last_ingest_timestamp_seconds",
		Help: "Unix time at which the last request was decided; 0 until the first (see delta_exporter_start_time_seconds)."})
	c.startTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: "delta_exporter_start_time_seconds",
		Help: "Unix time at which the exporter started: the reference for the time since the last ingest before the first decision."})
	c.startTime.Set(float64(c.now().UnixNano()) / 1e9)
	c.folded = prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_models_folded_total",
		Help: "Observations published under model_name=\"other\" because --labels.max-models was reached."})
	c.truncated = prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_model_names_truncated_total",
		Help: "Requests whose model_name was longer than 128 bytes: published under its first bytes, \"~\" and a hash of the whole name."})
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
	for _, r := range snapfile.RejectReasons {
		c.snapshotsRejects.WithLabelValues(string(r))
	}
	for _, r := range snapfile.IgnoreReasons {
		c.filesIgnored.WithLabelValues(string(r))
	}
	for _, e := range watch.Notices {
		c.watchEvents.WithLabelValues(string(e))
	}
	for _, tr := range watch.Triggers {
		c.rescans.WithLabelValues(string(tr))
	}
	for _, a := range attribution.Assumptions() {
		for _, st := range attribution.States {
			c.assumptions.WithLabelValues(a.Name(), string(st))
		}
	}
	c.unpaired = c.pending.WithLabelValues("unpaired")
	c.attributing = c.pending.WithLabelValues("attributing")

	cs := []prometheus.Collector{c.tpot, c.proxyTTFT, c.proxyE2E, c.requests, c.rejections, c.withheld, c.snapshotsRead,
		c.snapshotsRejects, c.filesIgnored, c.pending, c.lastIngest, c.startTime, c.folded, c.truncated, c.watchEvents, c.rescans, c.assumptions}
	cs = append(cs, c.snapshotsFuture)
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

// perRequestFamilies are the delta_exporter_* families Publish changes.
var perRequestFamilies = map[string]bool{
	"delta_exporter_requests_total":                true,
	"delta_exporter_request_rejections_total":      true,
	"delta_exporter_values_withheld_total":         true,
	"delta_exporter_last_ingest_timestamp_seconds": true,
	"delta_exporter_models_folded_total":           true,
	"delta_exporter_model_names_truncated_total":   true,
}

// PerRequestFamily reports whether a family is one that Publish changes
// (every llm_request_* family, and the counts of decided requests): what
// a scrape shows of the requests, which the state record must hold before
// it is shown. While the record cannot be written, serve shows these
// families as they were at the last scrape that was recorded, and every
// other family as it is (the population families likewise with their own
// record, serve/scrape.go).
func PerRequestFamily(name string) bool {
	return strings.HasPrefix(name, "llm_request_") || perRequestFamilies[name]
}

// Publish records one decided request: its exact values as observations
// with a request_id exemplar, its outcome and the reasons of what was
// withheld.
func (c *Collector) Publish(res attribution.Result) {
	c.requests.WithLabelValues(string(res.Outcome)).Inc()
	c.lastIngest.Set(float64(c.now().UnixNano()) / 1e9)
	// One label per request: models are counted as folded once.
	var model string
	labelled := false
	if res.Proxy.HasTTFT || res.Proxy.HasE2E {
		model, labelled = c.modelLabel(cmp.Or(res.Model, res.Proxy.Model)), res.Model != ""
		c.publishProxy(res, model)
	}
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
	if !labelled {
		model = c.modelLabel(res.Model)
	}
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

// publishProxy observes what the proxy measured of the request, under
// model label lv: known for every request capture relayed whole, whatever
// the attribution decided. The model is the attributed series' when there
// is one, else the one the response named.
func (c *Collector) publishProxy(res attribution.Result, lv string) {
	px := res.Proxy
	ex := prometheus.Labels{"request_id": ExemplarID(res.RequestID)}
	if px.HasTTFT {
		c.proxyTTFT.WithLabelValues(lv).(prometheus.ExemplarObserver).ObserveWithExemplar(px.TTFT, ex)
	}
	if px.HasE2E {
		c.proxyE2E.WithLabelValues(lv).(prometheus.ExemplarObserver).ObserveWithExemplar(px.E2E, ex)
	}
}

// modelLabel bounds the model_name values, in number and in length:
// model names are input.
func (c *Collector) modelLabel(model string) string {
	if _, cut := BoundModelName(model); cut {
		c.truncated.Inc()
	}
	label, folded := c.boundModel(model)
	if folded {
		c.folded.Inc()
	}
	return label
}

// boundedModel is modelLabel without counting a fold: for further
// families that publish the same request (llm_request_slo_total).
func (c *Collector) boundedModel(model string) string {
	label, _ := c.boundModel(model)
	return label
}

// boundModel returns the model_name under which model is published, cut
// to MaxModelNameBytes. One table serves the per-request and the
// population families, so that both fold the same models into "other" and
// their ratios (coverage, bias) compare like with like.
func (c *Collector) boundModel(model string) (label string, folded bool) {
	model, _ = BoundModelName(model)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.models[model] {
		return model, false
	}
	if len(c.models) < c.maxModels && model != OtherModel {
		c.models[model] = true
		return model, false
	}
	return OtherModel, true
}

// MaxModelNameBytes bounds the length of a model_name label value. A
// name is sent with every series of every scrape: one 10 MB name made
// each scrape 325 MB. 128 bytes hold any Hugging Face id and most local
// model paths.
const MaxModelNameBytes = 128

// modelHashHex is how many hex digits of the SHA-256 of a cut name are
// kept: 64 bits, so distinct long names stay distinct label values.
const modelHashHex = 16

// BoundModelName returns model as a label value of at most
// MaxModelNameBytes bytes of valid UTF-8, and whether it had to be cut. A
// longer name keeps its head (cut on a rune boundary), then "~" and
// modelHashHex hex digits of the SHA-256 of the whole name: two names
// with the same head stay apart, and the same name always maps to the
// same value.
func BoundModelName(model string) (string, bool) {
	valid := strings.ToValidUTF8(model, "\uFFFD")
	if len(valid) <= MaxModelNameBytes && valid == model {
		return model, false
	}
	if len(valid) <= MaxModelNameBytes {
		// Invalid UTF-8 would make the registry panic; replaced, the
		// name is no longer itself: counted like a cut one.
		return valid, true
	}
	sum := sha256.Sum256([]byte(model))
	head := valid[:MaxModelNameBytes-1-modelHashHex]
	for !utf8.ValidString(head) {
		head = head[:len(head)-1]
	}
	return head + "~" + hex.EncodeToString(sum[:])[:modelHashHex], true
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

// SnapshotRead counts a parsed snapshot file (ingest.Metrics).
func (c *Collector) SnapshotRead() { c.snapshotsRead.Inc() }

// SnapshotFutureDated counts a snapshot file dated ahead of the
// exporter's clock (ingest.Metrics).
func (c *Collector) SnapshotFutureDated() { c.snapshotsFuture.Inc() }

// SnapshotRejected counts an unusable snapshot file by reason
// (ingest.Metrics). The file name and error are logged by the ingester,
// never used as labels.
func (c *Collector) SnapshotRejected(_ string, reason snapfile.RejectReason, _ error) {
	c.snapshotsRejects.WithLabelValues(string(reason)).Inc()
}

// FileIgnored counts a directory entry not used (ingest.Metrics).
func (c *Collector) FileIgnored(reason snapfile.IgnoreReason) {
	c.filesIgnored.WithLabelValues(string(reason)).Inc()
}

// SetPending sets the numbers of held requests (ingest.Metrics).
func (c *Collector) SetPending(unpaired, attributing int) {
	c.unpaired.Set(float64(unpaired))
	c.attributing.Set(float64(attributing))
}

// WatchEvent counts a filesystem event (watch.Counter).
func (c *Collector) WatchEvent(e watch.Notice) { c.watchEvents.WithLabelValues(string(e)).Inc() }

// Rescan counts a full directory scan by trigger.
func (c *Collector) Rescan(trigger watch.Trigger) { c.rescans.WithLabelValues(string(trigger)).Inc() }

// SetAssumptions shows what the data said about each server process's
// attribution assumptions: per assumption and state, how many processes
// are in it (ingest.Metrics). Labels are a fixed set.
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
