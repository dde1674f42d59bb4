package collector

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/slo"
)

// SLOMetrics publishes the objectives' verdicts (package slo):
// llm_request_slo_total{model_name, slo, result}, with a request_id
// exemplar on every missed request, each objective's target
// (llm_request_slo_target_ratio{slo}), and the state of the objectives
// file.
type SLOMetrics struct {
	c *Collector // for the bounded model_name values

	total         *prometheus.CounterVec
	reloadOK      prometheus.Gauge
	reloadSuccess prometheus.Gauge
	objectives    prometheus.Gauge
	target        *prometheus.GaugeVec

	mu    sync.Mutex
	names map[string]bool // the slo label values in force
}

// NewSLOMetrics registers the SLO families on reg. Model names are bounded
// by c, like the per-request histograms.
func NewSLOMetrics(reg prometheus.Registerer, c *Collector) (*SLOMetrics, error) {
	m := &SLOMetrics{c: c, names: map[string]bool{}}
	m.total = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm_request_slo_total",
		Help: "Requests judged against each latency objective of --slo.config: met, missed, or unknown (a value the objective needs was withheld)."},
		[]string{"model_name", "slo", "result"})
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "delta_exporter_slo_config_last_reload_successful",
		Help: "Whether the last load of --slo.config succeeded (1) or failed and the previous objectives stayed in force (0)."})
	m.reloadSuccess = prometheus.NewGauge(prometheus.GaugeOpts{Name: "delta_exporter_slo_config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last successful load of --slo.config."})
	m.objectives = prometheus.NewGauge(prometheus.GaugeOpts{Name: "delta_exporter_slo_objectives",
		Help: "Objectives in force from --slo.config."})
	m.target = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "llm_request_slo_target_ratio",
		Help: "Target ratio of each objective of --slo.config: the share of requests that should meet it (burn-rate alerts read their error budget, 1 - target, from it)."},
		[]string{"slo"})
	for _, x := range []prometheus.Collector{m.total, m.reloadOK, m.reloadSuccess, m.objectives, m.target} {
		if err := reg.Register(x); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Loaded records a load of the objectives file: s is the Set swapped in,
// or nil when err says why the file was refused. The series of objectives
// no longer in the file are removed, so the slo label stays bounded by the
// file across reloads.
func (m *SLOMetrics) Loaded(s *slo.Set, err error) {
	if err != nil {
		m.reloadOK.Set(0)
		return
	}
	m.reloadOK.Set(1)
	m.reloadSuccess.Set(float64(m.c.now().UnixNano()) / 1e9)
	m.objectives.Set(float64(len(s.Objectives)))
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[string]bool{}
	for _, n := range s.Names() {
		keep[n] = true
	}
	for n := range m.names {
		if !keep[n] {
			m.total.DeletePartialMatch(prometheus.Labels{"slo": n})
			m.target.DeleteLabelValues(n)
		}
	}
	for _, o := range s.Objectives {
		m.target.WithLabelValues(o.Name).Set(o.Target)
	}
	m.names = keep
}

// Publish counts the verdicts on one request. The first verdict of a
// model and objective creates its three result series at once, so that
// ratios between them are defined from the start.
func (m *SLOMetrics) Publish(res *attribution.Result, js []slo.Judgement) {
	if len(js) == 0 {
		return
	}
	model := ""
	if res.Model != "" {
		model = m.c.boundedModel(res.Model)
	}
	for _, j := range js {
		for _, r := range slo.Results {
			m.total.WithLabelValues(model, j.Objective, string(r))
		}
		ctr := m.total.WithLabelValues(model, j.Objective, string(j.Result))
		if j.Result == slo.Missed {
			ctr.(prometheus.ExemplarAdder).AddWithExemplar(1, prometheus.Labels{"request_id": ExemplarID(res.RequestID)})
			continue
		}
		ctr.Inc()
	}
}
