package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/internal/retention"
)

// RetentionMetrics are the metrics of snapshot retention (package
// retention, --snapshots.retention). It implements retention.Metrics.
type RetentionMetrics struct {
	files    *prometheus.CounterVec
	bytes    prometheus.Counter
	failures prometheus.Counter
}

// NewRetentionMetrics creates the metrics and registers them on reg.
func NewRetentionMetrics(reg prometheus.Registerer) (*RetentionMetrics, error) {
	m := &RetentionMetrics{
		files: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "delta_exporter_retention_deleted_files_total",
			Help: "Ingested snapshot files deleted by retention, by reason: age (--snapshots.retention), size (--snapshots.retention-size)."}, []string{"reason"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_retention_deleted_bytes_total",
			Help: "Bytes of the snapshot files deleted by retention."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "delta_exporter_retention_delete_failures_total",
			Help: "Snapshot files retention tried and failed to delete."}),
	}
	for _, r := range retention.Reasons {
		m.files.WithLabelValues(string(r))
	}
	for _, c := range []prometheus.Collector{m.files, m.bytes, m.failures} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Deleted counts one deleted file of n bytes.
func (m *RetentionMetrics) Deleted(reason retention.Reason, n int64) {
	m.files.WithLabelValues(string(reason)).Inc()
	m.bytes.Add(float64(n))
}

// DeleteFailed counts a file that could not be deleted.
func (m *RetentionMetrics) DeleteFailed() { m.failures.Inc() }
