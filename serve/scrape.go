package serve

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/delta-exporter/delta-exporter/state"
)

// scrapeHandler serves /metrics so that nothing is shown before it is
// recorded: it gathers while no request is being published, encodes into
// a buffer, makes the gathered publications durable (state.Journal.Sync)
// and only then writes the answer. A scrape that times out or whose
// record cannot be written is answered with an error and records nothing:
// Prometheus did not see those requests, and a restart publishes them
// again. Between the fsync and the write there is nothing but a copy, so
// a crash there is the only way a recorded request can go unseen.
type scrapeHandler struct {
	reg     prometheus.Gatherer
	journal *state.Journal
	log     *slog.Logger
	// sem bounds concurrent scrapes (--web.max-requests); nil: no bound.
	sem chan struct{}
	// timeout bounds one scrape (--web.scrape-timeout); 0: none.
	timeout time.Duration
}

func newScrapeHandler(reg prometheus.Gatherer, j *state.Journal, log *slog.Logger, maxRequests int, timeout time.Duration) *scrapeHandler {
	h := &scrapeHandler{reg: reg, journal: j, log: log, timeout: timeout}
	if maxRequests > 0 {
		h.sem = make(chan struct{}, maxRequests)
	}
	return h
}

// Outcomes of a scrape's race against its timeout.
const (
	running int32 = iota
	committing
	abandoned
)

func (h *scrapeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.sem != nil {
		select {
		case h.sem <- struct{}{}:
		default:
			http.Error(w, "too many concurrent scrapes (--web.max-requests)", http.StatusServiceUnavailable)
			return
		}
	}
	ctx := r.Context()
	if h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	var phase atomic.Int32
	done := make(chan *bufferedResponse, 1)
	// The gather may outlive this call (timeout): it works on a copy.
	req := r.Clone(ctx)
	go func() {
		if h.sem != nil {
			defer func() { <-h.sem }()
		}
		var seq uint64
		gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			var mfs []*dto.MetricFamily
			var err error
			seq = h.journal.View(func() { mfs, err = h.reg.Gather() })
			return mfs, err
		})
		buf := &bufferedResponse{header: http.Header{}, code: http.StatusOK}
		promhttp.HandlerFor(gather, promhttp.HandlerOpts{
			EnableOpenMetrics: true,
			ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelError),
		}).ServeHTTP(buf, req)
		if !phase.CompareAndSwap(running, committing) {
			return // timed out: nothing recorded, nothing shown
		}
		if buf.code == http.StatusOK {
			if err := h.journal.Sync(seq); err != nil {
				buf = &bufferedResponse{header: http.Header{}, code: http.StatusInternalServerError}
				buf.header.Set("Content-Type", "text/plain; charset=utf-8")
				buf.body.WriteString("cannot record the published requests in the state file; see the exporter's log\n")
			}
		}
		done <- buf
	}()
	select {
	case buf := <-done:
		buf.writeTo(w)
	case <-ctx.Done():
		if phase.CompareAndSwap(running, abandoned) {
			h.log.Warn("scrape timed out", "timeout", h.timeout)
			http.Error(w, "scrape timed out (--web.scrape-timeout)", http.StatusServiceUnavailable)
			return
		}
		// Already recording: the answer follows within an fsync.
		(<-done).writeTo(w)
	}
}

// bufferedResponse holds an answer until it may be shown.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if !b.wrote {
		b.code, b.wrote = code, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wrote = true
	return b.body.Write(p)
}

func (b *bufferedResponse) writeTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.WriteHeader(b.code)
	w.Write(b.body.Bytes())
}
