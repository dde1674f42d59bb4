package serve

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/delta-exporter/delta-exporter/collector"
	"github.com/delta-exporter/delta-exporter/internal/population"
)

// recorder is what the handler needs of the state record
// (*state.Journal); tests inject one whose writes fail.
type recorder interface {
	View(f func()) uint64
	Sync(seq uint64) error
}

// scrapeHandler serves /metrics so that nothing is shown before it is
// recorded: it gathers while no request is being published, encodes into
// a buffer, makes the gathered publications durable (state.Journal.Sync)
// and only then writes the answer. A scrape that times out is answered
// with an error and records nothing: Prometheus did not see those
// requests, and a restart publishes them again. A scrape whose record
// cannot be written (a full disk) is answered with every family but the
// per-request ones as they are, and the per-request ones
// (collector.PerRequestFamily) as the last recorded scrape showed them:
// the exporter's own metrics, the write failures among them, stay
// visible, and no request is shown unrecorded. Between the record's write and the answer's there is nothing but
// the fsync and a copy, so a crash there, or a scraper that gives up
// there (a slow fsync on a loaded disk), is the only way a recorded
// request can go unseen (it is then lost, never counted twice:
// docs/guarantees.md).
type scrapeHandler struct {
	reg     prometheus.Gatherer
	journal recorder
	log     *slog.Logger
	// sem bounds concurrent scrapes (--web.max-requests); nil: no bound.
	sem chan struct{}
	// timeout bounds one scrape (--web.scrape-timeout); 0: none.
	timeout time.Duration

	// recorded holds the per-request families of the recorded scrape
	// with the highest sequence number: what is shown of them while the
	// record cannot be written.
	mu          sync.Mutex
	recorded    [recordedKinds][]*dto.MetricFamily
	recordedSeq [recordedKinds]uint64

	// population records the population hulls a scrape showed, with
	// the journal; nil: not recorded.
	population *populationRecord
}

func newScrapeHandler(reg prometheus.Gatherer, j recorder, log *slog.Logger, maxRequests int, timeout time.Duration) *scrapeHandler {
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
		mfs  []*dto.MetricFamily
		caps []population.Record
	}
	done := make(chan gathered, 1)
	// The gather may outlive this call (timeout): it works on a copy.
	req := r.Clone(ctx)
	go func() {
		defer release()
		var seq uint64
		var mfs []*dto.MetricFamily
		var caps []population.Record
		gather := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			var err error
			seq = h.journal.View(func() {
				mfs, err = h.reg.Gather()
				caps = h.population.capture()
			})
			return mfs, err
		})
		done <- gathered{h.encode(gather, req), seq, mfs, caps}
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
		// Each failure is logged once per outage, by the journal and by
		// the population record.
		var ok [recordedKinds]bool
		ok[perRequestKind] = h.journal.Sync(g.seq) == nil
		ok[populationKind] = h.population.sync(g.caps) == nil
		if !ok[perRequestKind] || !ok[populationKind] {
			g.buf = h.encode(h.withheld(g.mfs, ok), req)
		}
		h.keep(g.mfs, g.seq, ok)
	}
	// From the record's write inside Sync (the file is visible to the
	// next process as soon as it is written, before the fsync returns)
	// to the last byte handed to the kernel is the only window in which a
	// crash loses requests (recorded, not seen). Hence nothing in between
	// but the fsync, one write and an explicit flush.
	g.buf.writeTo(w)
}

func (h *scrapeHandler) encode(g prometheus.Gatherer, req *http.Request) *bufferedResponse {
	buf := &bufferedResponse{header: http.Header{}, code: http.StatusOK}
	promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelError),
	}).ServeHTTP(buf, req)
	return buf
}

// recordedKind is one of the two records a scrape writes before it is
// answered: the journal (the per-request families) and the population
// records (llm_population_*). Each is withheld on its own when its write
// fails: a scrape whose journal was written must show its requests, or
// they would count as seen and never be shown.
type recordedKind int

const (
	perRequestKind recordedKind = iota
	populationKind
	recordedKinds
)

func kindOf(name string) (recordedKind, bool) {
	switch {
	case strings.HasPrefix(name, "llm_population_"):
		return populationKind, true
	case collector.PerRequestFamily(name):
		return perRequestKind, true
	}
	return 0, false
}

// keep remembers the recorded families of a scrape whose record of that
// kind was written (ok[kind]), unless a later recorded scrape is already
// kept. The gathered families are not changed afterwards, so they are
// kept as they are.
func (h *scrapeHandler) keep(mfs []*dto.MetricFamily, seq uint64, ok [recordedKinds]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range recordedKinds {
		if !ok[k] || (h.recorded[k] != nil && seq < h.recordedSeq[k]) {
			continue
		}
		kept := []*dto.MetricFamily{}
		for _, mf := range mfs {
			if kind, rec := kindOf(mf.GetName()); rec && kind == k {
				kept = append(kept, mf)
			}
		}
		h.recorded[k], h.recordedSeq[k] = kept, seq
	}
}

// withheld is what a scrape shows when a record could not be written
// (ok[kind] false): mfs with that kind's families replaced by those of
// the last scrape whose record of that kind was written.
func (h *scrapeHandler) withheld(mfs []*dto.MetricFamily, ok [recordedKinds]bool) prometheus.Gatherer {
	h.mu.Lock()
	var out []*dto.MetricFamily
	for k := range recordedKinds {
		if !ok[k] {
			out = append(out, h.recorded[k]...)
		}
	}
	h.mu.Unlock()
	for _, mf := range mfs {
		if kind, rec := kindOf(mf.GetName()); !rec || ok[kind] {
			out = append(out, mf)
		}
	}
	slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return out, nil })
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
