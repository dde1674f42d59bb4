package simulate

import (
	"container/heap"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Config describes one simulated load run.
type Config struct {
	Seed     int64
	Requests int
	// MeanInFlight is the mean number of requests in flight. Arrivals are
	// Poisson with rate MeanInFlight / mean request duration. 0 means
	// strictly sequential: each request arrives after the previous one's
	// after snapshot was taken, so no two request windows overlap.
	MeanInFlight float64
	// Clients > 0 replaces the Poisson arrivals with that many closed-loop
	// clients: each sends a request, waits for its answer and its after
	// snapshot, thinks 15-400 ms and sends the next (MeanInFlight is then
	// not used).
	Clients int
	// Think, with Clients, when its upper bound is above 0, is the range
	// of a client's think time between an answer and its next request
	// (uniform); zero keeps 15-400 ms. A load tool that sends back to
	// back (the realistic upstream's tests) thinks for well under 1 ms.
	Think [2]time.Duration
	// Phases, with Clients, runs the first requests at other client
	// counts on the same server process: phase i sends its Requests with
	// its Clients closed-loop clients, the next phase starts once every
	// request of the one before has had its after snapshot, and the
	// requests left after the last phase go to the Clients. Requests
	// counts them all. A user who tries 1 and 4 clients before 16
	// (issue 16), or a quiet start before the load.
	Phases []Phase
	// Models and Engines override Server.Models and Server.Engines when
	// set. Each request picks a model and an engine uniformly at random;
	// models differ in speed. In styles without an engine label the
	// engines of a model share one series (Truth.Engine is still the
	// engine that served the request).
	Models  []string
	Engines int
	// Start is the time of the run's beginning; zero means a fixed date
	// an hour after the server's start.
	Start  time.Time
	Server ServerConfig

	// Snapshot-taking behaviour. The before snapshot is taken BeforeDelay
	// after arrival; the after snapshot AfterDelay ± AfterJitter (uniform)
	// after the finish observation, never before it. Delays of 0 mean at
	// that very moment (observations at an instant precede snapshots at
	// the same instant).
	BeforeDelay, AfterDelay time.Duration
	AfterJitter             time.Duration
	// TimelineInterval, when > 0, writes timeline snapshots (request id
	// "timeline") at every multiple of the interval after Start at which a
	// request is in flight.
	TimelineInterval time.Duration
	// FirstSnapshots writes a first snapshot right after each request's
	// TTFT observation (for a one-token answer, after its finish
	// observations too: vLLM makes both in the same synchronous step).
	FirstSnapshots bool
	// MaxRunning is how many requests one engine runs at once; further
	// requests wait in its queue. 0 means 48.
	MaxRunning int

	// Capture writes what `delta-exporter capture` writes around the
	// snapshots (see capture.go): each snapshot opens with the scrape's
	// start line and is named by when its response arrived, the first and
	// after snapshots are taken after the first and last response bytes,
	// and each request has an info sidecar with the proxy's times and the
	// token usage.
	Capture bool
	// NonStreaming is the fraction of requests that do not stream (with
	// Capture): no first snapshot; the first response byte comes at the
	// end.
	NonStreaming float64
	// ObserveDelay: the server observes each request's values up to this
	// long (uniform) after the timestamp that ends them, as vLLM's output
	// handler does after processing a batch. 0: at that moment.
	ObserveDelay time.Duration

	// ServerMetrics (with Capture) puts vLLM's per-request metrics
	// object (--enable-per-request-metrics, VLLM_METRICS.md §6) in each
	// info sidecar as server_metrics: queue_time_ms,
	// time_to_first_token_ms (from scheduling, not arrival: here the
	// engine's prefill time), generation_time_ms (scheduling to last
	// token), mean_itl_ms and tokens_per_second, in milliseconds rounded
	// to the microsecond. The truth of every value it derives from is in
	// Truth.
	ServerMetrics bool

	// PromptTokens and GenTokens, when their upper bound is above 0, draw
	// every request's prompt and answer lengths uniformly from [lo, hi]
	// tokens instead of the default shapes (prompts log-uniform in
	// 20-4000, answers log-uniform in 2-1000 with one in twelve of one
	// token): the shape of a load tool that sends short prompts and sets
	// max_tokens, as the realistic upstream's tests do (vllmLoad: prompts
	// of 9-208 tokens, answers of 4-24). An answer drawn from GenTokens
	// ends at max_tokens ("length"). They draw from a generator of their
	// own, so the rest of each request's shape stays the seed's.
	PromptTokens, GenTokens [2]int
	// ScrapeTime, with Capture, is the longest a scrape takes from its
	// start to its response's arrival: each scrape's duration is drawn
	// uniformly from [0, ScrapeTime] and its content taken at a uniform
	// point inside it, as on a server whose exposition renders on its
	// event loop (prometheus_client on vLLM's asyncio loop: the request
	// waits for its turn, the registry is rendered at once, the body is
	// sent). 0 keeps the default: 0.15-1.5 ms, content near the end.
	ScrapeTime time.Duration
	// LatestBefore, with Capture, takes each request's before as capture
	// does: the latest scrape (any request's first or after, a timeline
	// or another before) that had completed when the proxy received the
	// request, if one completed in the last second (capture's idle
	// scrape), else a fresh one. Without it the before is scraped at the
	// request's arrival, fresher than capture's: on the realistic Python
	// upstream the before's scrape started a median 18 ms (p90 71 ms)
	// before the request was received at 16 clients and 4-24 tokens, 168
	// ms (p90 589 ms) at 50-200 tokens.
	LatestBefore bool
	// FrontendLag, with Semantics.Steps, delays the frontend's turn on
	// each step's outputs by up to this long more (uniform, drawn per
	// step): its event loop was busy (a /metrics render, HTTP, another
	// step). TTFT and e2e run to the frontend's iteration timestamp,
	// queue, prefill and decode are the engine's, so a request's first
	// token is then observed up to FrontendLag away from its finish
	// moment less its decode. On the realistic Python upstream that
	// difference reached ±57 ms at 4-24 tokens and -163/+226 ms at 50-200
	// tokens on 2 shared cores (6 % of requests beyond 50 ms). 0: the
	// default's 0.2-1.5 ms.
	FrontendLag time.Duration
	// TPOT, when above 0, replaces every model's time per output token
	// (11-52 ms by model). A step-synchronous engine's decode step takes
	// TPOT × (0.5 + 0.012 × batch): 27 ms gives the realistic upstream's
	// 16 ms steps at 8 running requests (vllm_like.py's defaults).
	TPOT time.Duration

	// Semantics: how the server's metrics differ from vLLM V1's
	// (Profile.Apply sets them by name). The zero value is vLLM V1 in
	// continuous time, the model the shipped demo was made with.
	Semantics Semantics

	// rate, when set, is the arrival rate (calibrate); dry runs write no
	// snapshots.
	rate float64
	dry  bool
}

// Phase is one stretch of a closed-loop run (Config.Phases).
type Phase struct{ Clients, Requests int }

// ParsePhases reads phases written "clients:requests,…" (gendata's
// -phases); "" is none.
func ParsePhases(s string) ([]Phase, error) {
	if s == "" {
		return nil, nil
	}
	var out []Phase
	for _, f := range strings.Split(s, ",") {
		c, r, ok := strings.Cut(f, ":")
		cn, err1 := strconv.Atoi(c)
		rn, err2 := strconv.Atoi(r)
		if !ok || err1 != nil || err2 != nil || cn <= 0 || rn < 0 {
			return nil, fmt.Errorf("simulate: phase %q: want clients:requests, clients above 0", f)
		}
		out = append(out, Phase{Clients: cn, Requests: rn})
	}
	return out, nil
}

// speed is how fast a model processes tokens.
type speed struct {
	prefillTokPerSec float64
	tpot             float64 // seconds per output token
}

// speed gives model i of the run its speed: modelSpeed's, or
// Config.TPOT's decode speed.
func (r *run) speed(i int) speed {
	sp := modelSpeed(i)
	if r.cfg.TPOT > 0 {
		sp.tpot = r.cfg.TPOT.Seconds()
	}
	return sp
}

// modelSpeed gives model i of a run its speed: models differ by up to 5x.
func modelSpeed(i int) speed {
	table := [...]speed{{11000, 0.011}, {4200, 0.032}, {7000, 0.019}, {2600, 0.052}}
	return table[i%len(table)]
}

// request is one simulated request: its shape, drawn up front, and its
// timeline (offsets from Config.Start), filled as the run proceeds.
type request struct {
	id             string
	model          int
	engine         int
	prompt, gen    int
	maxTokens      int
	reason         string
	tok, baseQueue time.Duration // tokenization; minimum wait before the scheduler takes it
	prefill        time.Duration
	decode         time.Duration
	frontend       time.Duration // engine output to frontend observation

	arrival, queued, sched, first, finish, before, after time.Duration
	ttft                                                 float64
	truth                                                int // index in run.truths, set at finish

	// With ObserveDelay: the values wait here between their timestamp and
	// their observation.
	finishValues Finish
	delay        time.Duration // the first token's observe delay
	// With Capture: the proxy's view.
	stream                        bool
	received, firstByte, lastByte time.Duration

	// With Semantics (profile.go), drawn from prng.
	proc        int           // API server process
	drop        parser.Metric // the observation the server drops; NumMetrics: none
	early       bool          // the after comes before the finish is recorded
	prefillLate time.Duration // PrefillAtFirstToken: how much earlier its timer started
	waited      bool          // had to wait for a slot
	queueVal    float64       // QueueAtDequeue: the observed queue time
	prefillVal  float64       // PrefillAtFirstToken: the observed prefill time
	missing     [parser.NumMetrics]bool
	// With Capture: polling for the finish count to move.
	beforeE2E  uint64
	afterStart time.Duration
	pause      time.Duration
	observed   bool
	// With Semantics.Steps (steps.go).
	prefillLeft, generated, chunk int
	decoding                      bool
	firstTS, lastTS               time.Duration
	respAt                        time.Duration // the response was sent before the finish was recorded
}

type evKind uint8

const (
	evArrive evKind = iota
	evQueued
	evReady
	evFirst
	evFinish
	evObserveFirst  // with ObserveDelay
	evObserveFinish // with ObserveDelay
	evRecordFinish  // with LateFinish or EarlyAfter
	evObserveStep   // with Steps: the frontend records one engine step's outputs
	evStep          // with Steps: an engine step ends (req is the engine)
	// Snapshots: at equal times they come after observations.
	evBefore
	evFirstSnap
	evAfter
)

type event struct {
	at   time.Duration
	kind evKind
	seq  uint64
	req  int
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	a, b := q[i], q[j]
	if a.at != b.at {
		return a.at < b.at
	}
	if sa, sb := a.kind >= evBefore, b.kind >= evBefore; sa != sb {
		return !sa
	}
	return a.seq < b.seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// loadKey is one gauge label set.
type loadKey struct{ model, engine int }

// run is the state of one simulation.
type run struct {
	cfg  Config
	srv  *Server
	sink Sink
	rng  *rand.Rand
	reqs []request

	events eventQueue
	seq    uint64

	running  []int   // per engine
	fifo     [][]int // per engine: requests waiting for a slot
	loads    map[loadKey]*Load
	kvTokens map[loadKey]int
	inFlight int
	nextTick time.Duration

	buf    []byte
	truths []Truth

	// crng draws what only Capture and ObserveDelay use, so that runs
	// without them stay identical to earlier versions.
	crng *rand.Rand
	// prng draws what only Semantics use, for the same reason.
	prng *rand.Rand
	// startFloor, when not zero, is the earliest scrape start scrapeLine
	// may write: the first byte, for a first snapshot (capture starts
	// that scrape once the byte has passed).
	startFloor time.Time

	next int // with Clients: the next request to send
	// With Clients: the phase being run (len(Phases): the last, with
	// Clients), the index after its last request, and how many requests
	// have had their after snapshot.
	phase, phaseEnd, done int

	// With LatestBefore: the last scrapes taken, in the order taken.
	kept  [8]keptScrape
	keptN int

	// With Semantics.Steps (steps.go).
	engines      []engineState
	steps        []stepOut
	frontendFree time.Duration
	// With Semantics.APIServers > 1 (hiding.go): the observations of the
	// last ScrapeSpread, with when and by which process they were made.
	recent      []recentObs
	recording   []hiddenObs
	hidden      []hiddenObs
	hiddenT     time.Duration
	hiddenValid bool
	saved       []savedSeries
}

// Run simulates cfg.Requests requests against a simulated server, hands
// every snapshot to sink in time order, and returns the truth of each
// request in finish order.
func Run(cfg Config, sink Sink) ([]Truth, error) {
	if cfg.Requests < 0 || cfg.Clients < 0 {
		return nil, errors.New("simulate: negative request or client count")
	}
	for _, ph := range cfg.Phases {
		if cfg.Clients == 0 || ph.Clients <= 0 || ph.Requests < 0 {
			return nil, errors.New("simulate: a phase needs Clients, and clients and requests of its own")
		}
	}
	if cfg.MeanInFlight < 0 || math.IsNaN(cfg.MeanInFlight) || math.IsInf(cfg.MeanInFlight, 0) {
		return nil, fmt.Errorf("simulate: bad mean in flight %v", cfg.MeanInFlight)
	}
	if cfg.TimelineInterval < 0 || cfg.BeforeDelay < 0 || cfg.AfterDelay < 0 || cfg.AfterJitter < 0 || cfg.ObserveDelay < 0 ||
		cfg.Semantics.LateFinish < 0 || cfg.Semantics.ScrapeSpread < 0 {
		return nil, errors.New("simulate: negative delay")
	}
	if sm := cfg.Semantics; sm.EarlyAfter < 0 || sm.EarlyAfter > 1 || sm.DropRate < 0 || sm.DropRate > 1 {
		return nil, errors.New("simulate: fraction out of [0, 1]")
	}
	for _, b := range [][2]int{cfg.PromptTokens, cfg.GenTokens} {
		if b[1] > 0 && (b[0] < 1 || b[0] > b[1]) {
			return nil, fmt.Errorf("simulate: token range %v: want 1 <= lo <= hi", b)
		}
	}
	if cfg.ScrapeTime < 0 || cfg.TPOT < 0 || cfg.FrontendLag < 0 || cfg.Think[0] < 0 || cfg.Think[0] > cfg.Think[1] {
		return nil, errors.New("simulate: negative ScrapeTime, TPOT or FrontendLag, or a bad Think range")
	}
	if cfg.Semantics.APIServers > maxAPIServers {
		return nil, fmt.Errorf("simulate: more than %d API servers", maxAPIServers)
	}
	if len(cfg.Models) > 0 {
		cfg.Server.Models = cfg.Models
	}
	if cfg.Engines > 0 {
		cfg.Server.Engines = cfg.Engines
	}
	if cfg.Server.StartTime.IsZero() {
		cfg.Server.StartTime = DefaultStartTime()
	}
	if cfg.Start.IsZero() {
		cfg.Start = cfg.Server.StartTime.Add(time.Hour)
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = 48
	}
	srv := NewServer(cfg.Server)
	cfg.Server = srv.Config()
	cfg.Models, cfg.Engines = cfg.Server.Models, cfg.Server.Engines

	r := &run{
		cfg:      cfg,
		srv:      srv,
		sink:     sink,
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), 0x9e3779b97f4a7c15)),
		running:  make([]int, cfg.Engines),
		fifo:     make([][]int, cfg.Engines),
		loads:    map[loadKey]*Load{},
		kvTokens: map[loadKey]int{},
		nextTick: cfg.TimelineInterval,
		crng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x2545f4914f6cdd1d)),
		prng:     rand.New(rand.NewPCG(uint64(cfg.Seed), 0x3c6ef372fe94f82b)),
		engines:  make([]engineState, cfg.Engines),
	}
	if r.cfg.Semantics.APIServers > 1 && r.cfg.Semantics.ScrapeSpread <= 0 {
		r.cfg.Semantics.ScrapeSpread = 20 * time.Millisecond
	}
	r.draw()
	r.drawSemantics()
	if err := r.calibrate(); err != nil {
		return nil, err
	}
	r.scheduleArrivals()
	if err := r.loop(); err != nil {
		return nil, err
	}
	return r.truths, nil
}

// logUniform draws from [lo, hi] with a uniform logarithm: many small
// values, a long tail.
func (r *run) logUniform(lo, hi float64) float64 {
	return math.Exp(math.Log(lo) + r.rng.Float64()*(math.Log(hi)-math.Log(lo)))
}

func (r *run) uniform(lo, hi float64) float64 { return lo + r.rng.Float64()*(hi-lo) }

func dur(sec float64) time.Duration { return time.Duration(math.Round(sec * 1e9)) }

// draw makes every request's shape up front, so that the arrival rate can
// be set from the mean duration and the run stays deterministic.
func (r *run) draw() {
	seen := map[string]bool{}
	r.reqs = make([]request, r.cfg.Requests)
	srng := rand.New(rand.NewPCG(uint64(r.cfg.Seed), 0xbb67ae8584caa73b))
	between := func(b [2]int) int { return b[0] + srng.IntN(b[1]-b[0]+1) }
	for i := range r.reqs {
		q := &r.reqs[i]
		for {
			q.id = r.requestID(i)
			if !seen[q.id] {
				seen[q.id] = true
				break
			}
		}
		q.model = r.rng.IntN(len(r.cfg.Models))
		q.engine = r.rng.IntN(r.cfg.Engines)
		sp := r.speed(q.model)
		q.prompt = int(math.Round(r.logUniform(20, 4000)))
		if r.rng.IntN(12) == 0 {
			q.gen = 1 // one-token answers (classification, yes/no): decode = 0
		} else {
			q.gen = int(math.Round(r.logUniform(2, 1000)))
		}
		if r.cfg.PromptTokens[1] > 0 {
			q.prompt = between(r.cfg.PromptTokens)
		}
		if r.cfg.GenTokens[1] > 0 {
			q.gen = between(r.cfg.GenTokens)
		}
		q.reason = "stop"
		switch r.rng.IntN(10) {
		case 0: // hit max_tokens
			q.maxTokens, q.reason = q.gen, "length"
		case 1, 2, 3, 4, 5:
			q.maxTokens = []int{512, 1024, 2048, 4096}[r.rng.IntN(4)]
			for q.maxTokens <= q.gen {
				q.maxTokens *= 2
			}
		}
		if r.cfg.GenTokens[1] > 0 {
			q.maxTokens, q.reason = q.gen, "length"
		}
		q.tok = dur(r.uniform(0.001, 0.006) + float64(q.prompt)*1e-6)
		if r.rng.IntN(10) == 0 {
			q.baseQueue = dur(r.logUniform(0.08, 4)) // KV cache full, waits for others
		} else {
			q.baseQueue = dur(r.logUniform(0.0003, 0.025))
		}
		q.prefill = dur(float64(q.prompt)/sp.prefillTokPerSec*r.uniform(0.9, 1.15) + r.uniform(0.004, 0.015))
		if q.gen > 1 {
			q.decode = dur(float64(q.gen-1) * sp.tpot * r.uniform(0.85, 1.25))
		}
		q.frontend = dur(r.uniform(0.00015, 0.0025))
	}
}

// requestID returns ids as vLLM's OpenAI server makes them
// (chatcmpl-<32 hex>) and, for some requests, ids with underscores, which
// a name parser must split from the right.
func (r *run) requestID(i int) string {
	if r.rng.IntN(7) == 0 {
		return "cmpl_" + strconv.FormatUint(r.rng.Uint64()>>32, 16) + "_" + strconv.Itoa(i)
	}
	return fmt.Sprintf("chatcmpl-%016x%016x", r.rng.Uint64(), r.rng.Uint64())
}

// scheduleArrivals pushes the arrivals: all of them for Poisson arrivals,
// the first one for a sequential run (the others follow after-snapshots).
func (r *run) scheduleArrivals() {
	if len(r.reqs) == 0 {
		return
	}
	first := dur(r.uniform(0.05, 0.3))
	if r.cfg.Clients > 0 {
		// Closed loop: each client sends its first request within the
		// first 200 ms, then one after each answer (handle, evAfter).
		r.startPhase(0, first)
		return
	}
	if r.cfg.MeanInFlight == 0 {
		r.push(first, evArrive, 0)
		return
	}
	var total time.Duration
	for i := range r.reqs {
		q := &r.reqs[i]
		total += q.tok + q.baseQueue + q.prefill + r.expectedDecode(q) + q.frontend
	}
	mean := total.Seconds() / float64(len(r.reqs))
	rate := r.cfg.MeanInFlight / mean // arrivals per second
	if r.cfg.rate > 0 {
		rate = r.cfg.rate
	}
	at := first
	for i := range r.reqs {
		r.push(at, evArrive, i)
		at += dur(r.rng.ExpFloat64() / rate)
	}
}

// startPhase starts phase p of a closed-loop run (Config.Phases; the
// Clients after the last) at r.next: its clients send their first
// requests within 200 ms of at. A phase without requests is skipped.
func (r *run) startPhase(p int, at time.Duration) {
	for ; ; p++ {
		clients, n := r.cfg.Clients, len(r.reqs)-r.next
		if p < len(r.cfg.Phases) {
			clients, n = r.cfg.Phases[p].Clients, min(n, r.cfg.Phases[p].Requests)
		}
		if n == 0 && p < len(r.cfg.Phases) {
			continue
		}
		r.phase, r.phaseEnd = p, r.next+n
		for end := r.next + min(clients, n); r.next < end; r.next++ {
			r.push(at+time.Duration(r.prng.Int64N(int64(200*time.Millisecond))), evArrive, r.next)
		}
		return
	}
}

func (r *run) push(at time.Duration, k evKind, req int) {
	r.seq++
	heap.Push(&r.events, event{at: at, kind: k, seq: r.seq, req: req})
}

func (r *run) loop() error {
	for r.events.Len() > 0 {
		ev := heap.Pop(&r.events).(event)
		if err := r.ticks(ev.at); err != nil {
			return err
		}
		if err := r.handle(ev); err != nil {
			return err
		}
	}
	return nil
}

// ticks writes the timeline snapshots due strictly before t. The set of
// requests in flight only changes at events, so it is constant here.
func (r *run) ticks(t time.Duration) error {
	iv := r.cfg.TimelineInterval
	if iv <= 0 || r.nextTick >= t {
		return nil
	}
	if r.inFlight == 0 {
		// Jump to the first tick at or after t.
		r.nextTick += (t - r.nextTick + iv - 1) / iv * iv
		return nil
	}
	for ; r.nextTick < t; r.nextTick += iv {
		if err := r.snapshot("timeline", parser.Timeline, r.nextTick); err != nil {
			return err
		}
	}
	return nil
}

func (r *run) handle(ev event) error {
	t := ev.at
	switch ev.kind { // events whose req is not a request
	case evStep:
		r.stepEnd(ev.req, t)
		return nil
	case evObserveStep:
		r.observeStep(ev.req, t)
		return nil
	}
	q := &r.reqs[ev.req]
	switch ev.kind {
	case evArrive:
		q.arrival = t
		r.arrive(q)
		r.inFlight++
		// The snapshot tool sends the request once its before scrape has
		// completed: with several API server processes, the scrape read
		// them over the render time up to the arrival, not after it
		// (else it could hold the request's own first-token observation).
		r.push(t+r.cfg.BeforeDelay, evBefore, ev.req)
		r.push(t+q.tok, evQueued, ev.req)
	case evBefore:
		if k := r.latestBefore(q, t); k != nil {
			q.before, q.beforeE2E = k.at, k.e2e
			return r.sink.Snapshot(parser.FormatName(q.id, parser.Before, k.done), k.body)
		}
		q.before = t
		if !r.cfg.Capture {
			q.before -= r.renderTime()
		}
		return r.snapshotE2E(q.id, parser.Before, t, &q.beforeE2E)
	case evQueued:
		q.queued = t
		r.load(q).Waiting++
		r.publishLoad(q)
		r.push(t+q.baseQueue, evReady, ev.req)
	case evReady:
		if r.cfg.Semantics.Steps {
			r.stepReady(ev.req, t)
		} else if r.running[q.engine] < r.cfg.MaxRunning {
			r.start(ev.req, t)
		} else {
			q.waited = true
			r.fifo[q.engine] = append(r.fifo[q.engine], ev.req)
		}
	case evRecordFinish:
		r.recordFinish(ev.req, t)
	case evFirst:
		q.ttft = (t - q.arrival).Seconds()
		if r.cfg.Semantics.TTFTFromSchedule {
			q.ttft = (t - q.sched).Seconds()
		}
		if r.cfg.ObserveDelay > 0 {
			q.delay = r.observeDelay()
			r.push(t+q.delay, evObserveFirst, ev.req)
		} else {
			r.observeFirst(ev.req, t)
		}
	case evObserveFirst:
		r.observeFirst(ev.req, t)
	case evFirstSnap:
		if r.cfg.Capture {
			r.startFloor = r.cfg.Start.Add(q.firstByte)
			defer func() { r.startFloor = time.Time{} }()
		}
		return r.snapshot(q.id, parser.First, t)
	case evFinish:
		return r.finish(ev.req, t)
	case evObserveFinish:
		r.observeFinish(ev.req, t)
	case evAfter:
		if r.cfg.Capture && !r.afterSeen(q, t) {
			// Capture scrapes again, with growing pauses, until the
			// finish count is above the before's or 2 s have passed.
			if q.pause == 0 {
				q.afterStart, q.pause = t, 2*time.Millisecond
			}
			if t+q.pause-q.afterStart <= 2*time.Second {
				r.push(t+q.pause, evAfter, ev.req)
				q.pause = min(2*q.pause, 100*time.Millisecond)
				return nil
			}
		}
		q.after = t
		r.truths[q.truth].AfterScrape = r.cfg.Start.Add(t)
		if !r.cfg.Capture {
			r.truths[q.truth].AfterScrape = r.cfg.Start.Add(t - r.renderTime())
		}
		if err := r.writeInfo(q); err != nil {
			return err
		}
		if r.cfg.Capture && r.cfg.ScrapeTime > 0 {
			// A long scrape's start still follows the last byte.
			r.startFloor = r.cfg.Start.Add(q.lastByte)
			defer func() { r.startFloor = time.Time{} }()
		}
		if err := r.snapshot(q.id, parser.After, t); err != nil {
			return err
		}
		if r.cfg.Clients > 0 {
			r.done++
			switch {
			case r.next < r.phaseEnd:
				think := time.Duration(15_000_000 + r.prng.Int64N(385_000_000))
				if th := r.cfg.Think; th[1] > 0 {
					think = th[0] + time.Duration(r.prng.Int64N(int64(th[1]-th[0])+1))
				}
				r.push(t+think, evArrive, r.next)
				r.next++
			case r.done == r.phaseEnd && r.next < len(r.reqs):
				// The phase is over: the next one's clients start
				// after a think time.
				r.startPhase(r.phase+1, t+15*time.Millisecond)
			}
		} else if r.cfg.Clients == 0 && r.cfg.MeanInFlight == 0 && ev.req+1 < len(r.reqs) {
			// Think time of a client that waits for each answer.
			r.push(t+dur(r.uniform(0.015, 0.4)), evArrive, ev.req+1)
		}
	}
	return nil
}

// start hands a request to the engine: the queue time ends here.
func (r *run) start(i int, t time.Duration) {
	q := &r.reqs[i]
	r.running[q.engine]++
	r.scheduled(i, t)
	// The engine emits the first token at sched+prefill and the last at
	// sched+prefill+decode; the frontend observes each a moment later.
	// For a one-token answer both land in the same frontend step, the
	// first-token observation before the finish ones (seq order).
	r.push(t+q.prefill+q.frontend, evFirst, i)
	r.push(t+q.prefill+q.decode+q.frontend, evFinish, i)
}

// scheduled moves request i from the waiting to the running requests at
// t, when its queue time ends.
func (r *run) scheduled(i int, t time.Duration) {
	q := &r.reqs[i]
	q.sched = t
	l := r.load(q)
	l.Waiting--
	l.Running++
	r.kvTokens[loadKey{q.model, q.engine}] += q.prompt + q.gen
	r.publishLoad(q)
	r.dequeued(i, t)
}

func (r *run) finish(i int, t time.Duration) error {
	q := &r.reqs[i]
	q.finish = t
	r.inFlight--
	r.running[q.engine]--
	l := r.load(q)
	l.Running--
	r.kvTokens[loadKey{q.model, q.engine}] -= q.prompt + q.gen
	r.publishLoad(q)

	queue := (q.sched - q.queued).Seconds()
	prefill := q.prefill.Seconds()
	decode := q.decode.Seconds()
	r.setFinish(q, queue, prefill, decode, prefill+decode, (t - q.arrival).Seconds())
	if r.cfg.ObserveDelay > 0 {
		d := r.observeDelay()
		if q.gen == 1 {
			// One frontend step observes both, first token first.
			d = q.delay
		}
		r.push(t+d, evObserveFinish, i)
	} else {
		r.observeFinish(i, t)
	}

	// A slot is free: the longest-waiting request of this engine starts.
	if w := r.fifo[q.engine]; len(w) > 0 {
		r.fifo[q.engine] = w[1:]
		r.start(w[0], t)
	}
	return nil
}

// observeFinish makes request i's finish observations at t, the moment
// the server sends the end of its response; a server that records late
// (LateFinish, EarlyAfter) records them later, at evRecordFinish.
func (r *run) observeFinish(i int, t time.Duration) {
	q := &r.reqs[i]
	f := q.finishValues
	late := r.cfg.Semantics.LateFinish > 0 || q.early
	if !late {
		r.recordFinish(i, t)
	}
	ttft, queue, prefill := q.ttft, f.Queue, f.Prefill
	if r.cfg.Semantics.QueueAtDequeue {
		queue = q.queueVal
	}
	if r.cfg.Semantics.PrefillAtFirstToken {
		prefill = q.prefillVal
	}
	tr := Truth{
		RequestID: q.id, Model: r.cfg.Models[q.model], Engine: q.engine,
		TTFT: ttft, Queue: queue, Prefill: prefill, Decode: f.Decode, Inference: f.Inference, E2E: f.E2E,
		PromptTokens: q.prompt, GenerationTokens: q.gen,
		Arrival: r.cfg.Start.Add(q.arrival), FirstToken: r.cfg.Start.Add(q.first), Finish: r.cfg.Start.Add(t),
		BeforeScrape: r.cfg.Start.Add(q.before),
	}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		if q.missing[m] {
			tr.Missing = append(tr.Missing, m.Name())
		}
	}
	r.truths = append(r.truths, tr)
	q.truth = len(r.truths) - 1

	resp := t // the response ends with the observations, or before (steps.go)
	if q.respAt > 0 && q.respAt < t {
		resp = q.respAt
	}
	after := resp + r.cfg.AfterDelay
	if j := r.cfg.AfterJitter; j > 0 {
		after += time.Duration(r.rng.Int64N(int64(2*j)+1)) - j
	}
	at := max(after, r.afterSnapshotAt(q, resp))
	r.push(at+r.renderTime(), evAfter, i)
	if late {
		rec := t + time.Duration(r.prng.Int64N(int64(r.cfg.Semantics.LateFinish)+1))
		if q.early {
			rec = at + time.Duration(100_000+r.prng.Int64N(int64(20*time.Millisecond)))
		}
		r.truths[q.truth].Finish = r.cfg.Start.Add(rec)
		r.push(rec, evRecordFinish, i)
	}
}

// recordFinish makes the server record request i's finish observations.
func (r *run) recordFinish(i int, t time.Duration) {
	q := &r.reqs[i]
	r.observing(q, t, func() { r.srv.ObserveFinish(r.cfg.Models[q.model], q.engine, q.finishValues) })
}

// setFinish fills q.finishValues, leaving out what the server does not
// observe at the finish.
func (r *run) setFinish(q *request, queue, prefill, decode, inference, e2e float64) {
	q.finishValues = Finish{
		Queue:            queue,
		Prefill:          prefill,
		Decode:           decode,
		Inference:        inference,
		E2E:              e2e,
		PromptTokens:     q.prompt,
		GenerationTokens: q.gen,
		FinishedReason:   q.reason,
		MaxTokens:        q.maxTokens,
	}
	sm := r.cfg.Semantics
	f := &q.finishValues
	f.Omit[parser.Queue] = sm.QueueAtDequeue
	f.Omit[parser.Prefill] = sm.PrefillAtFirstToken
	if q.drop < parser.NumMetrics {
		f.Omit[q.drop] = true
	}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		if !r.cfg.Server.Style.has(m) || (q.drop == m) {
			q.missing[m] = true
		}
	}
	if sm.QueueAtDequeue && !q.waited {
		q.missing[parser.Queue] = true
	}
}

func (r *run) load(q *request) *Load {
	k := loadKey{q.model, q.engine}
	l := r.loads[k]
	if l == nil {
		l = &Load{}
		r.loads[k] = l
	}
	return l
}

func (r *run) publishLoad(q *request) {
	k := loadKey{q.model, q.engine}
	l := r.load(q)
	l.KVCacheUsage = float64(r.kvTokens[k]) / float64(kvBlocks*16)
	r.srv.SetLoad(r.cfg.Models[q.model], q.engine, *l)
}

func (r *run) snapshot(id string, stage parser.Stage, t time.Duration) error {
	return r.snapshotE2E(id, stage, t, nil)
}

// snapshotE2E writes a snapshot and, when e2e is not nil, stores in it
// the finish count the snapshot shows (as capture reads it).
func (r *run) snapshotE2E(id string, stage parser.Stage, t time.Duration, e2e *uint64) error {
	if r.cfg.dry {
		return nil
	}
	now := r.cfg.Start.Add(t)
	r.srv.SetTime(now)
	hidden, spread := r.hiddenAt(t)
	r.buf, now = r.scrapeLine(r.buf[:0], now, spread)
	if hidden == nil {
		r.buf = r.srv.AppendText(r.buf)
	} else {
		r.buf, r.saved = r.srv.appendTextWithout(r.buf, hidden, r.saved)
	}
	if e2e != nil {
		*e2e = r.srv.finishCount(hidden)
	}
	if r.cfg.Capture && r.cfg.LatestBefore {
		r.keep(t, now, r.srv.finishCount(hidden))
	}
	name := parser.FormatName(id, stage, now)
	if err := r.sink.Snapshot(name, r.buf); err != nil {
		return fmt.Errorf("simulate: snapshot %s: %w", name, err)
	}
	return nil
}
