package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/internal/state"
)

// StateMetrics are the metrics of the durable record of published
// requests (package state, --state.file). It implements state.Metrics.
type StateMetrics struct {
	records   prometheus.Gauge
	writes    prometheus.Counter
	failures  prometheus.Counter
	lastOK    prometheus.Gauge
	already   prometheus.Counter
	recovered *prometheus.CounterVec
}

// NewStateMetrics creates the metrics and registers them on reg.
func NewStateMetrics(reg prometheus.Registerer) (*StateMetrics, error) {
	m := &StateMetrics{
		records: prometheus.NewGauge(prometheus.GaugeOpts{Name: "delta_exporter_state_records",
			Help: "Published requests held in the state file (--state.file): they are not published again after a restart."}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_state_writes_total",
			Help: "Writes of the state file made before a scrape was answered."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_state_write_failures_total",
			Help: "State file writes that failed; the scrape they belonged to showed no request that was not recorded."}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "delta_exporter_state_last_write_successful",
			Help: "1 if the last state file write succeeded; 0 while it fails (a full disk): scrapes then show the exporter's own metrics and, of the per-request ones, only what was recorded before the failure."}),
		already: prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_requests_already_published_total",
			Help: "Requests decided again after a restart and not published, because the state file shows that an earlier run published them and a scrape saw them."}),
		recovered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_state_recoveries_total",
			Help: "Problems found in the state file at startup, by reason: corrupt (damaged records: the file was moved aside and every record that verifies kept), unfinished_write (the tail of a write cut short by a crash, dropped)."}, []string{"reason"}),
	}
	for _, r := range state.Recoveries {
		m.recovered.WithLabelValues(string(r))
	}
	m.lastOK.Set(1)
	for _, c := range []prometheus.Collector{m.records, m.writes, m.failures, m.lastOK, m.already, m.recovered} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SetRecords sets the number of records held.
func (m *StateMetrics) SetRecords(n int) { m.records.Set(float64(n)) }

// Write counts a state file write and whether it failed.
func (m *StateMetrics) Write(err error) {
	m.writes.Inc()
	if err != nil {
		m.failures.Inc()
		m.lastOK.Set(0)
	} else {
		m.lastOK.Set(1)
	}
}

// AlreadyPublished counts a request not published again after a restart.
func (m *StateMetrics) AlreadyPublished() { m.already.Inc() }

// Recovered counts a problem found in the state file at startup.
func (m *StateMetrics) Recovered(reason state.Recovery) {
	m.recovered.WithLabelValues(string(reason)).Inc()
}
