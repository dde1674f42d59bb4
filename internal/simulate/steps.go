package simulate

import (
	"time"
)

// Step-synchronous continuous batching (Semantics.Steps), as vLLM V1 runs
// (VLLM_METRICS.md §3.6): each engine runs steps back to back while it has
// work. A step schedules waiting requests into free slots (their
// scheduled_ts is the step's start), prefills up to a token budget in
// chunks, and gives every decoding request one token. At its end the
// engine timestamps the step's outputs; the frontend's output handler
// takes them a moment later (IPC, and a handler still busy with an
// earlier step of any engine), takes its iteration timestamp, processes
// the outputs and then records the statistics of every request that got
// its first token or finished in that step, at once. TTFT and e2e run to
// the iteration timestamp; queue, prefill, decode and inference are
// differences of engine timestamps. A step takes longer the larger the
// batch and the more prompt tokens it prefills.

// engineState is one engine's scheduler.
type engineState struct {
	waiting []int // ready, not yet scheduled
	running []int // scheduled, in order
	busy    bool  // a step is under way
}

// stepOut is what one step hands the frontend.
type stepOut struct {
	firsts, finishes []int
	iteration        time.Duration // the frontend's iteration timestamp
}

// outputChunk is VLLM_V1_OUTPUT_PROC_CHUNK_SIZE: the output handler
// processes a step's outputs in slices of this many and, between slices,
// yields to the event loop (asyncio.sleep(0)). A request whose final
// output was in an earlier slice can have its response sent then, before
// the step's statistics are recorded (VLLM_METRICS.md §3.6, exception a).
const outputChunk = 128

// outputCost is the frontend's time to process one output.
const outputCost = 15 * time.Microsecond

// prefillBudget is the number of prompt tokens one step prefills at most
// (chunked prefill, max_num_batched_tokens).
const prefillBudget = 2048

// batchPrefill is how much faster an engine prefills a step's chunks
// than the continuous model times one request's prefill: a GPU prefills
// a batch of prompts in about the time of one.
const batchPrefill = 4

// stepFactor is a decode step's duration in units of the model's tpot
// at batch size b.
func stepFactor(b float64) float64 { return 0.5 + 0.012*b }

// stepReady puts request i, ready to be scheduled, in its engine's queue
// and starts a step if the engine is idle.
func (r *run) stepReady(i int, t time.Duration) {
	q := &r.reqs[i]
	e := &r.engines[q.engine]
	if len(e.running)+len(e.waiting) >= r.cfg.MaxRunning {
		q.waited = true
	}
	e.waiting = append(e.waiting, i)
	if !e.busy {
		r.stepBegin(q.engine, t)
	}
}

// stepBegin starts engine en's next step at t, if it has work.
func (r *run) stepBegin(en int, t time.Duration) {
	e := &r.engines[en]
	for len(e.waiting) > 0 && len(e.running) < r.cfg.MaxRunning {
		i := e.waiting[0]
		e.waiting = e.waiting[1:]
		r.reqs[i].prefillLeft = r.reqs[i].prompt
		e.running = append(e.running, i)
		r.scheduled(i, t)
	}
	if len(e.running) == 0 {
		e.busy = false
		return
	}
	e.busy = true
	budget := prefillBudget
	var base, cost float64
	for _, i := range e.running {
		q := &r.reqs[i]
		sp := r.speed(q.model)
		base = max(base, sp.tpot*stepFactor(0))
		q.chunk, q.decoding = 0, q.prefillLeft == 0
		if q.decoding {
			cost += sp.tpot*stepFactor(1) - sp.tpot*stepFactor(0)
			continue
		}
		if budget > 0 {
			q.chunk = min(q.prefillLeft, budget)
			budget -= q.chunk
			cost += float64(q.chunk) / (batchPrefill * sp.prefillTokPerSec)
		}
	}
	d := dur((base + cost) * (0.95 + 0.1*r.prng.Float64()))
	r.push(t+d, evStep, en)
}

// stepEnd ends engine en's step at t: tokens come out, finished requests
// free their slots, the frontend is handed the outputs, and the next step
// starts.
func (r *run) stepEnd(en int, t time.Duration) {
	e := &r.engines[en]
	var out stepOut
	outputs := 0
	var at []int // each finish's place among the step's outputs
	keep := e.running[:0]
	for _, i := range e.running {
		q := &r.reqs[i]
		switch {
		case q.decoding:
			q.generated++
			outputs++
		case q.chunk > 0:
			q.prefillLeft -= q.chunk
			if q.prefillLeft == 0 {
				q.generated, q.firstTS = 1, t
				out.firsts = append(out.firsts, i)
				outputs++
			}
		}
		if q.generated >= q.gen && q.prefillLeft == 0 {
			q.lastTS = t
			out.finishes = append(out.finishes, i)
			at = append(at, outputs-1)
			l := r.load(q)
			l.Running--
			r.kvTokens[loadKey{q.model, q.engine}] -= q.prompt + q.gen
			r.publishLoad(q)
			continue
		}
		keep = append(keep, i)
	}
	e.running = keep
	if outputs > 0 {
		// The output handler: IPC, then its turn on the frontend's one
		// loop; it records after processing every output of the step.
		ipc := time.Duration(200_000 + r.prng.Int64N(1_300_000))
		if l := r.cfg.FrontendLag; l > 0 {
			ipc += time.Duration(r.crng.Int64N(int64(l) + 1))
		}
		h := max(t+ipc, r.frontendFree)
		rec := h + 40*time.Microsecond + time.Duration(outputs)*outputCost
		r.frontendFree = rec
		if outputs > outputChunk {
			for k, i := range out.finishes {
				if end := (at[k]/outputChunk + 1) * outputChunk; end < outputs {
					r.reqs[i].respAt = h + 40*time.Microsecond + time.Duration(end)*outputCost
				}
			}
		}
		if len(out.firsts)+len(out.finishes) > 0 {
			out.iteration = h
			r.steps = append(r.steps, out)
			r.push(rec, evObserveStep, len(r.steps)-1)
		}
	}
	r.stepBegin(en, t)
}

// observeStep records, at t, the statistics of one step's requests: first
// tokens first, then finishes, with nothing in between.
func (r *run) observeStep(k int, t time.Duration) {
	out := r.steps[k]
	r.steps[k] = stepOut{}
	for _, i := range out.firsts {
		q := &r.reqs[i]
		q.ttft = (out.iteration - q.arrival).Seconds()
		if r.cfg.Semantics.TTFTFromSchedule {
			q.ttft = (out.iteration - q.sched).Seconds()
		}
		r.observeFirst(i, t)
	}
	for _, i := range out.finishes {
		q := &r.reqs[i]
		q.finish = t
		r.inFlight--
		queue := (q.sched - q.queued).Seconds()
		prefill := (q.firstTS - q.sched).Seconds()
		decode := (q.lastTS - q.firstTS).Seconds()
		r.setFinish(q, queue, prefill, decode, (q.lastTS - q.sched).Seconds(), (out.iteration - q.arrival).Seconds())
		r.observeFinish(i, t)
	}
}
