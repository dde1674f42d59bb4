package serve

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/delta-exporter/delta-exporter/population"
	"github.com/delta-exporter/delta-exporter/state"
)

// scrapeHandler serves /metrics so that nothing is shown before it is
// recorded: it gathers while no request is being published, encodes into
// a buffer, makes the gathered publications durable (state.Journal.Sync)
// and only then writes the answer. A scrape that times out or whose
// record cannot be written is answered with an error and records nothing:
// Prometheus did not see those requests, and a restart publishes them
// again. Between the record's write and the answer's there is nothing but
// the fsync and a copy, so a crash there is the only way a recorded
// request can go unseen (it is then lost, never counted twice:
// docs/guarantees.md).
type scrapeHandler struct {
	reg     prometheus.Gatherer
	journal *state.Journal
	log     *slog.Logger
	// sem bounds concurrent scrapes (--web.max-requests); nil: no bound.
	sem chan struct{}
	// timeout bounds one scrape (--web.scrape-timeout); 0: none.
	timeout time.Duration
	// population records the population hulls a scrape showed, with
	// the journal; nil: not recorded.
	population *populationRecord
}

func newScrapeHandler(reg prometheus.Gatherer, j *state.Journal, log *slog.Logger, maxRequests int, timeout time.Duration) *scrapeHandler {
	h := &scrapeHandler{reg: reg, journal: j, log: log, timeout: timeout}
	if maxRequests > 0 {
		h.sem = make(chan struct{}, maxRequests)
	}
	return h
}

func (h *scrapeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The slot is held until both this call and the gather are done: a
	// gather abandoned at the timeout still counts against the bound.
	release := func() {}
	if h.sem != nil {
		select {
		case h.sem <- struct{}{}:
		default:
			http.Error(w, "too many concurrent scrapes (--web.max-requests)", http.StatusServiceUnavailable)
			return
		}
		var refs atomic.Int32
		refs.Store(2)
		release = func() {
			if refs.Add(-1) == 0 {
				<-h.sem
			}
		}
	}
	defer release()
	ctx := r.Context()
	if h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.timeout)
		defer cancel()
	}
	type gathered struct {
		buf  *bufferedResponse
		seq  uint64
		caps []population.Record
	}
	done := make(chan gathered, 1)
	// The gather may outlive this call (timeout): it works on a copy.
	req := r.Clone(ctx)
	go func() {
		defer release()
		var seq uint64
		var caps []population.Record
		gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			var mfs []*dto.MetricFamily
			var err error
			seq = h.journal.View(func() {
				mfs, err = h.reg.Gather()
				caps = h.population.capture()
			})
			return mfs, err
		})
		buf := &bufferedResponse{header: http.Header{}, code: http.StatusOK}
		promhttp.HandlerFor(gather, promhttp.HandlerOpts{
			EnableOpenMetrics: true,
			ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelError),
		}).ServeHTTP(buf, req)
		done <- gathered{buf, seq, caps}
	}()
	var g gathered
	select {
	case g = <-done:
	case <-ctx.Done():
		// Nothing was recorded: Prometheus does not see these requests
		// now, and a restart would publish them again.
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			h.log.Warn("scrape timed out", "timeout", h.timeout)
			http.Error(w, "scrape timed out (--web.scrape-timeout)", http.StatusServiceUnavailable)
		}
		return
	}
	if g.buf.code == http.StatusOK {
		if err := h.journal.Sync(g.seq); err != nil {
			http.Error(w, "cannot record the published requests in the state file; see the exporter's log", http.StatusInternalServerError)
			return
		}
		if err := h.population.sync(g.caps); err != nil {
			http.Error(w, "cannot record the population in the state file; see the exporter's log", http.StatusInternalServerError)
			return
		}
	}
	// From the record's write inside Sync (the file is visible to the
	// next process as soon as it is written, before the fsync returns)
	// to the last byte handed to the kernel is the only window in which a
	// crash loses requests (recorded, not seen). Hence nothing in between
	// but the fsync, one write and an explicit flush.
	g.buf.writeTo(w)
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
	w.Header().Set("Content-Length", strconv.Itoa(b.body.Len()))
	w.WriteHeader(b.code)
	w.Write(b.body.Bytes())
	http.NewResponseController(w).Flush()
}
