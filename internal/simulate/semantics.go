package simulate

import (
	"math"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// The run's side of Semantics: the draws, the observations made at other
// moments than vLLM's, and the several API server processes.

// drawSemantics draws what the semantics decide per request, from prng
// only, so that runs without them stay as they were.
func (r *run) drawSemantics() {
	sm := r.cfg.Semantics
	for i := range r.reqs {
		q := &r.reqs[i]
		q.drop = parser.NumMetrics
		if sm.APIServers > 1 {
			q.proc = r.prng.IntN(sm.APIServers)
		}
		if sm.DropRate > 0 && r.prng.Float64() < sm.DropRate {
			var has []parser.Metric
			for m := parser.Metric(0); m < parser.NumMetrics; m++ {
				if r.cfg.Server.Style.has(m) {
					has = append(has, m)
				}
			}
			q.drop = has[r.prng.IntN(len(has))]
		}
		if sm.EarlyAfter > 0 && r.prng.Float64() < sm.EarlyAfter {
			q.early = true
		}
		if sm.PrefillAtFirstToken {
			q.prefillLate = time.Duration(50_000 + r.prng.Int64N(450_000))
		}
		if sm.EmulatorTiming {
			q.prefill = time.Duration(120_000_000 + r.prng.Int64N(60_000_000))
			q.decode = 0
			for range q.gen - 1 {
				q.decode += time.Duration(16_000_000 + r.prng.Int64N(8_000_000))
			}
			q.frontend = time.Duration(20_000 + r.prng.Int64N(200_000))
		}
	}
}

// dequeued is called when request i gets a slot at t: a server that
// observes the queue time when a request leaves the queue does it now,
// for requests that waited for a slot.
func (r *run) dequeued(i int, t time.Duration) {
	q := &r.reqs[i]
	if !r.cfg.Semantics.QueueAtDequeue || !q.waited {
		return
	}
	q.queueVal = (t - q.queued).Seconds()
	r.observeQueue(i, t)
}

func (r *run) observeQueue(i int, t time.Duration) {
	q := &r.reqs[i]
	if q.drop == parser.Queue {
		return
	}
	r.observing(q, t, func() { r.srv.ObserveOne(r.cfg.Models[q.model], q.engine, parser.Queue, q.queueVal) })
}

// expectedDecode is the decode time the arrival rate is set from: the
// drawn one, or with Steps an estimate of the step time at the batch
// size the run asks for.
func (r *run) expectedDecode(q *request) time.Duration {
	if !r.cfg.Semantics.Steps || q.gen < 2 {
		return q.decode
	}
	b := min(r.cfg.MeanInFlight/float64(r.cfg.Engines), float64(r.cfg.MaxRunning))
	return dur(float64(q.gen-1) * r.speed(q.model).tpot * stepFactor(max(b, 1)))
}

// renderTime is how long a scrape takes from its start to its end: 0,
// or with several API server processes the spread over which it reads
// them. A request's snapshot is started when it is due (after the
// response, for an after) and its content is complete renderTime later,
// which is when the simulation makes it.
func (r *run) renderTime() time.Duration {
	if r.cfg.Semantics.APIServers <= 1 {
		return 0
	}
	return r.cfg.Semantics.ScrapeSpread
}

// calibrate sets, for step batching, the arrival rate at which the mean
// request duration times the rate is the mean in flight asked for, as it
// is in the continuous model by construction. A step takes longer the
// larger the batch, so durations grow with the rate, and a rate from the
// drawn durations would overshoot (by a third at 64 in flight). The rate
// is found by bisection on runs without snapshots, which are cheap.
func (r *run) calibrate() error {
	if !r.cfg.Semantics.Steps || r.cfg.MeanInFlight == 0 || r.cfg.Clients > 0 || r.cfg.dry || len(r.reqs) == 0 {
		return nil
	}
	var total time.Duration
	for i := range r.reqs {
		q := &r.reqs[i]
		total += q.tok + q.baseQueue + q.prefill + r.expectedDecode(q) + q.frontend
	}
	guess := r.cfg.MeanInFlight / (total.Seconds() / float64(len(r.reqs)))
	pilot := r.cfg
	pilot.dry, pilot.Capture, pilot.TimelineInterval = true, false, 0
	lo, hi := math.Log(guess/8), math.Log(guess*4)
	for range 10 {
		mid := (lo + hi) / 2
		pilot.rate = math.Exp(mid)
		truths, err := Run(pilot, nil)
		if err != nil {
			return err
		}
		var busy time.Duration
		for _, t := range truths {
			busy += t.Finish.Sub(t.Arrival)
		}
		if pilot.rate*(busy/time.Duration(len(truths))).Seconds() > r.cfg.MeanInFlight {
			hi = mid
		} else {
			lo = mid
		}
	}
	r.cfg.rate = math.Exp((lo + hi) / 2)
	return nil
}

// maxAPIServers bounds Semantics.APIServers.
const maxAPIServers = 16

// recentObs is one observation made by an API server process.
type recentObs struct {
	at   time.Duration
	proc int
	hiddenObs
}

// observing runs observe, which makes observations of request q at t.
// With several API server processes it keeps them for hiddenAt.
func (r *run) observing(q *request, t time.Duration, observe func()) {
	if r.cfg.Semantics.APIServers <= 1 {
		observe()
		return
	}
	r.recording = r.recording[:0]
	r.srv.recordObservations(&r.recording)
	observe()
	r.srv.recordObservations(nil)
	for _, h := range r.recording {
		r.recent = append(r.recent, recentObs{at: t, proc: q.proc, hiddenObs: h})
	}
}

// hiddenAt returns the observations a scrape completed at t does not see,
// and how long before t it started reading: each process is read at its
// own moment within the spread. Nil without several processes. The
// answer is the same for every call at one t (capture's check of the
// after and the after written are one scrape).
func (r *run) hiddenAt(t time.Duration) ([]hiddenObs, time.Duration) {
	sm := r.cfg.Semantics
	if sm.APIServers <= 1 {
		return nil, 0
	}
	if r.hiddenValid && r.hiddenT == t {
		return r.hidden, sm.ScrapeSpread
	}
	keep := r.recent[:0]
	for _, o := range r.recent {
		if o.at > t-sm.ScrapeSpread {
			keep = append(keep, o)
		}
	}
	r.recent = keep
	var read [maxAPIServers]time.Duration
	for p := 0; p < sm.APIServers; p++ {
		read[p] = t - time.Duration(r.prng.Int64N(int64(sm.ScrapeSpread)+1))
	}
	r.hidden = r.hidden[:0]
	for _, o := range r.recent {
		if o.at > read[o.proc] {
			r.hidden = append(r.hidden, o.hiddenObs)
		}
	}
	// Never nil: the caller tells "no processes" by nil.
	if r.hidden == nil {
		r.hidden = []hiddenObs{}
	}
	r.hiddenT, r.hiddenValid = t, true
	return r.hidden, sm.ScrapeSpread
}
