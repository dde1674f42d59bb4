// Package fakeupstream is an OpenAI-compatible inference server for tests
// and benchmarks. It emulates what delta-exporter cares about in vLLM V1:
// request ids built from X-Request-Id, streaming and non-streaming chat and
// text completions, and a /metrics endpoint whose histograms (from package
// simulate) get each request's observations at the moments vLLM makes
// them: time to first token just before the first chunk is sent, the
// finish histograms just before the last chunk. Queue, prefill and decode
// times are controlled per request (milliseconds in tests), and the server
// records every value it observed per response id, as ground truth.
package fakeupstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
)

// Request is what the Plan function sees of an incoming request.
type Request struct {
	Path   string
	Header http.Header
	// Seq numbers the inference requests in arrival order, from 0.
	Seq       int
	Model     string
	Stream    bool
	MaxTokens int
	// Words is the number of whitespace-separated words in the prompt or
	// messages.
	Words int
}

// Plan says how the server treats one request.
type Plan struct {
	// Queue is how long the request waits before it is scheduled, on top of
	// waiting for a free slot when Config.MaxRunning is set.
	Queue time.Duration
	// Prefill is the time from scheduling to the first token; Decode from
	// the first token to the last. Decode is spread evenly over the
	// GenerationTokens-1 later tokens, each sent as its own chunk.
	Prefill, Decode time.Duration
	// PromptTokens and GenerationTokens are the token counts reported and
	// observed; GenerationTokens < 1 means 1.
	PromptTokens, GenerationTokens int
	// Engine is the engine label of the observations.
	Engine int
}

// DefaultPlan is used when Config.Plan is nil: a prompt token per word
// plus 8, max_tokens (16 if unset) generated tokens, 2ms of prefill and
// 1ms per generated token.
func DefaultPlan(r *Request) Plan {
	gen := r.MaxTokens
	if gen <= 0 {
		gen = 16
	}
	return Plan{
		Prefill:          2 * time.Millisecond,
		Decode:           time.Duration(gen-1) * time.Millisecond,
		PromptTokens:     r.Words + 8,
		GenerationTokens: gen,
	}
}

// Config configures a Server.
type Config struct {
	// Metrics is the cumulative metrics state; nil means a fresh
	// simulate.NewServer serving Model.
	Metrics *simulate.Server
	// Model is the served model name (simulate.DefaultModel if empty).
	Model string
	// Plan decides each request's timing and token counts (DefaultPlan).
	Plan func(*Request) Plan
	// MaxRunning is the number of requests scheduled at once; others wait
	// in the queue. 0 means no limit.
	MaxRunning int
	// FinishDelay, when positive, makes the finish observations land this
	// long after the response has been sent instead of before its last
	// chunk (the race of vLLM V0).
	FinishDelay time.Duration
	// PerRequestMetrics is vLLM's --enable-per-request-metrics: responses
	// to requests with "include_metrics": true carry a "metrics" object.
	PerRequestMetrics bool
	// OnDone, when set, is called with a copy of the request's observations
	// when its handler returns (finished or aborted). Tests use it to wait
	// without sleeping.
	OnDone func(Observation)
}

// Observation is what the server observed for one request: the ground
// truth a capture directory must let the exporter recover.
type Observation struct {
	ID     string
	Path   string
	Model  string
	Engine int
	Stream bool
	// HasTTFT is set once the time to first token was observed.
	HasTTFT bool
	TTFT    float64
	// Finished is set once the finish histograms were observed with Finish.
	Finished bool
	Finish   simulate.Finish
	// Aborted is set when the client left before the request finished; as
	// in vLLM V1 (0.11) no finish observation is made then.
	Aborted bool
	// TTFTSeq and FinishSeq number the observations in the order they
	// were made, from 1, over the whole server: with one model and one
	// engine they are the histogram counts right after the observation, so
	// a scrape whose count is c contains exactly the observations with
	// sequence numbers up to c.
	TTFTSeq, FinishSeq int
	// ArrivedAt, FirstTokenAt and FinishedAt are the moments of arrival and
	// of the two observations.
	ArrivedAt, FirstTokenAt, FinishedAt time.Time
}

// MetricsFault makes /metrics misbehave.
type MetricsFault struct {
	// Delay holds every answer this long (or until the client gives up).
	Delay time.Duration
	// Status, when not 0 or 200, is answered with a text error body.
	Status int
	// Truncate announces the full length but sends half of the body and
	// closes the connection.
	Truncate bool
	// Garbage answers 200 with a body that is not the text format.
	Garbage bool
}

// Server is the fake upstream. It is an http.Handler.
type Server struct {
	cfg     Config
	metrics *simulate.Server
	mux     *http.ServeMux
	slots   chan struct{}

	mu        sync.Mutex // also held around each observation, so sequence numbers follow observation order
	seq       int
	ttftSeq   int
	finishSeq int
	obs       []*Observation
	byID      map[string]*Observation
	fault     MetricsFault
	running   int
	waiting   int
	scrapes   int
	finishWG  sync.WaitGroup
}

// New builds a Server.
func New(cfg Config) *Server {
	if cfg.Model == "" {
		cfg.Model = simulate.DefaultModel
	}
	if cfg.Plan == nil {
		cfg.Plan = DefaultPlan
	}
	if cfg.Metrics == nil {
		cfg.Metrics = simulate.NewServer(simulate.ServerConfig{Models: []string{cfg.Model}})
	}
	s := &Server{cfg: cfg, metrics: cfg.Metrics, mux: http.NewServeMux(), byID: map[string]*Observation{}}
	if cfg.MaxRunning > 0 {
		s.slots = make(chan struct{}, cfg.MaxRunning)
	}
	s.mux.HandleFunc("POST /v1/chat/completions", s.completion)
	s.mux.HandleFunc("POST /v1/completions", s.completion)
	s.mux.HandleFunc("GET /metrics", s.serveMetrics)
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {})
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Metrics returns the server's metrics state.
func (s *Server) Metrics() *simulate.Server { return s.metrics }

// SetMetricsFault changes how /metrics answers from now on.
func (s *Server) SetMetricsFault(f MetricsFault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Scrapes returns how many times /metrics was asked.
func (s *Server) Scrapes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scrapes
}

// Observations returns a copy of every request's observations, in arrival
// order.
func (s *Server) Observations() []Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Observation, len(s.obs))
	for i, o := range s.obs {
		out[i] = *o
	}
	return out
}

// Observation returns the observations of the latest request with id.
func (s *Server) Observation(id string) (Observation, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.byID[id]
	if !ok {
		return Observation{}, false
	}
	return *o, true
}

// WaitFinishes waits for finish observations delayed by FinishDelay.
func (s *Server) WaitFinishes() { s.finishWG.Wait() }

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"object": "list",
		"data":   []any{map[string]any{"id": s.cfg.Model, "object": "model", "owned_by": "vllm"}},
	})
}

var metricsBufs = sync.Pool{New: func() any { return new([]byte) }}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f := s.fault
	s.scrapes++
	s.mu.Unlock()
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if f.Status != 0 && f.Status != http.StatusOK {
		http.Error(w, "Internal Server Error", f.Status)
		return
	}
	if f.Garbage {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("curl: (7) Failed to connect to localhost port 8000 after 0 ms: Couldn't connect to server\n"))
		return
	}
	s.metrics.SetTime(time.Now())
	bp := metricsBufs.Get().(*[]byte)
	b := s.metrics.AppendText((*bp)[:0])
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if f.Truncate {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b[:len(b)/2])
		if rc := http.NewResponseController(w); rc != nil {
			_ = rc.Flush()
		}
		panic(http.ErrAbortHandler) // close the connection mid-body
	}
	_, _ = w.Write(b)
	*bp = b
	metricsBufs.Put(bp)
}

// body is the part of a completion request the server reads.
type body struct {
	Model         string          `json:"model"`
	Messages      []message       `json:"messages"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	MaxTokens     int             `json:"max_tokens"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	IncludeMetrics bool `json:"include_metrics"`
}

type message struct {
	Content json.RawMessage `json:"content"`
}

func words(raw json.RawMessage) int {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return len(strings.Fields(s))
	}
	return len(bytes.Fields(raw))
}

func (s *Server) completion(w http.ResponseWriter, r *http.Request) {
	arrival := time.Now()
	var b body
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequestError", "invalid JSON body: "+err.Error())
		return
	}
	if b.Model != "" && b.Model != s.cfg.Model {
		writeError(w, http.StatusNotFound, "NotFoundError", "The model `"+b.Model+"` does not exist.")
		return
	}
	chat := r.URL.Path == "/v1/chat/completions"
	req := &Request{Path: r.URL.Path, Header: r.Header, Model: s.cfg.Model, Stream: b.Stream, MaxTokens: b.MaxTokens}
	if chat {
		for _, m := range b.Messages {
			req.Words += words(m.Content)
		}
	} else {
		req.Words = words(b.Prompt)
	}
	// vLLM builds the id from the client's X-Request-Id, unchecked.
	base := r.Header.Get("X-Request-Id")
	if base == "" {
		var rb [16]byte
		_, _ = rand.Read(rb[:])
		base = hex.EncodeToString(rb[:])
	}
	id := "cmpl-" + base
	if chat {
		id = "chatcmpl-" + base
	}
	s.mu.Lock()
	req.Seq = s.seq
	s.seq++
	s.mu.Unlock()
	plan := s.cfg.Plan(req)
	if plan.GenerationTokens < 1 {
		plan.GenerationTokens = 1
	}
	o := &Observation{ID: id, Path: r.URL.Path, Model: s.cfg.Model, Engine: plan.Engine, Stream: b.Stream, ArrivedAt: arrival}
	s.mu.Lock()
	s.obs = append(s.obs, o)
	s.byID[id] = o
	s.mu.Unlock()

	g := &gen{
		s: s, w: w, ctx: r.Context(), o: o, plan: plan, chat: chat, stream: b.Stream,
		usage:   b.StreamOptions != nil && b.StreamOptions.IncludeUsage,
		metrics: s.cfg.PerRequestMetrics && b.IncludeMetrics,
		idJSON:  mustJSON(id), modelJSON: mustJSON(s.cfg.Model), created: strconv.FormatInt(arrival.Unix(), 10),
	}
	if s.cfg.OnDone != nil {
		defer func() {
			s.mu.Lock()
			c := *o
			s.mu.Unlock()
			s.cfg.OnDone(c)
		}()
	}
	g.run(arrival)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "error", "message": msg, "type": typ, "param": nil, "code": status})
}

// gen generates one response.
type gen struct {
	s      *Server
	w      http.ResponseWriter
	ctx    context.Context
	o      *Observation
	plan   Plan
	chat   bool
	stream bool
	usage  bool // stream_options.include_usage
	// metrics: add vLLM's per-request metrics object
	metrics                 bool
	idJSON, modelJSON       []byte
	created                 string
	buf                     []byte
	scheduled, first, final time.Time
}

// sleep waits d unless the client leaves first. The wait ends when due,
// whatever else the process does (see after).
func (g *gen) sleep(d time.Duration) bool {
	if d <= 0 {
		return g.ctx.Err() == nil
	}
	select {
	case <-after(time.Now().Add(d)):
		return true
	case <-g.ctx.Done():
		return false
	}
}

// timerAfter returns a channel closed at due, by a Go timer.
func timerAfter(due time.Time) <-chan struct{} {
	done := make(chan struct{})
	time.AfterFunc(time.Until(due), func() { close(done) })
	return done
}

func (g *gen) setLoad(dRun, dWait int) {
	s := g.s
	s.mu.Lock()
	s.running += dRun
	s.waiting += dWait
	l := simulate.Load{Running: s.running, Waiting: s.waiting}
	s.mu.Unlock()
	s.metrics.SetLoad(g.o.Model, g.plan.Engine, l)
}

func (g *gen) abort() {
	g.s.mu.Lock()
	g.o.Aborted = true
	g.s.mu.Unlock()
}

func (g *gen) run(arrival time.Time) {
	s, o, plan := g.s, g.o, g.plan
	g.setLoad(0, 1)
	ok := g.sleep(plan.Queue)
	if ok && s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		case <-g.ctx.Done():
			ok = false
		}
	}
	g.setLoad(0, -1)
	if !ok {
		g.abort()
		return
	}
	g.scheduled = time.Now()
	g.setLoad(1, 0)
	defer g.setLoad(-1, 0)
	if !g.sleep(plan.Prefill) {
		g.abort()
		return
	}
	g.first = time.Now()
	ttft := g.first.Sub(arrival).Seconds()
	s.mu.Lock()
	s.metrics.ObserveFirstToken(o.Model, plan.Engine, ttft)
	s.ttftSeq++
	o.HasTTFT, o.TTFT, o.FirstTokenAt, o.TTFTSeq = true, ttft, g.first, s.ttftSeq
	s.mu.Unlock()
	if g.stream {
		g.w.Header().Set("Content-Type", "text/event-stream")
		g.w.Header().Set("Cache-Control", "no-cache")
		if !g.sendChunk(true, "") {
			g.abort()
			return
		}
	}
	n := plan.GenerationTokens
	for i := 1; i < n; i++ {
		// Token i is due at first + Decode*i/(n-1): no drift from sleeps.
		due := g.first.Add(time.Duration(int64(plan.Decode) * int64(i) / int64(n-1)))
		if !g.sleep(time.Until(due)) {
			g.abort()
			return
		}
		// The last token goes out with the finish reason, after the
		// finish observations.
		if i < n-1 && g.stream && !g.sendChunk(false, "") {
			g.abort()
			return
		}
	}
	last := g.first // decode is 0 for a one-token answer, as in vLLM
	if n > 1 {
		last = time.Now()
	}
	now := time.Now()
	reason := "length"
	f := simulate.Finish{
		Queue:            g.scheduled.Sub(arrival).Seconds(),
		Prefill:          g.first.Sub(g.scheduled).Seconds(),
		Decode:           last.Sub(g.first).Seconds(),
		Inference:        last.Sub(g.scheduled).Seconds(),
		E2E:              now.Sub(arrival).Seconds(),
		PromptTokens:     plan.PromptTokens,
		GenerationTokens: n,
		FinishedReason:   reason,
	}
	observe := func() {
		s.mu.Lock()
		s.metrics.ObserveFinish(o.Model, plan.Engine, f)
		s.finishSeq++
		o.Finished, o.Finish, o.FinishedAt, o.FinishSeq = true, f, time.Now(), s.finishSeq
		s.mu.Unlock()
	}
	if s.cfg.FinishDelay <= 0 {
		observe()
	} else {
		s.finishWG.Add(1)
		defer func() {
			go func() {
				defer s.finishWG.Done()
				time.Sleep(s.cfg.FinishDelay)
				observe()
			}()
		}()
	}
	if g.stream {
		if n > 1 && !g.sendChunk(false, reason) {
			return
		}
		if n == 1 {
			// The only token went out with the first chunk; the finish
			// reason follows in a chunk of its own.
			if !g.sendChunk(false, reason) {
				return
			}
		}
		if g.usage || g.metrics {
			g.sendTail()
		}
		_, _ = g.w.Write([]byte("data: [DONE]\n\n"))
		return
	}
	g.writeWhole(reason)
}

// sendChunk sends one token (or the finish reason) as a stream event.
func (g *gen) sendChunk(first bool, finish string) bool {
	b := g.buf[:0]
	b = append(b, "data: "...)
	b = g.head(b, true)
	b = append(b, `,"choices":[{"index":0,`...)
	content := "tok "
	if finish != "" && g.plan.GenerationTokens > 1 {
		content = "tok"
	} else if finish != "" {
		content = ""
	}
	if g.chat {
		b = append(b, `"delta":{`...)
		if first {
			b = append(b, `"role":"assistant",`...)
		}
		b = append(b, `"content":`...)
		b = strconv.AppendQuote(b, content)
		b = append(b, '}')
	} else {
		b = append(b, `"text":`...)
		b = strconv.AppendQuote(b, content)
	}
	b = append(b, `,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendQuote(b, finish)
	}
	b = append(b, "}]}\n\n"...)
	g.buf = b
	if _, err := g.w.Write(b); err != nil {
		return false
	}
	return http.NewResponseController(g.w).Flush() == nil
}

func (g *gen) head(b []byte, chunk bool) []byte {
	b = append(b, `{"id":`...)
	b = append(b, g.idJSON...)
	obj := "text_completion"
	if g.chat {
		obj = "chat.completion"
		if chunk {
			obj = "chat.completion.chunk"
		}
	}
	b = append(b, `,"object":"`...)
	b = append(b, obj...)
	b = append(b, `","created":`...)
	b = append(b, g.created...)
	b = append(b, `,"model":`...)
	b = append(b, g.modelJSON...)
	return b
}

func (g *gen) usageJSON(b []byte) []byte {
	p, c := g.plan.PromptTokens, g.plan.GenerationTokens
	b = append(b, `"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(p), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(p+c), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(c), 10)
	b = append(b, `,"prompt_tokens_details":null}`...)
	return b
}

// metricsJSON is the per-request metrics object of vLLM PR #46768, from
// the same clock readings as the observations.
func (g *gen) metricsJSON(b []byte) []byte {
	o := g.o
	g.s.mu.Lock()
	ttft := o.TTFT
	g.s.mu.Unlock()
	n := g.plan.GenerationTokens
	genTime := time.Since(g.first).Seconds()
	m := map[string]float64{
		"time_to_first_token_ms": ttft * 1000,
		"queue_time_ms":          g.scheduled.Sub(o.ArrivedAt).Seconds() * 1000,
		"generation_time_ms":     genTime * 1000,
		"mean_itl_ms":            0,
		"tokens_per_second":      0,
	}
	if n > 1 {
		m["mean_itl_ms"] = genTime * 1000 / float64(n-1)
	}
	if genTime > 0 {
		m["tokens_per_second"] = float64(n) / genTime
	}
	b = append(b, `"metrics":`...)
	return append(b, mustJSON(m)...)
}

func (g *gen) sendTail() {
	b := append(g.buf[:0], "data: "...)
	b = g.head(b, true)
	b = append(b, `,"choices":[]`...)
	if g.usage {
		b = append(b, ',')
		b = g.usageJSON(b)
	}
	if g.metrics {
		b = append(b, ',')
		b = g.metricsJSON(b)
	}
	b = append(b, "}\n\n"...)
	g.buf = b
	_, _ = g.w.Write(b)
}

func (g *gen) writeWhole(reason string) {
	n := g.plan.GenerationTokens
	text := strings.TrimSuffix(strings.Repeat("tok ", n), " ")
	b := g.head(nil, false)
	b = append(b, `,"choices":[{"index":0,`...)
	if g.chat {
		b = append(b, `"message":{"role":"assistant","content":`...)
		b = strconv.AppendQuote(b, text)
		b = append(b, '}')
	} else {
		b = append(b, `"text":`...)
		b = strconv.AppendQuote(b, text)
	}
	b = append(b, `,"logprobs":null,"finish_reason":`...)
	b = strconv.AppendQuote(b, reason)
	b = append(b, "}],"...)
	b = g.usageJSON(b)
	if g.metrics {
		b = append(b, ',')
		b = g.metricsJSON(b)
	}
	b = append(b, "}\n"...)
	g.w.Header().Set("Content-Type", "application/json")
	g.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = g.w.Write(b)
}
