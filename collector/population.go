package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/parser"
)

// PopulationPrefix names the population families: PopulationPrefix +
// parser.Metric.Name(), beside the per-request llm_request_<name>.
const PopulationPrefix = "llm_population_"

var populationHelp = [parser.NumMetrics]string{
	parser.TTFT:             "Time to first token",
	parser.Queue:            "Time in the scheduler queue",
	parser.Prefill:          "Prefill time",
	parser.Decode:           "Decode time",
	parser.Inference:        "Inference time",
	parser.E2E:              "End-to-end latency",
	parser.PromptTokens:     "Prompt tokens",
	parser.GenerationTokens: "Generated tokens",
}

// PopulationLabel is population.Config.Label for the exporter: model
// names are bounded by the same table as the per-request families, and
// the per-request series of a model the population shows is created (at
// 0), so that coverage is 0 rather than absent for a model with no exact
// value.
func (c *Collector) PopulationLabel(m parser.Metric, model string) string {
	label, _ := c.boundModel(model)
	c.perRequest[m].WithLabelValues(label)
	return label
}

// PopulationMetrics publishes a population.Population: the
// llm_population_* histograms (the server's own buckets, model_name) and
// what the population could not use.
type PopulationMetrics struct {
	pop     *population.Population
	descs   [parser.NumMetrics]*prometheus.Desc
	skipped *prometheus.Desc
	resets  *prometheus.Desc
	// hulls and forgotten show that what the population keeps follows
	// the directory (population package documentation, Forgetting).
	hulls     *prometheus.Desc
	forgotten *prometheus.Desc
}

// NewPopulationMetrics registers the population families of pop on reg.
func NewPopulationMetrics(reg prometheus.Registerer, pop *population.Population) (*PopulationMetrics, error) {
	pm := &PopulationMetrics{pop: pop,
		skipped: prometheus.NewDesc("delta_exporter_population_snapshots_skipped_total",
			"Series of snapshots the population families could not use, by reason: inconsistent (not ordered with the other snapshots of the server process), out_of_order (a server without process_start_time_seconds: cannot be told from a restart), invalid (a count that is not an integer).",
			[]string{"reason"}, nil),
		resets: prometheus.NewDesc("delta_exporter_population_resets_total",
			"Restarts of a server without process_start_time_seconds seen in the population families (counts down, named more than 10s after the highest).",
			nil, nil),
		hulls: prometheus.NewDesc("delta_exporter_population_hulls",
			"Ranges of server snapshots the population families keep, one per server series and process: those whose snapshot files are in the directory or went less than the forget delay ago.",
			nil, nil),
		forgotten: prometheus.NewDesc("delta_exporter_population_hulls_forgotten_total",
			"Ranges of server snapshots the population families forgot (and dropped from their record): no snapshot file of theirs was left in the directory for the forget delay.",
			nil, nil),
	}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		pm.descs[m] = prometheus.NewDesc(PopulationPrefix+m.Name(),
			populationHelp[m]+" of all requests observed by the server, from its own histogram (its bucket bounds); not per-request.",
			[]string{"model_name"}, nil)
	}
	if err := reg.Register(pm); err != nil {
		return nil, err
	}
	return pm, nil
}

// Describe implements prometheus.Collector.
func (pm *PopulationMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range pm.descs {
		ch <- d
	}
	ch <- pm.skipped
	ch <- pm.resets
	ch <- pm.hulls
	ch <- pm.forgotten
}

// Collect implements prometheus.Collector.
func (pm *PopulationMetrics) Collect(ch chan<- prometheus.Metric) {
	pm.pop.Gather(func(k population.HistKey, h *population.Hist) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			buckets[b] = h.Buckets[i]
		}
		ch <- prometheus.MustNewConstHistogram(pm.descs[k.Metric], h.Count, h.Sum, buckets, k.Model)
	}, func(reason string, n uint64) {
		ch <- prometheus.MustNewConstMetric(pm.skipped, prometheus.CounterValue, float64(n), reason)
	}, func(n uint64) {
		ch <- prometheus.MustNewConstMetric(pm.resets, prometheus.CounterValue, float64(n))
	})
	held, forgotten := pm.pop.Hulls()
	ch <- prometheus.MustNewConstMetric(pm.hulls, prometheus.GaugeValue, float64(held))
	ch <- prometheus.MustNewConstMetric(pm.forgotten, prometheus.CounterValue, float64(forgotten))
}
