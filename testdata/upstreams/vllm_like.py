#!/usr/bin/env python3
"""A vLLM-like inference server for capture's tests and benchmarks.

Role: the *realistic upstream* of `delta-exporter capture` (docs/capture.md,
"Cost and accuracy"). The Go fake upstream (fakeupstream/) stays for fast unit
tests; this server is what capture's cost and accuracy are measured against,
because it runs on the same stack as vLLM's API server and batches the way
vLLM's engine does:

* FastAPI and uvicorn (uvloop and httptools when installed, as vLLM's
  `fastapi[standard]` brings them), one asyncio loop;
* `/metrics` mounted exactly as vLLM's `mount_metrics` does:
  `prometheus_client.make_asgi_app()` on the default registry, in a Starlette
  `Mount` whose path regex also takes `/metrics` without the slash; vLLM V1's
  families (v0.11), buckets and labels (`model_name`, `engine`), plus the
  default registry's process/python collectors and the per-handler HTTP
  families prometheus-fastapi-instrumentator adds (about 50 KB);
* a simulated continuous-batching engine in the same loop: `--slots` running
  requests, one token per running request per step, a step time growing with
  the batch and with the prompt tokens prefilled in it. The engine core runs
  on its own schedule (it is another process in vLLM): each step ends at
  step_start + step_time whatever the frontend does. The frontend's output
  handler then processes the step's outputs in one synchronous stretch, as
  vLLM V1's `output_handler` does: it hands each request its tokens, then
  records the statistics of every request that got its first token or
  finished in the step, together, sharing the handler's
  `iteration_timestamp` (TTFT and e2e) and the step's engine timestamp
  (prefill, decode, inference). No scrape can fall between them.
* OpenAI-compatible `/v1/completions` and `/v1/chat/completions`, streaming
  and not, with `usage` (streams: `stream_options.include_usage`), and
  vLLM's per-request `metrics` object with `--per-request-metrics` and
  `"include_metrics": true`.

Ground truth: with `--truth-log FILE` every observation the server makes is
written to FILE as one JSON line (`"kind": "first"` then `"kind": "finish"`),
with the values observed and the step they belong to. The Go tests compare
what the exporter published with it.

With `--semantics emulator` the server measures as llm-d-inference-sim,
the vLLM emulator of issue 16, does instead (EmulatorEngine): no batching,
TTFT from scheduling, queue at dequeue and only when waited, prefill at the
first token, and a series absent until its first observation.

`GET /-/stats` answers what the benchmark needs: how often `/metrics` was
asked, the wall and CPU time the loop spent answering it, the process's CPU
time, token and request counts, and the largest lag of the output handler
behind the engine.

Usage: python3 vllm_like.py [--port 0] [--model NAME] ... ; the server prints
`LISTENING http://127.0.0.1:PORT` on stdout once it accepts connections and
stops when its standard input is closed (or on SIGTERM).
"""

import argparse
import asyncio
import json
import os
import random
import re
import socket
import sys
import time
import uuid
from collections import deque

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Summary, make_asgi_app
from starlette.routing import Mount

# vLLM V1 (v0.11) buckets, vllm/v1/metrics/loggers.py.
REQ_LATENCY = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]
TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]
ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0]
ITER_TOKENS = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]
PARAMS_N = [1, 2, 5, 10, 20]
# prometheus-fastapi-instrumentator's defaults.
HTTP_HIGHR = [0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5,
              5, 7.5, 10, 30, 60]
HTTP_FEW = [0.1, 0.5, 1]


def build_1_2_5_buckets(max_value):
    """vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to max_value."""
    out, exp = [], 1
    while True:
        for m in (1, 2, 5):
            v = m * exp
            if v > max_value:
                return out
            out.append(v)
        exp *= 10


class Metrics:
    """vLLM V1's PrometheusStatLogger families, with model_name and engine."""

    def __init__(self, model, max_model_len, lazy=False):
        ln = ["model_name", "engine"]
        tok = build_1_2_5_buckets(max_model_len)
        self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.", ln)
        self.waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", ln)
        self.kv = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", ln)
        self.prefix_q = Counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.", ln)
        self.prefix_h = Counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.", ln)
        self.preempt = Counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", ln)
        self.prompt_total = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", ln)
        self.gen_total = Counter("vllm:generation_tokens", "Number of generation tokens processed.", ln)
        self.success = Counter("vllm:request_success", "Count of successfully processed requests.", ln + ["finished_reason"])
        self.prompt_tok = Histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", ln, buckets=tok)
        self.gen_tok = Histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", ln, buckets=tok)
        self.iter_tok = Histogram("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", ln, buckets=ITER_TOKENS)
        self.max_gen = Histogram("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", ln, buckets=tok)
        self.params_n = Histogram("vllm:request_params_n", "Histogram of the n request parameter.", ln, buckets=PARAMS_N)
        self.params_max = Histogram("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", ln, buckets=tok)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ln, buckets=TTFT_BUCKETS)
        self.tpot = Histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds. DEPRECATED: Use vllm:inter_token_latency_seconds instead.", ln, buckets=ITL_BUCKETS)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", ln, buckets=ITL_BUCKETS)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", ln, buckets=REQ_LATENCY)
        self.queue = Histogram("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", ln, buckets=REQ_LATENCY)
        self.inference = Histogram("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", ln, buckets=REQ_LATENCY)
        self.prefill = Histogram("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", ln, buckets=REQ_LATENCY)
        self.decode = Histogram("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", ln, buckets=REQ_LATENCY)
        info = Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                     ["block_size", "cache_dtype", "enable_prefix_caching", "engine", "gpu_memory_utilization", "num_gpu_blocks"])
        info.labels("16", "auto", "True", "0", "0.9", "27000").set(1)
        self.model = model
        lv = (model, "0")
        names = ("running", "waiting", "kv", "prefix_q", "prefix_h", "preempt", "prompt_total", "gen_total",
                 "prompt_tok", "gen_tok", "iter_tok", "max_gen", "params_n", "params_max", "ttft", "tpot",
                 "itl", "e2e", "queue", "inference", "prefill", "decode")
        if lazy:
            # --semantics emulator: a series is created at its first
            # observation, so a family prints no sample before it (HELP
            # and TYPE only, where llm-d-inference-sim's client_golang
            # vectors print nothing at all).
            self.c = _LazyChildren(self, lv)
            self.success_length = None
            return
        # Children are bound once: an observation is then a method call.
        self.c = {name: getattr(self, name).labels(*lv) for name in names}
        self.success_length = self.success.labels(model, "0", "length")
        for reason in ("stop", "length", "abort"):
            self.success.labels(model, "0", reason)
        self.preempt.labels(*lv)

    def observe_request(self, r):
        """The finish's per-request families after the timings."""
        m = self.c
        m["prompt_tok"].observe(r.prompt_tokens)
        m["gen_tok"].observe(r.generated)
        m["max_gen"].observe(r.generated)
        m["params_n"].observe(1)
        m["params_max"].observe(r.max_tokens)
        if self.success_length is None:  # lazy: created at the first finish
            self.success_length = self.success.labels(self.model, "0", "length")
        self.success_length.inc()


class _LazyChildren(dict):
    """Metrics.c for --semantics emulator: a family's child is bound (and
    so shown) on first use."""

    def __init__(self, metrics, lv):
        super().__init__()
        self.metrics = metrics
        self.lv = lv

    def __missing__(self, name):
        child = getattr(self.metrics, name).labels(*self.lv)
        self[name] = child
        return child


class HTTPMetrics:
    """The families prometheus-fastapi-instrumentator adds to vLLM's /metrics."""

    def __init__(self):
        self.requests = Counter("http_requests", "Total number of requests by method, status and handler.", ["handler", "method", "status"])
        self.highr = Histogram("http_request_duration_highr_seconds", "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations. ", buckets=HTTP_HIGHR)
        self.few = Histogram("http_request_duration_seconds", "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important. ", ["handler", "method"], buckets=HTTP_FEW)
        self.req_size = Summary("http_request_size_bytes", "Content length of incoming requests by handler. Only value of header is respected. Otherwise ignored. No percentile calculated. ", ["handler"])
        self.resp_size = Summary("http_response_size_bytes", "Content length of outgoing responses by handler. Only value of header is respected. Otherwise ignored. No percentile calculated. ", ["handler"])

    def observe(self, handler, method, status, seconds, req_size=0, resp_size=0):
        self.requests.labels(handler, method, status).inc()
        self.req_size.labels(handler).observe(req_size)
        self.resp_size.labels(handler).observe(resp_size)
        self.highr.observe(seconds)
        self.few.labels(handler, method).observe(seconds)


class Req:
    __slots__ = ("id", "chat", "stream", "prompt_tokens", "max_tokens", "arrival", "queued_ts", "scheduled_ts",
                 "first_ts", "last_ts", "generated", "out", "include_usage", "include_metrics", "aborted",
                 "ttft", "created", "model", "queue", "prefill")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))


class Engine:
    """A continuous-batching engine: a waiting queue, --slots running
    requests, one token per running request per step."""

    def __init__(self, args, metrics, truth):
        self.a = args
        self.m = metrics
        self.truth = truth
        self.waiting = deque()
        self.running = []
        self.wake = asyncio.Event()
        self.steps = 0
        self.tokens = 0
        self.finished = 0
        self.max_lag = 0.0
        self.rng = random.Random(args.seed)

    def add(self, r):
        r.queued_ts = time.monotonic()
        self.waiting.append(r)
        self.m.c["waiting"].set(len(self.waiting))
        self.wake.set()

    def step_time(self, batch, prefill_tokens):
        a = self.a
        t = a.step_base_ms + a.step_per_request_ms * batch + a.prefill_ms_per_1k_tokens * prefill_tokens / 1000.0
        return t * (1 + a.step_jitter * (self.rng.random() * 2 - 1)) / 1000.0

    async def run(self):
        while True:
            if not self.waiting and not self.running:
                self.wake.clear()
                await self.wake.wait()
            # Schedule: admit waiting requests into free slots.
            start = time.monotonic()
            new = []
            while self.waiting and len(self.running) < self.a.slots:
                r = self.waiting.popleft()
                if r.aborted:
                    continue
                r.scheduled_ts = start
                self.running.append(r)
                new.append(r)
            prefill_tokens = sum(r.prompt_tokens for r in new)
            batch = list(self.running)
            due = start + self.step_time(len(batch), prefill_tokens)
            # The engine core works in another process: the step ends at
            # its own time, whatever the frontend's loop is doing. The
            # frontend cannot see its outputs before: asyncio (and uvloop's
            # millisecond timers) may wake a sleep up to a millisecond
            # early, and processing the step then would give a TTFT
            # shorter than the queue and prefill the engine stamped, which
            # vLLM never does (and the exporter rightly refuses, A5).
            while (left := due - time.monotonic()) > 0:
                await asyncio.sleep(left)
            await self.process(batch, due, len(new), prefill_tokens)

    async def process(self, batch, engine_ts, n_new, prefill_tokens):
        """The frontend's output handler for one step: outputs first, then
        the step's statistics together. One synchronous stretch, unless the
        step has more than --output-chunk outputs: vLLM's output_handler
        then yields to the loop between chunks (VLLM_V1_OUTPUT_PROC_CHUNK_SIZE,
        128), and a request's first chunk can reach its client before the
        step's statistics are recorded."""
        m = self.m.c
        iteration_timestamp = time.time()  # frontend wall clock, as vLLM V1
        # --stamp=engine: measure TTFT and e2e to the moment the engine
        # ended the step instead (not what vLLM V1 does; a frontend that
        # lags then observes values that measure to a moment long past).
        stamp = iteration_timestamp
        if self.a.stamp == "engine":
            stamp = iteration_timestamp - (time.monotonic() - engine_ts)
        self.max_lag = max(self.max_lag, time.monotonic() - engine_ts)
        self.steps += 1
        firsts, finishes, itls = [], [], []
        still = []
        chunk = self.a.output_chunk
        for i, r in enumerate(batch):
            if chunk > 0 and i > 0 and i % chunk == 0:
                await asyncio.sleep(0)
            if r.aborted:
                continue
            r.generated += 1
            self.tokens += 1
            if r.first_ts is None:
                r.first_ts = engine_ts
                r.ttft = stamp - r.arrival
                firsts.append(r)
            else:
                itls.append(engine_ts - r.last_ts)
            r.last_ts = engine_ts
            done = r.generated >= r.max_tokens
            r.out.put_nowait((r.generated, done))
            if done:
                finishes.append(r)
            else:
                still.append(r)
        self.running = still
        # record(): every observation of the step, in one go.
        m["running"].set(len(self.running))
        m["waiting"].set(len(self.waiting))
        m["kv"].set(min(1.0, sum(r.prompt_tokens + r.generated for r in self.running) / 432000.0))
        m["iter_tok"].observe(prefill_tokens + len(batch) - n_new)
        m["gen_total"].inc(len(batch))
        if prefill_tokens:
            m["prompt_total"].inc(prefill_tokens)
            m["prefix_q"].inc(prefill_tokens)
        for v in itls:
            m["itl"].observe(v)
            m["tpot"].observe(v)
        for r in firsts:
            m["ttft"].observe(r.ttft)
        for r in finishes:
            e2e = stamp - r.arrival
            queue = r.scheduled_ts - r.queued_ts
            prefill = r.first_ts - r.scheduled_ts
            decode = r.last_ts - r.first_ts
            inference = r.last_ts - r.scheduled_ts
            m["e2e"].observe(e2e)
            m["queue"].observe(queue)
            m["prefill"].observe(prefill)
            m["decode"].observe(decode)
            m["inference"].observe(inference)
            self.m.observe_request(r)
        self.finished += len(finishes)
        # When the observations were made: the moment they measure to
        # (stamp) plus the time this stretch took, longer when the process
        # lost its CPU in the middle of it.
        observed = time.time()
        if self.truth is not None:
            for r in firsts:
                self.truth.write(json.dumps({"kind": "first", "id": r.id, "step": self.steps, "stream": r.stream,
                                             "ttft": r.ttft, "arrival": r.arrival, "at": stamp, "observed": observed}) + "\n")
            for r in finishes:
                self.truth.write(json.dumps({
                    "kind": "finish", "id": r.id, "step": self.steps, "stream": r.stream,
                    "ttft": r.ttft, "e2e": stamp - r.arrival,
                    "queue": r.scheduled_ts - r.queued_ts, "prefill": r.first_ts - r.scheduled_ts,
                    "decode": r.last_ts - r.first_ts, "inference": r.last_ts - r.scheduled_ts,
                    "prompt_tokens": r.prompt_tokens, "generation_tokens": r.generated,
                    "arrival": r.arrival, "at": stamp, "observed": observed}) + "\n")


class EmulatorEngine:
    """--semantics emulator: llm-d-inference-sim's model and measurements
    (issue 16; internal/simulate/profile.go, ProfileEmulator). No batching:
    each request holds one of --slots for its lifetime (max-num-seqs) and
    is timed on its own, in continuous time: a time to first token drawn
    from --ttft-ms +- --ttft-spread-ms, then one token per inter-token
    latency drawn from --itl-ms +- --itl-spread-ms (uniform). It observes
    as the emulator does:

    * queue time when the request leaves the queue for a slot, and only
      for a request that had to wait for one;
    * TTFT from scheduling (leaving out the queue wait), with the prefill
      time, at the first token; the prefill timer starts when the slot is
      handed over, a little before the TTFT's start, so prefill comes out
      slightly above TTFT;
    * e2e (from arrival), decode, inference and the token counts at the
      finish.

    The truth log has one line per observation moment: "queue" (with the
    value), "first" (ttft, prefill) and "finish" (e2e, decode, inference,
    tokens; and the request's ttft, prefill and queue when they were
    observed, queue absent when it was not)."""

    def __init__(self, args, metrics, truth):
        self.a = args
        self.m = metrics
        self.truth = truth
        self.waiting = deque()  # futures of requests waiting for a slot
        self.busy = 0
        self.steps = 0  # observation moments, for /-/stats
        self.tokens = 0
        self.finished = 0
        self.max_lag = 0.0
        self.rng = random.Random(args.seed)

    def add(self, r):
        r.queued_ts = time.monotonic()
        asyncio.get_running_loop().create_task(self.serve(r))

    async def run(self):
        return

    def draw(self, mean_ms, spread_ms):
        return max(0.0, mean_ms + spread_ms * (self.rng.random() * 2 - 1)) / 1000.0

    def write(self, line):
        if self.truth is not None:
            self.truth.write(json.dumps(line) + "\n")

    def gauges(self):
        self.m.c["running"].set(self.busy)
        self.m.c["waiting"].set(len(self.waiting))

    async def serve(self, r):
        m = self.m.c
        waited = False
        if self.busy >= self.a.slots or self.waiting:
            waited = True
            slot = asyncio.get_running_loop().create_future()
            self.waiting.append(slot)
            self.gauges()
            try:
                await slot  # handed over by a finishing request
            except asyncio.CancelledError:
                return
        else:
            self.busy += 1
        try:
            prefill_start = time.monotonic()
            self.gauges()
            r.scheduled_ts = time.monotonic()
            r.queue = None
            if waited:
                r.queue = r.scheduled_ts - r.queued_ts
                m["queue"].observe(r.queue)
                self.steps += 1
                self.write({"kind": "queue", "id": r.id, "stream": r.stream, "queue": r.queue,
                            "observed": time.time()})
            await asyncio.sleep(self.draw(self.a.ttft_ms, self.a.ttft_spread_ms))
            if r.aborted:
                return
            now = time.monotonic()
            r.first_ts = r.last_ts = now
            r.ttft = now - r.scheduled_ts
            r.prefill = now - prefill_start
            r.generated = 1
            self.tokens += 1
            done = r.generated >= r.max_tokens
            r.out.put_nowait((r.generated, done))
            m["ttft"].observe(r.ttft)
            m["prefill"].observe(r.prefill)
            m["gen_total"].inc()
            m["prompt_total"].inc(r.prompt_tokens)
            self.steps += 1
            self.write({"kind": "first", "id": r.id, "stream": r.stream, "ttft": r.ttft, "prefill": r.prefill,
                        "arrival": r.arrival, "observed": time.time()})
            while not done:
                await asyncio.sleep(self.draw(self.a.itl_ms, self.a.itl_spread_ms))
                if r.aborted:
                    return
                now = time.monotonic()
                m["itl"].observe(now - r.last_ts)
                m["tpot"].observe(now - r.last_ts)
                m["gen_total"].inc()
                r.last_ts = now
                r.generated += 1
                self.tokens += 1
                done = r.generated >= r.max_tokens
                r.out.put_nowait((r.generated, done))
            at = time.time()
            e2e = at - r.arrival
            decode = r.last_ts - r.first_ts
            inference = r.last_ts - r.scheduled_ts
            m["e2e"].observe(e2e)
            m["decode"].observe(decode)
            m["inference"].observe(inference)
            self.m.observe_request(r)
            self.finished += 1
            self.steps += 1
            line = {"kind": "finish", "id": r.id, "stream": r.stream, "ttft": r.ttft, "prefill": r.prefill,
                    "e2e": e2e, "decode": decode, "inference": inference,
                    "prompt_tokens": r.prompt_tokens, "generation_tokens": r.generated,
                    "arrival": r.arrival, "at": at, "observed": time.time()}
            if r.queue is not None:
                line["queue"] = r.queue
            self.write(line)
        finally:
            self.release()

    def release(self):
        """Hands the slot to the first request still waiting, or frees it."""
        while self.waiting:
            slot = self.waiting.popleft()
            if not slot.done():
                slot.set_result(None)
                self.gauges()
                return
        self.busy -= 1
        self.gauges()


def words(x):
    if isinstance(x, str):
        return len(x.split())
    if isinstance(x, list):
        return sum(words(v) for v in x)
    if isinstance(x, dict):
        return words(x.get("content", "")) + words(x.get("text", ""))
    return 0


def build_app(args):
    emulator = args.semantics == "emulator"
    metrics = Metrics(args.model, args.max_model_len, lazy=emulator)
    http_metrics = HTTPMetrics()
    truth = open(args.truth_log, "w", buffering=1) if args.truth_log else None
    engine = (EmulatorEngine if emulator else Engine)(args, metrics, truth)
    stats = {"metrics_requests": 0, "metrics_seconds": 0.0, "metrics_cpu_seconds": 0.0,
             "metrics_bytes": 0, "metrics_gzip": 0}
    started = time.time()

    app = FastAPI()

    @app.on_event("startup")
    async def start_engine():
        app.state.engine_task = asyncio.get_running_loop().create_task(engine.run())

    # vLLM's mount_metrics: the default registry's ASGI app, mounted so that
    # /metrics and /metrics/ both reach it without a redirect.
    metrics_app = make_asgi_app(registry=REGISTRY)

    async def timed_metrics_app(scope, receive, send):
        t0, c0 = time.perf_counter(), time.thread_time()
        size = 0

        async def counting_send(msg):
            nonlocal size
            if msg.get("type") == "http.response.body":
                size += len(msg.get("body", b""))
            elif msg.get("type") == "http.response.start":
                if any(k.lower() == b"content-encoding" for k, _ in msg.get("headers", [])):
                    stats["metrics_gzip"] += 1
            await send(msg)

        await metrics_app(scope, receive, counting_send)
        stats["metrics_requests"] += 1
        stats["metrics_seconds"] += time.perf_counter() - t0
        stats["metrics_cpu_seconds"] += time.thread_time() - c0
        stats["metrics_bytes"] += size

    route = Mount("/metrics", timed_metrics_app)
    route.path_regex = re.compile("^/metrics(?P<path>.*)$")
    app.routes.append(route)

    @app.get("/-/stats")
    async def get_stats():
        return {**stats, "process_cpu_seconds": time.process_time(), "uptime_seconds": time.time() - started,
                "steps": engine.steps, "tokens": engine.tokens, "finished": engine.finished,
                "max_output_lag_seconds": engine.max_lag}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": args.model, "object": "model", "owned_by": "vllm"}]}

    @app.get("/health")
    async def health():
        return {}

    async def completion(request: Request, chat: bool):
        t0 = time.perf_counter()
        body = await request.json()
        arrival = time.time()
        prompt = body.get("messages") if chat else body.get("prompt")
        max_tokens = int(body.get("max_tokens") or 16)
        if max_tokens < 1:
            return JSONResponse({"object": "error", "message": "max_tokens must be at least 1", "type": "BadRequestError", "param": None, "code": 400}, status_code=400)
        base = request.headers.get("x-request-id") or uuid.uuid4().hex
        rid = ("chatcmpl-" if chat else "cmpl-") + base
        stream = bool(body.get("stream"))
        r = Req(id=rid, chat=chat, stream=stream, prompt_tokens=words(prompt) + 8, max_tokens=max_tokens,
                arrival=arrival, generated=0, out=asyncio.Queue(), aborted=False, created=int(arrival), model=args.model,
                include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
                include_metrics=args.per_request_metrics and bool(body.get("include_metrics")))
        engine.add(r)
        handler = "/v1/chat/completions" if chat else "/v1/completions"
        if stream:
            return StreamingResponse(stream_events(r, request, handler, t0), media_type="text/event-stream")
        try:
            while True:
                n, done = await r.out.get()
                if done:
                    break
        except asyncio.CancelledError:
            r.aborted = True
            raise
        text = " ".join(["tok"] * r.generated)
        choice = {"index": 0, "logprobs": None, "finish_reason": "length"}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        out = {"id": r.id, "object": "chat.completion" if chat else "text_completion", "created": r.created,
               "model": args.model, "choices": [choice], "usage": usage(r)}
        if r.include_metrics:
            out["metrics"] = request_metrics(r)
        http_metrics.observe(handler, "POST", "2xx", time.perf_counter() - t0)
        return JSONResponse(out)

    def usage(r):
        return {"prompt_tokens": r.prompt_tokens, "total_tokens": r.prompt_tokens + r.generated,
                "completion_tokens": r.generated, "prompt_tokens_details": None}

    def request_metrics(r):
        gen = r.last_ts - r.first_ts
        return {"time_to_first_token_ms": r.ttft * 1000, "queue_time_ms": (r.scheduled_ts - r.queued_ts) * 1000,
                "generation_time_ms": gen * 1000, "mean_itl_ms": gen * 1000 / (r.generated - 1) if r.generated > 1 else 0,
                "tokens_per_second": r.generated / gen if gen > 0 else 0}

    async def stream_events(r, request, handler, t0):
        obj = "chat.completion.chunk" if r.chat else "text_completion"
        head = '{"id":%s,"object":"%s","created":%d,"model":%s' % (json.dumps(r.id), obj, r.created, json.dumps(args.model))
        try:
            sent = 0
            while True:
                n, done = await r.out.get()
                # Tokens that arrived while this coroutine waited go out
                # together, as vLLM's handler does.
                while not done and not r.out.empty():
                    n, done = r.out.get_nowait()
                k = n - sent
                sent = n
                content = json.dumps("tok " * k)
                if r.chat:
                    delta = '{"role":"assistant","content":%s}' % content if sent == k else '{"content":%s}' % content
                    choice = '{"index":0,"delta":%s,"logprobs":null,"finish_reason":%s}' % (delta, '"length"' if done else "null")
                else:
                    choice = '{"index":0,"text":%s,"logprobs":null,"finish_reason":%s}' % (content, '"length"' if done else "null")
                yield "data: %s,\"choices\":[%s]}\n\n" % (head, choice)
                if done:
                    break
            tail = []
            if r.include_usage:
                tail.append('"usage":' + json.dumps(usage(r)))
            if r.include_metrics:
                tail.append('"metrics":' + json.dumps(request_metrics(r)))
            if tail:
                yield "data: %s,\"choices\":[],%s}\n\n" % (head, ",".join(tail))
            yield "data: [DONE]\n\n"
            http_metrics.observe(handler, "POST", "2xx", time.perf_counter() - t0)
        except (asyncio.CancelledError, GeneratorExit):
            r.aborted = True
            raise

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await completion(request, False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await completion(request, True)

    return app, truth


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0: any free port")
    ap.add_argument("--model", default="vllm-like/model")
    ap.add_argument("--max-model-len", type=int, default=40960)
    ap.add_argument("--slots", type=int, default=64, help="running requests at most (vLLM's max_num_seqs)")
    ap.add_argument("--step-base-ms", type=float, default=15.0, help="step time with an empty batch")
    ap.add_argument("--step-per-request-ms", type=float, default=0.15, help="added per running request")
    ap.add_argument("--prefill-ms-per-1k-tokens", type=float, default=2.0, help="added per 1000 prompt tokens prefilled in the step")
    ap.add_argument("--step-jitter", type=float, default=0.1, help="relative +- jitter of the step time")
    ap.add_argument("--per-request-metrics", action="store_true", help="vLLM's --enable-per-request-metrics")
    ap.add_argument("--truth-log", default="", help="write every observation to this file, one JSON line each")
    ap.add_argument("--stamp", choices=("frontend", "engine"), default="frontend",
                    help="the moment TTFT and e2e measure to: the frontend's processing of the step (vLLM V1's iteration_timestamp) or the engine's end of the step")
    ap.add_argument("--output-chunk", type=int, default=128,
                    help="outputs processed between yields to the loop (vLLM's VLLM_V1_OUTPUT_PROC_CHUNK_SIZE)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--semantics", choices=("vllm", "emulator"), default="vllm",
                    help="what the metrics measure and when: vLLM V1's, or llm-d-inference-sim's (EmulatorEngine)")
    ap.add_argument("--ttft-ms", type=float, default=150.0, help="emulator: time to first token from scheduling")
    ap.add_argument("--ttft-spread-ms", type=float, default=30.0, help="emulator: +- uniform spread of --ttft-ms")
    ap.add_argument("--itl-ms", type=float, default=20.0, help="emulator: inter-token latency")
    ap.add_argument("--itl-spread-ms", type=float, default=4.0, help="emulator: +- uniform spread of --itl-ms")
    args = ap.parse_args()

    app, truth = build_app(args)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    async def serve():
        loop = asyncio.get_running_loop()
        task = loop.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        print("LISTENING http://127.0.0.1:%d" % sock.getsockname()[1], flush=True)
        # Stop when stdin closes: the test's process owns this one.
        stop = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 4096) else None)
        done, _ = await asyncio.wait([task, loop.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await task

    try:
        asyncio.run(serve()) if not _has_uvloop() else _uvloop_run(serve)
    finally:
        if truth is not None:
            truth.close()


def _has_uvloop():
    try:
        import uvloop  # noqa: F401
        return True
    except ImportError:
        return False


def _uvloop_run(coro_fn):
    import uvloop
    uvloop.install()
    asyncio.run(coro_fn())


if __name__ == "__main__":
    main()
