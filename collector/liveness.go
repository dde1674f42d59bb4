package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterIngestHeartbeat registers
// delta_exporter_ingest_heartbeat_timestamp_seconds, read from last at
// each scrape. The ingest loop beats at every tick (10 ms) and after every
// file it reads, so an alert on time() minus it catches a loop that is
// stuck, whatever holds it; the scrape handler does not depend on the
// loop, so the gauge is served while it is stuck.
func RegisterIngestHeartbeat(reg prometheus.Registerer, last func() time.Time) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "delta_exporter_ingest_heartbeat_timestamp_seconds",
		Help: "Unix time at which the ingest loop last made progress (it beats every tick while idle). time() minus it growing past a minute means ingestion is stuck; /-/healthy then answers 503.",
	}, func() float64 { return float64(last().UnixNano()) / 1e9 }))
}
