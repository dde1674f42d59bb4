package capture

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

const namespace = "delta_exporter_capture"

// Request outcomes (label outcome of requests_total).
const (
	outcomeOK           = "ok"                   // the response was relayed whole
	outcomeErrorStatus  = "error_status"         // the upstream answered with a non-2xx status
	outcomeUnavailable  = "upstream_unavailable" // the upstream could not be reached: 502 sent
	outcomeClientGone   = "client_disconnected"  // the client left before the end of the response
	outcomeUpstreamBody = "upstream_broken"      // the response body broke off on the upstream side
	outcomeBodyTimeout  = "body_timeout"         // the request body did not arrive within --capture.body-timeout: 408 sent
	outcomeBodyMemory   = "body_memory_full"     // the request body did not fit within --capture.body-memory: 503 sent
)

// metrics is the proxy's own instrumentation. The names are documented in
// docs/capture.md.
type metrics struct {
	requests         *prometheus.CounterVec
	inFlight         prometheus.Gauge
	bodyBytes        prometheus.Gauge
	written          *prometheus.CounterVec
	failed           *prometheus.CounterVec
	afterUnobserved  prometheus.Counter
	scrapeDuration   prometheus.Histogram
	scrapeFailures   *prometheus.CounterVec
	idsSanitized     prometheus.Counter
	idsReused        prometheus.Counter
	afterWaitSeconds prometheus.Histogram
	createSeconds    prometheus.Histogram
	scrapes          prometheus.Counter
	scrapeCost       prometheus.Counter
	budget           prometheus.Gauge
	budgetWaits      prometheus.Histogram
	skipped          *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_total",
			Help: "Requests proxied, by kind (inference: snapshots are taken; other: passed through) and outcome.",
		}, []string{"kind", "outcome"}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "inference_requests_in_flight",
			Help: "Inference requests whose response has not ended yet.",
		}),
		bodyBytes: f.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "request_body_bytes",
			Help: "Bytes of request bodies held by the proxy, being received or waiting to be forwarded (at most --capture.body-memory).",
		}),
		written: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "snapshots_written_total",
			Help: "Files written to the snapshot directory, by stage (before, first, after, timeline, info).",
		}, []string{"stage"}),
		failed: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "snapshots_failed_total",
			Help: "Files that were due but not written, by stage and reason.",
		}, []string{"stage", "reason"}),
		afterUnobserved: f.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "after_unobserved_total",
			Help: "After snapshots written at the timeout without the finish histogram's count having moved.",
		}),
		scrapeDuration: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "scrape_duration_seconds",
			Help:    "Time from sending a scrape of the upstream metrics endpoint to having read and checked its body, successful or not.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}),
		scrapeFailures: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "scrape_failures_total",
			Help: "Scrapes of the upstream metrics endpoint that gave no usable snapshot, by reason.",
		}, []string{"reason"}),
		idsSanitized: f.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "request_ids_sanitized_total",
			Help: "Response ids that had to be escaped or shortened to be used in a file name.",
		}),
		idsReused: f.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "request_ids_reused_total",
			Help: "Response ids another request had in the last hour: the request's file names got a suffix.",
		}),
		afterWaitSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "after_wait_seconds",
			Help:    "Time from the end of a response to the after scrape that was written for it.",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}),
		createSeconds: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "file_create_seconds",
			Help:    "Time to create one file in the snapshot directory (the filesystem's cost, which varies a lot).",
			Buckets: []float64{.00001, .00003, .0001, .0003, .001, .003, .01, .03, .1},
		}),
	}
	m.scrapes = f.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "scrapes_total",
		Help: "Scrapes of the upstream metrics endpoint sent (rate: scrapes per second).",
	})
	m.scrapeCost = f.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "upstream_scrape_seconds_total",
		Help: "Time the upstream spent answering capture's scrapes, as measured (each scrape: the shortest duration of the last 16); its rate is the share the scrape budget bounds.",
	})
	m.budget = f.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "scrape_budget_ratio",
		Help: "The share of time the upstream may spend answering capture's scrapes (--upstream.scrape-budget); 0: no bound.",
	})
	m.budgetWaits = f.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "scrape_budget_wait_seconds",
		Help:    "How long a scrape waited for the scrape budget before it was sent (the requests needing it share it).",
		Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2},
	})
	m.skipped = f.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "scrapes_skipped_total",
		Help: "Scrapes not made to stay within the scrape budget, by stage (timeline).",
	}, []string{"stage"})
	m.skipped.WithLabelValues("timeline")
	for _, kind := range []string{"inference", "other"} {
		for _, o := range []string{outcomeOK, outcomeErrorStatus, outcomeUnavailable, outcomeClientGone, outcomeUpstreamBody, outcomeBodyTimeout, outcomeBodyMemory} {
			m.requests.WithLabelValues(kind, o)
		}
	}
	for _, st := range []string{"before", "first", "after", "timeline", "info"} {
		m.written.WithLabelValues(st)
	}
	return m
}
