// Package capture is a reverse proxy in front of an OpenAI-compatible
// inference server that writes the /metrics snapshots delta-exporter reads:
// for each inference request a "before" scrape (taken before the request
// reached the server), for streaming responses a "first" scrape (started
// when the first response byte arrived), an "after" scrape (started after
// the last byte, once the finish histogram has moved), an info sidecar with
// what the response said about the request, and, while requests are in
// flight, periodic "timeline" scrapes.
//
// The proxy never holds a request back for a scrape: the before file is the
// most recent scrape that had completed when the request arrived (a
// background loop keeps one fresh), and every other scrape and every file
// write runs beside the response, not in its path. Scrapes are shared: at
// most one is in flight at a time, and a caller that needs a scrape started
// after some moment joins the next one. The file formats and guarantees are
// documented in docs/capture.md.
package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/parser"
)

// DefaultPaths are the POST paths treated as inference requests: the
// generation and pooling endpoints of vLLM's OpenAI-compatible server (and
// /generate of SGLang and TGI). Every other request is passed through
// without snapshots.
var DefaultPaths = []string{
	"/v1/chat/completions",
	"/v1/completions",
	"/v1/responses",
	"/v1/embeddings",
	"/v1/audio/transcriptions",
	"/v1/audio/translations",
	"/v1/score",
	"/v1/rerank",
	"/v2/rerank",
	"/score",
	"/rerank",
	"/pooling",
	"/classify",
	"/generate",
}

// The defaults of Config. A zero field means the same as 0 in its flag: a
// setting that can be off (TimelineInterval, ScrapeBudget) is off at
// zero, any other takes its Default* constant. The flags of
// cmd/delta-exporter default to these constants, so the values pass
// through unchanged and a negative value is never needed.
const (
	DefaultMetricsPath   = "/metrics"
	DefaultIdleInterval  = time.Second
	DefaultAfterTimeout  = 2 * time.Second
	DefaultScrapeTimeout = time.Second
	// DefaultScrapeBudget is 2 % of one core (the flag's default). A
	// server whose frontend loop is saturated then loses at most about
	// 2 % of its throughput to capture's scrapes; with vLLM's /metrics
	// of 40-50 KB (2-3 ms to render in Python) that is 7-10 scrapes a
	// second.
	DefaultScrapeBudget = 0.02
	// DefaultMaxScrapeBytes is the exporter's own bound on a snapshot
	// file: a larger scrape would make a file it rejects.
	DefaultMaxScrapeBytes = snapfile.DefaultMaxBytes
	DefaultBodyTimeout    = 30 * time.Second
	DefaultMaxBodyMemory  = 64 << 20
	DefaultMaxBodyCapture = 4 << 20
)

// Config configures a Proxy. Upstream and Dir are required; the zero
// values of the other fields are described above (the constants).
type Config struct {
	// Upstream is the inference server's base URL, e.g. http://127.0.0.1:8000.
	Upstream *url.URL
	// MetricsPath is the upstream's metrics endpoint: a path on Upstream
	// (DefaultMetricsPath) or an absolute URL.
	MetricsPath string
	// Dir is the snapshot directory. It must exist.
	Dir string
	// Paths are the POST paths treated as inference requests (DefaultPaths).
	Paths []string
	// TimelineInterval is the period of timeline snapshots while at least
	// one inference request is in flight; zero: none (the flag's
	// default too). On the realistic upstream they bought a few points of
	// coverage for 1.2-1.7 times the scrapes: within a scrape budget a
	// request's own scrapes are worth more (docs/capture.md).
	TimelineInterval time.Duration
	// IdleInterval is the period of the background scrape that keeps a
	// recent "before" ready while no request is in flight
	// (DefaultIdleInterval).
	IdleInterval time.Duration
	// AfterTimeout bounds the wait, after a response ends, for its finish
	// observation to show in a scrape (DefaultAfterTimeout).
	AfterTimeout time.Duration
	// ScrapeTimeout bounds one scrape of the metrics endpoint
	// (DefaultScrapeTimeout).
	ScrapeTimeout time.Duration
	// ScrapeBudget is the share of one core's time the upstream may spend
	// answering capture's scrapes; zero: no bound (the flag's default is
	// DefaultScrapeBudget). Scrapes wait for it (and requests waiting
	// share them); timeline scrapes are skipped instead.
	ScrapeBudget float64
	// MaxScrapeBytes is the largest metrics body accepted
	// (DefaultMaxScrapeBytes).
	MaxScrapeBytes int64
	// BodyTimeout bounds how long a request body read whole before it is
	// forwarded (see readBody) may take to arrive (DefaultBodyTimeout).
	// A client slower than that gets 408 and nothing is forwarded.
	BodyTimeout time.Duration
	// MaxBodyMemory bounds the bytes of request bodies held at once,
	// being received or waiting to be forwarded (DefaultMaxBodyMemory).
	// A request whose body does not fit gets 503 and nothing is
	// forwarded.
	MaxBodyMemory int64
	// MaxBodyCapture is how much of a non-streaming response body is kept
	// to read its id, usage and metrics (DefaultMaxBodyCapture). The
	// client always gets the whole body.
	MaxBodyCapture int
	// UpstreamAuthorization, when not empty, is the Authorization header
	// sent with every forwarded request (the server's API key), in place
	// of the client's. Scrapes are sent without it (vLLM's --api-key
	// guards /v1 only).
	UpstreamAuthorization string
	// OwnAuth reports whether the proxy asks clients for credentials of
	// its own (basic auth in the web configuration): a client's
	// Authorization header is then the proxy's credential and is not
	// forwarded. Nil: it never does.
	OwnAuth func() bool
	// Transport carries the proxied requests; ScrapeTransport the scrapes.
	// Defaults are tuned clones of http.DefaultTransport with keep-alive
	// pools sized for many concurrent streams and compression left to the
	// client.
	Transport       http.RoundTripper
	ScrapeTransport http.RoundTripper
	// Logger receives the proxy's logs (discarded if nil).
	Logger *slog.Logger
	// Registerer receives the proxy's own metrics (not registered if nil).
	Registerer prometheus.Registerer

	// fault, when not nil (tests), fails the writing of files as a full
	// disk would (writer.fault).
	fault func(name string) error
}

// Proxy is the capturing reverse proxy. It is an http.Handler; Run must be
// running for the background scrapes (before freshness and timeline).
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	rp    *httputil.ReverseProxy
	scr   *scraper
	files *writer
	m     *metrics
	// usedIDs keeps apart the names of requests given the same id.
	usedIDs *usedIDs
	paths   map[string]bool

	inFlight     atomic.Int64
	bodyMemory   atomic.Int64 // bytes of request bodies held (heldBody)
	wake         chan struct{}
	wg           sync.WaitGroup // per-request goroutines
	ready        chan struct{}  // closed by the first successful scrape
	readyOnce    sync.Once
	scrapeState  atomic.Int32 // 0 unknown, 1 ok, 2 failing: logs on change
	writeFailing atomic.Bool  // the last write failed: logs on change
	// upstreamFailing: the last proxied request could not reach the
	// upstream: logs on change.
	upstreamFailing atomic.Bool
}

// New checks cfg and builds a Proxy. It fails if the upstream URL is not
// an absolute http(s) URL or the snapshot directory cannot be opened.
func New(cfg Config) (*Proxy, error) {
	if cfg.Upstream == nil || (cfg.Upstream.Scheme != "http" && cfg.Upstream.Scheme != "https") || cfg.Upstream.Host == "" {
		return nil, errors.New("capture: the upstream must be an absolute http or https URL")
	}
	if cfg.MetricsPath == "" {
		cfg.MetricsPath = DefaultMetricsPath
	}
	mu, err := url.Parse(cfg.MetricsPath)
	if err != nil {
		return nil, fmt.Errorf("capture: bad metrics path: %w", err)
	}
	metricsURL := cfg.Upstream.ResolveReference(mu)
	if len(cfg.Paths) == 0 {
		cfg.Paths = DefaultPaths
	}
	if cfg.IdleInterval <= 0 {
		cfg.IdleInterval = DefaultIdleInterval
	}
	if cfg.AfterTimeout <= 0 {
		cfg.AfterTimeout = DefaultAfterTimeout
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = DefaultScrapeTimeout
	}
	if cfg.MaxScrapeBytes <= 0 {
		cfg.MaxScrapeBytes = DefaultMaxScrapeBytes
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.MaxBodyMemory <= 0 {
		cfg.MaxBodyMemory = DefaultMaxBodyMemory
	}
	if cfg.MaxBodyCapture <= 0 {
		cfg.MaxBodyCapture = DefaultMaxBodyCapture
	}
	if cfg.Transport == nil {
		cfg.Transport = newTransport(1024)
	}
	if cfg.ScrapeTransport == nil {
		cfg.ScrapeTransport = newTransport(2)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	files, err := newWriter(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	p := &Proxy{
		cfg:     cfg,
		log:     log.With("component", "capture"),
		files:   files,
		usedIDs: newUsedIDs(),
		m:       newMetrics(registererOrNone(cfg.Registerer)),
		paths:   map[string]bool{},
		wake:    make(chan struct{}, 1),
		ready:   make(chan struct{}),
	}
	files.created = func(d time.Duration) { p.m.createSeconds.Observe(d.Seconds()) }
	files.fault = cfg.fault
	for _, path := range cfg.Paths {
		p.paths[path] = true
	}
	p.scr = &scraper{
		url:      metricsURL.String(),
		client:   &http.Client{Transport: cfg.ScrapeTransport},
		timeout:  cfg.ScrapeTimeout,
		maxBytes: cfg.MaxScrapeBytes,
		observe:  p.observeScrape,
		budget:   newBudget(max(0, cfg.ScrapeBudget)),
		waited:   func(d time.Duration) { p.m.budgetWaits.Observe(d.Seconds()) },
		spent:    func(d time.Duration) { p.m.scrapeCost.Add(d.Seconds()) },
	}
	p.m.budget.Set(max(0, cfg.ScrapeBudget))
	upstream := cfg.Upstream
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			// A credential for the proxy is not the server's: forwarded,
			// it would reach the server's logs, and clash with its own
			// API key. The client's own Authorization goes to the server
			// only when the proxy asks for none.
			switch {
			case p.cfg.UpstreamAuthorization != "":
				pr.Out.Header.Set("Authorization", p.cfg.UpstreamAuthorization)
			case p.cfg.OwnAuth != nil && p.cfg.OwnAuth():
				pr.Out.Header.Del("Authorization")
			}
			// ReverseProxy drops the client's forwarding headers before
			// Rewrite; the request is to reach the server unchanged.
			for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:      cfg.Transport,
		FlushInterval:  -1, // every chunk goes to the client as soon as it is read
		BufferPool:     bufferPool{},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

func registererOrNone(r prometheus.Registerer) prometheus.Registerer {
	if r == nil {
		return prometheus.NewRegistry() // private: the metrics are kept but not exposed
	}
	return r
}

func newTransport(idlePerHost int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = idlePerHost
	t.DisableCompression = true
	t.ForceAttemptHTTP2 = false
	return t
}

// Ready reports whether a scrape of the upstream's metrics has succeeded,
// so a before snapshot is available.
func (p *Proxy) Ready() bool { return p.scr.latest.Load() != nil }

// WaitReady blocks until Ready or until ctx is done.
func (p *Proxy) WaitReady(ctx context.Context) error {
	select {
	case <-p.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Wait blocks until the files of every request that has ended are written
// or given up (at most AfterTimeout plus a scrape after the end of the
// last response). Call it when no request is being served, e.g. after the
// HTTP server has shut down.
func (p *Proxy) Wait() { p.wg.Wait() }

// Close waits like Wait, then releases the snapshot directory.
func (p *Proxy) Close() error {
	p.wg.Wait()
	return p.files.close()
}

// Run keeps a recent scrape ready for the before snapshots, and writes a
// timeline snapshot every TimelineInterval while inference requests are in
// flight. A request's own scrape taken in the last half interval stands
// for the loop's. It returns when ctx is done.
func (p *Proxy) Run(ctx context.Context) error {
	var last time.Time // start of the loop's last scrape
	var prev *scrape   // the loop's last scrape (its own or a request's)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-p.wake:
		}
		busy := p.inFlight.Load() > 0
		timeline := busy && p.cfg.TimelineInterval > 0
		interval := p.cfg.IdleInterval
		if timeline {
			interval = p.cfg.TimelineInterval
		}
		if wait := time.Until(last.Add(interval)); wait > 0 {
			timer.Reset(wait)
			continue
		}
		if s := p.scr.latest.Load(); s != nil && s != prev && s.started.After(last) && time.Since(s.started) < interval/2 {
			// A scrape taken for a request (a first or an after) since the
			// loop's last one, in the last half interval, stands for this
			// one: it is the next before, and while busy the timeline
			// snapshot (a hard link to the request's file). The server is
			// not scraped more often than the requests need.
			if timeline {
				p.writeSnapshot(TimelineID, parser.Timeline, s)
			}
			last, prev = s.started, s
			timer.Reset(max(0, interval-time.Since(last)))
			continue
		}
		if timeline && p.scr.budget.wait(time.Now()) > 0 {
			// Out of budget: the requests' own scrapes come first.
			p.m.skipped.WithLabelValues(string(parser.Timeline)).Inc()
			last = time.Now()
			timer.Reset(interval)
			continue
		}
		last = time.Now()
		s := p.scr.next()
		prev = s
		select {
		case <-s.done:
		case <-ctx.Done():
			return nil
		}
		if timeline && s.ok() {
			p.writeSnapshot(TimelineID, parser.Timeline, s)
		}
		timer.Reset(max(0, interval-time.Since(last)))
	}
}

func (p *Proxy) observeScrape(s *scrape) {
	if !s.started.IsZero() {
		d := time.Since(s.started).Seconds()
		p.m.scrapeDuration.Observe(d)
		p.m.scrapes.Inc()
	}
	if s.ok() {
		p.readyOnce.Do(func() { close(p.ready) })
		if p.scrapeState.Swap(1) != 1 {
			p.log.Info("upstream metrics scrape ok", "url", p.scr.url)
		}
		return
	}
	p.m.scrapeFailures.WithLabelValues(s.failure).Inc()
	if p.scrapeState.Swap(2) != 2 {
		p.log.Warn("upstream metrics scrape failing", "url", p.scr.url, "reason", s.failure, "err", s.err)
	} else {
		p.log.Debug("upstream metrics scrape failed", "reason", s.failure, "err", s.err)
	}
}

type trackerKey struct{}

// ServeHTTP forwards the request to the upstream and, for inference
// requests, records what the snapshots need.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := &tracker{p: p, ctx: r.Context()}
	if r.Method == http.MethodPost && p.paths[r.URL.Path] {
		// The before is taken from scrapes that completed before the
		// request is forwarded: all of their content precedes it.
		t.before = p.scr.latest.Load()
		t.receivedAt = time.Now() // after the before was chosen: it precedes this
		t.inference = true
		t.method, t.path = r.Method, r.URL.Path
		p.m.inFlight.Inc()
		if p.inFlight.Add(1) == 1 {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
		p.wg.Add(1) // for the recorder, started when there is work for it
	}
	defer t.done()
	body, refused := p.readBody(w, r)
	if refused != "" {
		t.refused = refused
		return
	}
	if held, ok := body.(*heldBody); ok {
		defer held.free() // if the transport did not read or close it
	}
	r.Body = body
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), trackerKey{}, t)))
}

// maxReadWhole is the largest request body read whole before forwarding.
const maxReadWhole = 1 << 20

// minBodyBuffer is the first buffer of a body read whole; it doubles as
// the bytes arrive.
const minBodyBuffer = 4 << 10

// readBody reads a request's body (for inference, a JSON document of a
// few kilobytes) before it is forwarded, and returns a body that replays
// it. The transport forwarding a body still reads it, to check for its
// end, when the upstream's answer may already have begun; Go's HTTP/1
// server consumes and closes the request body when the answer's first
// bytes are written, and the transport, failing to read, closed the
// upstream connection in the middle of the answer: under load, a stream
// was cut short. (Letting the server read and write at once,
// EnableFullDuplex, moves the race to after the handler returns, where
// the server panics on the concurrent read.) A larger body (an audio
// upload), or one of unknown length, is forwarded as it arrives.
//
// A body read whole must arrive within BodyTimeout. Its buffer grows as
// bytes arrive (a declared Content-Length reserves nothing), and all such
// buffers together stay within MaxBodyMemory. A body that does not arrive
// in time (408), does not fit (503: streaming it instead would bring the
// race above back, under load, which is when the bound is reached) or
// breaks off is not forwarded: refused is then the request's outcome,
// and the answer, if any, has been written.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request) (body io.ReadCloser, refused string) {
	n := r.ContentLength
	if r.Body == nil || r.Body == http.NoBody || n <= 0 || n > maxReadWhole {
		return r.Body, ""
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(p.cfg.BodyTimeout)) == nil {
		defer func() {
			if refused == "" {
				// The server's own read of the connection, which watches
				// for the client leaving, must not time out.
				_ = rc.SetReadDeadline(time.Time{})
			} else {
				// The server would read what is left of the body (to
				// reuse the connection) for as long as the client takes:
				// not at all.
				_ = rc.SetReadDeadline(time.Now())
			}
		}()
	}
	b := &heldBody{p: p, orig: r.Body}
	var buf []byte
	for int64(len(buf)) < n {
		if len(buf) == cap(buf) {
			size := min(n, max(2*int64(cap(buf)), minBodyBuffer))
			if !b.hold(size - int64(cap(buf))) {
				b.free()
				p.refuse(w, http.StatusServiceUnavailable, "the proxy holds too many request bodies; retry later")
				return nil, outcomeBodyMemory
			}
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			buf = grown
		}
		m, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF && int64(len(buf)) < n {
			err = io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			b.free()
			if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
				p.refuse(w, http.StatusRequestTimeout, "the request body did not arrive in time")
				return nil, outcomeBodyTimeout
			}
			return nil, outcomeClientGone // the client left: no one to answer
		}
	}
	b.buf = buf
	return b, ""
}

// refuse answers a request the proxy does not forward and closes the
// connection (the rest of the body is not read).
func (p *Proxy) refuse(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Connection", "close")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, status, msg)
}

// writeError answers with status and msg in the OpenAI error format, the
// one clients of an inference server parse.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": "delta-exporter capture: " + msg,
		"type":    strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_")),
		"param":   nil,
		"code":    status,
	}})
}

// heldBody replays a request body read whole. Its buffer counts towards
// MaxBodyMemory until the transport has read it to the end or closed it
// (or the request is over).
type heldBody struct {
	p    *Proxy
	orig io.ReadCloser
	buf  []byte
	off  int

	held  atomic.Int64 // bytes counted in the proxy's body memory
	freed sync.Once
}

// hold counts n more bytes, if they fit within MaxBodyMemory.
func (b *heldBody) hold(n int64) bool {
	for {
		used := b.p.bodyMemory.Load()
		if used+n > b.p.cfg.MaxBodyMemory {
			return false
		}
		if b.p.bodyMemory.CompareAndSwap(used, used+n) {
			b.held.Add(n)
			b.p.m.bodyBytes.Add(float64(n))
			return true
		}
	}
}

// free gives back what b holds, once.
func (b *heldBody) free() {
	b.freed.Do(func() {
		n := b.held.Load()
		b.p.bodyMemory.Add(-n)
		b.p.m.bodyBytes.Sub(float64(n))
	})
}

func (b *heldBody) Read(p []byte) (int, error) {
	if b.off >= len(b.buf) {
		b.buf = nil // the transport has it all: let it go
		b.free()
		return 0, io.EOF
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	return n, nil
}

func (b *heldBody) Close() error {
	b.free()
	return b.orig.Close()
}

func trackerOf(r *http.Request) *tracker {
	t, _ := r.Context().Value(trackerKey{}).(*tracker)
	return t
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	if p.upstreamFailing.Swap(false) {
		p.log.Info("upstream requests work again")
	}
	t := trackerOf(resp.Request)
	if t == nil {
		return nil
	}
	t.status = resp.StatusCode
	if !t.inference || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	t.stream = ct == "text/event-stream"
	ce := resp.Header.Get("Content-Encoding")
	t.encoded = ce != "" && ce != "identity"
	resp.Body = &bodyWatcher{rc: resp.Body, t: t}
	return nil
}

// errorHandler answers when the upstream could not be asked or did not
// answer: a 502 in the OpenAI error format.
func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	t := trackerOf(r)
	if t != nil {
		if r.Context().Err() != nil {
			t.clientGone = true
		} else {
			t.unavailable = true
		}
	}
	// The error names the upstream's address and how it failed: that is
	// for the operator's log, not for clients. A warning at the first
	// failure after a success (an outage fails every request), debug lines
	// after that; a client that left is not the upstream's failure.
	switch {
	case t != nil && t.clientGone:
		p.log.Debug("upstream request abandoned by the client", "path", r.URL.Path, "err", err)
	case p.upstreamFailing.Swap(true):
		p.log.Debug("upstream request failed", "path", r.URL.Path, "err", err)
	default:
		p.log.Warn("upstream request failed", "path", r.URL.Path, "err", err)
	}
	writeError(w, http.StatusBadGateway, "the upstream server could not be reached")
}

// bufferPool recycles the copy buffers of the proxied bodies.
type bufferPool struct{}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *copyBuffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { copyBuffers.Put(&b) }
