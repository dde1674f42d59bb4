package simulate

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Style selects which vLLM era a Server's /metrics output imitates.
type Style int

const (
	// V1 is vLLM V1 as of v0.11.0 in single-process mode: labels engine
	// and model_name, le in the middle of the label set, a "<name>_created"
	// gauge family after every counter and histogram, REQ_LATENCY buckets up
	// to 7680 s, inter_token_latency_seconds next to the deprecated
	// time_per_output_token_seconds, kv_cache_usage_perc.
	V1 Style = iota
	// V1NoEngine is vLLM V1 v0.8.0-0.8.2: no engine label (all engines are
	// folded into one series per model), gpu_cache_usage_perc and
	// gpu_prefix_cache_* counted in blocks, no inter-token-latency
	// histogram, the bucket lists before vLLM PR #15202.
	V1NoEngine
	// V0Multiproc is the V0 engine (v0.6.4-0.7) behind MQLLMEngine: label
	// model_name only, prometheus_client's multiprocess output (all _sum
	// lines of a histogram first, no _created, no python_*/process_*
	// families), V0 gauges and the old bucket lists.
	V0Multiproc
	// SGLang imitates SGLang's tokenizer-manager metrics (VLLM_METRICS.md
	// §4, the ≈v0.4/late-2025 collector): families sglang:*, label
	// model_name only, always prometheus_client's multiprocess layout, and
	// no queue, prefill, decode or inference histograms (TTFT and e2e are
	// the only per-request times; the token histograms are
	// sglang:prompt_tokens_histogram and sglang:generation_tokens_histogram).
	SGLang
)

func (s Style) String() string {
	switch s {
	case V1:
		return "v1"
	case V1NoEngine:
		return "v1-noengine"
	case V0Multiproc:
		return "v0-multiproc"
	case SGLang:
		return "sglang"
	}
	return "Style(" + strconv.Itoa(int(s)) + ")"
}

// ParseStyle is the inverse of Style.String.
func ParseStyle(s string) (Style, error) {
	for _, st := range []Style{V1, V1NoEngine, V0Multiproc, SGLang} {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown style %q (want v1, v1-noengine, v0-multiproc or sglang)", s)
}

// ServerConfig describes the simulated server.
type ServerConfig struct {
	// Models are the served model names (model_name label values), in
	// output order. Empty means one model, DefaultModel.
	Models []string
	// Engines is the number of data-parallel engines (engine label values
	// "0".."Engines-1" in V1). Values < 1 mean 1.
	Engines int
	// MaxModelLen bounds the token histograms' 1-2-5 buckets; 0 means
	// 40960 (buckets up to 20000).
	MaxModelLen int
	// Padding adds the families a real scrape carries besides vllm:* —
	// python_gc_*, python_info, process_* and the http_* families of
	// prometheus-fastapi-instrumentator (about 7 KB). A V1 scrape of one
	// model and one engine is about 35 KB without padding and 43 KB with
	// it for model "Qwen/Qwen3-8B" (each character of the model name adds
	// about 380 bytes). Without padding a single-process scrape still has
	// process_start_time_seconds, which restart detection needs.
	Padding bool
	// Style selects the vLLM era imitated; the zero value is V1.
	Style Style
	// StartTime is the process start (process_start_time_seconds, and the
	// base of the _created values). Zero means DefaultStartTime.
	StartTime time.Time
	// Lazy leaves a histogram or counter series out of the output until
	// its first observation, and a family until one of its series is
	// shown, as a server built on client_golang does with metric vectors
	// (llm-d-inference-sim). No _created families then, and no
	// process_start_time_seconds or other process families: such a server
	// registers its metrics on a registry of its own. A scrape before the
	// first request has no per-request family at all.
	Lazy bool
	// Multiproc renders prometheus_client's multiprocess layout in any
	// style, as vLLM V1 does with --api-server-count > 1: _sum lines of a
	// histogram first, no _created, no python_* or process_* families.
	Multiproc bool
}

// DefaultModel is the model served when ServerConfig.Models is empty.
const DefaultModel = "Qwen/Qwen3-VL-30B-A3B-Instruct"

// DefaultStartTime is the process start used when none is configured: a
// fixed time, so that output is reproducible.
func DefaultStartTime() time.Time { return time.Date(2025, 10, 6, 9, 14, 27, 370_000_000, time.UTC) }

// Finish is what a server observes when a request finishes.
type Finish struct {
	Queue, Prefill, Decode, Inference, E2E float64
	PromptTokens, GenerationTokens         int
	// FinishedReason is the finished_reason label: "stop" (when empty),
	// "length" or "abort".
	FinishedReason string
	// MaxTokens is the request's max_tokens parameter, 0 when not set
	// (vllm:request_params_max_tokens is observed only when it is set).
	MaxTokens int
	// Omit lists per-request families ObserveFinish must not observe: a
	// server that observes them at another moment (ObserveOne), never, or
	// drops one.
	Omit [parser.NumMetrics]bool
}

// Load is the scheduler state of one engine at a moment: the gauges
// num_requests_running, num_requests_waiting and the KV-cache usage.
type Load struct {
	Running, Waiting int
	KVCacheUsage     float64 // 0..1
}

// finishedReasons are pre-created in V1, in this order.
var finishedReasons = []string{"stop", "length", "abort"}

// key is one (model, engine) pair as the caller names it.
type key struct {
	model  string
	engine int
}

// perKey holds the series one (model, engine) label set owns in every
// per-request family. Styles without an engine label share one perKey
// between all engines of a model.
type perKey struct {
	model string
	// gauges
	running, waiting, kv, swapped, cpuKV, cpuHit, gpuHit *series
	// counters
	prefixQ, prefixH, preempt, promptTotal, genTotal *series
	success                                          map[string]*series
	// histograms
	promptTok, genTok, iterTok, maxGen, paramsN, paramsMaxTok *series
	ttft, tpot, itl, e2e, queue, inference, prefill, decode   *series
	timeInQueue                                               *series
	requests                                                  *series // SGLang's num_requests_total
	// labels used for lazily created series (V0 request_success_total)
	labels []label
	// loads of the engines folded into this label set
	loads map[int]Load
}

// Server is the cumulative metrics state of a simulated vLLM server. It is
// safe for concurrent use. The zero value is not usable; call NewServer.
type Server struct {
	mu        sync.Mutex
	cfg       ServerConfig
	multiproc bool
	engineLbl bool
	created   bool // _created families (single-process mode)

	fams []*family
	// hide, when not nil, records every histogram observation (see
	// hiding.go).
	hide    *[]hiddenObs
	byName  map[string]*family
	keys    map[key]*perKey
	byModel map[string]*perKey // folded styles: one perKey per model
	engines map[int]bool       // engines that have a cache_config_info series

	createdSeq int       // spreads _created values of successive series
	now        time.Time // last SetTime; lora_requests_info, process cpu

	// totals that drive the padding families
	finished, firstTokens       uint64
	promptTokens, genTokens     uint64
	reqBytes, respBytes         uint64
	httpChat, httpModels        *series
	reqSizeChat, respSizeChat   *series
	highr, durChat, durModels   *series
	gcCollected, gcCollections  [3]*series
	vmBytes, rssBytes, cpuSecs  *series
	openFDs, loraInfo, startSec *series
	lastSize                    int
}

// NewServer builds a server with every family present and all values at
// zero, as a freshly started vLLM is scraped.
func NewServer(cfg ServerConfig) *Server {
	if len(cfg.Models) == 0 {
		cfg.Models = []string{DefaultModel}
	}
	if cfg.Engines < 1 {
		cfg.Engines = 1
	}
	if cfg.MaxModelLen <= 0 {
		cfg.MaxModelLen = 40960
	}
	if cfg.StartTime.IsZero() {
		cfg.StartTime = DefaultStartTime()
	}
	multiproc := cfg.Style == V0Multiproc || cfg.Style == SGLang || cfg.Multiproc
	s := &Server{
		cfg:       cfg,
		multiproc: multiproc,
		engineLbl: cfg.Style == V1,
		created:   !multiproc && !cfg.Lazy,
		byName:    map[string]*family{},
		keys:      map[key]*perKey{},
		byModel:   map[string]*perKey{},
		engines:   map[int]bool{},
		now:       cfg.StartTime.Add(90 * time.Second),
	}
	s.buildFamilies()
	for _, m := range cfg.Models {
		for e := 0; e < cfg.Engines; e++ {
			s.lookup(m, e)
		}
	}
	return s
}

// Config returns the configuration with defaults filled in.
func (s *Server) Config() ServerConfig {
	c := s.cfg
	c.Models = append([]string(nil), c.Models...)
	return c
}

func (s *Server) fam(name, help string, k kind, bounds []float64) *family {
	f := newFamily(name, help, k, bounds, s.created)
	s.fams = append(s.fams, f)
	s.byName[name] = f
	return f
}

// plainFam is a family from a custom collector (gc, process): never has
// _created lines.
func (s *Server) plainFam(name, help string, k kind) *family {
	f := newFamily(name, help, k, nil, false)
	s.fams = append(s.fams, f)
	s.byName[name] = f
	return f
}

// createdTime returns the next _created value: engine start (model load
// takes a while) plus a few microseconds per series, as seen in real
// scrapes.
func (s *Server) createdTime() float64 {
	s.createdSeq++
	base := s.cfg.StartTime.Add(41*time.Second + 212*time.Millisecond)
	return float64(base.UnixNano())/1e9 + float64(s.createdSeq)*0.0000173
}

func (s *Server) buildFamilies() {
	maxLen := build125Buckets(s.cfg.MaxModelLen)
	if s.cfg.Style == SGLang {
		s.sglangFamilies(maxLen)
		return
	}
	if !s.multiproc && !s.cfg.Lazy {
		if s.cfg.Padding {
			s.pythonPadding()
		}
		s.startSec = s.plainFam("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", gaugeKind).add(nil, 0)
		// /proc start times have 10 ms resolution.
		st := s.cfg.StartTime.Truncate(10 * time.Millisecond)
		s.startSec.value = float64(st.Unix()) + float64(st.Nanosecond()/10_000_000)/100
		if s.cfg.Padding {
			s.processPadding()
		}
	}
	switch s.cfg.Style {
	case V1:
		s.fam("vllm:num_requests_running", "Number of requests in model execution batches.", gaugeKind, nil)
		s.fam("vllm:num_requests_waiting", "Number of requests waiting to be processed.", gaugeKind, nil)
		s.fam("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", gaugeKind, nil)
		s.fam("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens.", counterKind, nil)
		s.fam("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens.", counterKind, nil)
	case V1NoEngine:
		s.fam("vllm:num_requests_running", "Number of requests in model execution batches.", gaugeKind, nil)
		s.fam("vllm:num_requests_waiting", "Number of requests waiting to be processed.", gaugeKind, nil)
		s.fam("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", gaugeKind, nil)
		s.fam("vllm:gpu_prefix_cache_queries_total", "GPU prefix cache queries, in terms of number of queried blocks.", counterKind, nil)
		s.fam("vllm:gpu_prefix_cache_hits_total", "GPU prefix cache hits, in terms of number of cached blocks.", counterKind, nil)
	case V0Multiproc:
		s.fam("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", gaugeKind, nil)
		s.fam("vllm:num_requests_running", "Number of requests currently running on GPU.", gaugeKind, nil)
		s.fam("vllm:num_requests_swapped", "Number of requests swapped to CPU.", gaugeKind, nil)
		s.fam("vllm:num_requests_waiting", "Number of requests waiting to be processed.", gaugeKind, nil)
		s.fam("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", gaugeKind, nil)
		s.fam("vllm:cpu_cache_usage_perc", "CPU KV-cache usage. 1 means 100 percent usage.", gaugeKind, nil)
		s.fam("vllm:cpu_prefix_cache_hit_rate", "CPU prefix cache block hit rate.", gaugeKind, nil)
		s.fam("vllm:gpu_prefix_cache_hit_rate", "GPU prefix cache block hit rate.", gaugeKind, nil)
		s.loraInfo = s.fam("vllm:lora_requests_info", "Running stats on lora requests.", gaugeKind, nil).
			add([]label{{"max_lora", "0"}, {"running_lora_adapters", ""}, {"waiting_lora_adapters", ""}}, 0)
	}
	s.fam("vllm:num_preemptions_total", "Cumulative number of preemption from the engine.", counterKind, nil)
	s.fam("vllm:prompt_tokens_total", "Number of prefill tokens processed.", counterKind, nil)
	s.fam("vllm:generation_tokens_total", "Number of generation tokens processed.", counterKind, nil)
	s.fam("vllm:request_success_total", "Count of successfully processed requests.", counterKind, nil)

	tokenFams := func() {
		s.fam("vllm:request_prompt_tokens", "Number of prefill tokens processed.", histogramKind, maxLen)
		s.fam("vllm:request_generation_tokens", "Number of generation tokens processed.", histogramKind, maxLen)
	}
	paramFams := func() {
		s.fam("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", histogramKind, maxLen)
		s.fam("vllm:request_params_n", "Histogram of the n request parameter.", histogramKind, paramsNBuckets)
		s.fam("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", histogramKind, maxLen)
	}
	latency, ttft, tpot := reqLatencyBuckets, ttftBuckets, tpotBuckets
	if s.cfg.Style != V1 {
		latency, ttft, tpot = reqLatencyOld, ttftOld, tpotOld
	}
	if s.cfg.Style == V0Multiproc {
		s.fam("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", histogramKind, iterationTokensV0)
	} else {
		tokenFams()
		s.fam("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", histogramKind, iterationTokensV1)
		paramFams()
	}
	s.fam("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", histogramKind, ttft)
	if s.cfg.Style == V1 {
		s.fam("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds. DEPRECATED: Use vllm:inter_token_latency_seconds instead.", histogramKind, tpot)
		s.fam("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", histogramKind, tpot)
	} else {
		s.fam("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", histogramKind, tpot)
	}
	if s.cfg.Style == V0Multiproc {
		s.fam("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", histogramKind, latency)
	} else {
		s.fam("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", histogramKind, latency)
	}
	s.fam("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", histogramKind, latency)
	s.fam("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", histogramKind, latency)
	s.fam("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", histogramKind, latency)
	s.fam("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", histogramKind, latency)
	if s.cfg.Style == V0Multiproc {
		s.fam("vllm:time_in_queue_requests", "Histogram of time the request spent in the queue in seconds.", histogramKind, latency)
		tokenFams()
		paramFams()
	} else {
		s.fam("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", gaugeKind, nil)
	}
	if s.cfg.Style != V1 {
		// One cache_config_info without an engine label.
		s.engines[0] = true
		s.byName["vllm:cache_config_info"].add(s.cacheConfigLabels(-1), 0).value = 1
	}
	if s.cfg.Padding {
		s.httpPadding()
	}
}

// cacheConfigLabels are CacheConfig's fields as vLLM prints them; engine < 0
// means no engine label.
func (s *Server) cacheConfigLabels(engine int) []label {
	ls := []label{
		{"block_size", "16"}, {"cache_dtype", "auto"}, {"calculate_kv_scales", "False"},
		{"cpu_offload_gb", "0"}, {"enable_prefix_caching", "True"},
		{"gpu_memory_utilization", "0.9"}, {"is_attention_free", "False"},
		{"num_cpu_blocks", "None"}, {"num_gpu_blocks", strconv.Itoa(kvBlocks)},
		{"num_gpu_blocks_override", "None"}, {"sliding_window", "None"},
		{"swap_space_bytes", "4294967296"},
	}
	switch s.cfg.Style {
	case V1:
		ls = append(ls, label{"cpu_kvcache_space_bytes", "None"}, label{"kv_cache_memory_bytes", "None"},
			label{"kv_sharing_fast_prefill", "False"}, label{"mamba_cache_dtype", "auto"},
			label{"mamba_page_size_padded", "None"}, label{"mamba_ssm_cache_dtype", "auto"},
			label{"prefix_caching_hash_algo", "sha256"}, label{"swap_space", "4"})
	case V0Multiproc:
		ls[4].value = "False" // the AIBrix V0 sample had prefix caching off
		ls[7].value = "9362"
	}
	if engine >= 0 {
		ls = append(ls, label{"engine", strconv.Itoa(engine)})
	}
	return ls
}

// kvBlocks is num_gpu_blocks of the simulated cache (16 tokens a block).
const kvBlocks = 31872

func (s *Server) pythonPadding() {
	gen := func(i int) []label { return []label{{"generation", strconv.Itoa(i)}} }
	f := s.plainFam("python_gc_objects_collected_total", "Objects collected during gc", counterKind)
	for i := range 3 {
		s.gcCollected[i] = f.add(gen(i), 0)
	}
	f = s.plainFam("python_gc_objects_uncollectable_total", "Uncollectable objects found during GC", counterKind)
	for i := range 3 {
		f.add(gen(i), 0)
	}
	f = s.plainFam("python_gc_collections_total", "Number of times this generation was collected", counterKind)
	for i := range 3 {
		s.gcCollections[i] = f.add(gen(i), 0)
	}
	s.plainFam("python_info", "Python platform information", gaugeKind).add([]label{
		{"implementation", "CPython"}, {"major", "3"}, {"minor", "12"}, {"patchlevel", "11"}, {"version", "3.12.11"},
	}, 0).value = 1
	s.vmBytes = s.plainFam("process_virtual_memory_bytes", "Virtual memory size in bytes.", gaugeKind).add(nil, 0)
	s.rssBytes = s.plainFam("process_resident_memory_bytes", "Resident memory size in bytes.", gaugeKind).add(nil, 0)
}

func (s *Server) processPadding() {
	s.cpuSecs = s.plainFam("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", counterKind).add(nil, 0)
	s.openFDs = s.plainFam("process_open_fds", "Number of open file descriptors.", gaugeKind).add(nil, 0)
	s.plainFam("process_max_fds", "Maximum number of open file descriptors.", gaugeKind).add(nil, 0).value = 1048576
}

func (s *Server) httpPadding() {
	chat := []label{{"handler", "/v1/chat/completions"}}
	models := []label{{"handler", "/v1/models"}}
	appCreated := s.createdTime() + 2.5
	f := s.fam("http_requests_total", "Total number of requests by method, status and handler.", counterKind, nil)
	s.httpModels = f.add(append(models[:1:1], label{"method", "GET"}, label{"status", "2xx"}), appCreated+11.03)
	s.httpChat = f.add(append(chat[:1:1], label{"method", "POST"}, label{"status", "2xx"}), appCreated+14.71)
	f = s.fam("http_request_size_bytes", "Content length of incoming requests by handler. Only value of header is respected. Otherwise ignored. No percentile calculated. ", summaryKind, nil)
	f.add(models, appCreated+11.03).count = 1
	s.reqSizeChat = f.add(chat, appCreated+14.71)
	f = s.fam("http_response_size_bytes", "Content length of outgoing responses by handler. Only value of header is respected. Otherwise ignored. No percentile calculated. ", summaryKind, nil)
	ms := f.add(models, appCreated+11.03)
	ms.count, ms.sum = 1, 493
	s.respSizeChat = f.add(chat, appCreated+14.71)
	f = s.fam("http_request_duration_highr_seconds", "Latency with many buckets but no API specific labels. Made for more accurate percentile calculations. ", histogramKind, httpHighrBuckets)
	s.highr = f.add(nil, appCreated)
	s.highr.observe(0.0021)
	f = s.fam("http_request_duration_seconds", "Latency with only few buckets by handler. Made to be only used if aggregation by handler is important. ", histogramKind, httpFewBuckets)
	s.durModels = f.add(append(models[:1:1], label{"method", "GET"}), appCreated+11.03)
	s.durModels.observe(0.0021)
	s.durChat = f.add(append(chat[:1:1], label{"method", "POST"}), appCreated+14.71)
}

// lookup returns the series of (model, engine), creating them for a model
// or engine not seen before (a real server would refuse an unknown model;
// the simulator is lenient so that a fake upstream never fails).
func (s *Server) lookup(model string, engine int) *perKey {
	if engine < 0 {
		engine = 0
	}
	k := key{model, engine}
	if p := s.keys[k]; p != nil {
		return p
	}
	if !s.engineLbl {
		if p := s.byModel[model]; p != nil {
			s.keys[k] = p
			return p
		}
	}
	labels := []label{{"model_name", model}}
	if s.engineLbl {
		labels = append(labels, label{"engine", strconv.Itoa(engine)})
		if !s.engines[engine] {
			s.engines[engine] = true
			s.byName["vllm:cache_config_info"].add(s.cacheConfigLabels(engine), 0).value = 1
		}
	}
	p := &perKey{model: model, labels: labels, success: map[string]*series{}, loads: map[int]Load{}}
	add := func(name string) *series {
		f := s.byName[name]
		if f == nil {
			return nil
		}
		return f.add(labels, s.createdTime())
	}
	switch s.cfg.Style {
	case SGLang:
		p.running, p.waiting, p.kv = add("sglang:num_running_reqs"), add("sglang:num_queue_reqs"), add("sglang:token_usage")
		p.promptTotal, p.genTotal, p.requests = add("sglang:prompt_tokens_total"), add("sglang:generation_tokens_total"), add("sglang:num_requests_total")
		p.ttft, p.itl, p.e2e = add("sglang:time_to_first_token_seconds"), add("sglang:inter_token_latency_seconds"), add("sglang:e2e_request_latency_seconds")
		p.promptTok, p.genTok = add("sglang:prompt_tokens_histogram"), add("sglang:generation_tokens_histogram")
		s.keys[k], s.byModel[model] = p, p
		return p
	case V1:
		p.running, p.waiting, p.kv = add("vllm:num_requests_running"), add("vllm:num_requests_waiting"), add("vllm:kv_cache_usage_perc")
		p.prefixQ, p.prefixH = add("vllm:prefix_cache_queries_total"), add("vllm:prefix_cache_hits_total")
	case V1NoEngine:
		p.running, p.waiting, p.kv = add("vllm:num_requests_running"), add("vllm:num_requests_waiting"), add("vllm:gpu_cache_usage_perc")
		p.prefixQ, p.prefixH = add("vllm:gpu_prefix_cache_queries_total"), add("vllm:gpu_prefix_cache_hits_total")
	case V0Multiproc:
		p.running, p.swapped, p.waiting = add("vllm:num_requests_running"), add("vllm:num_requests_swapped"), add("vllm:num_requests_waiting")
		p.kv, p.cpuKV = add("vllm:gpu_cache_usage_perc"), add("vllm:cpu_cache_usage_perc")
		p.cpuHit, p.gpuHit = add("vllm:cpu_prefix_cache_hit_rate"), add("vllm:gpu_prefix_cache_hit_rate")
		p.cpuHit.value, p.gpuHit.value = -1, -1 // prefix caching disabled
	}
	p.preempt, p.promptTotal, p.genTotal = add("vllm:num_preemptions_total"), add("vllm:prompt_tokens_total"), add("vllm:generation_tokens_total")
	if s.cfg.Style != V0Multiproc && !s.cfg.Lazy {
		// V1 pre-creates one series per finished_reason; V0 creates them
		// on first use (see successSeries).
		f := s.byName["vllm:request_success_total"]
		for _, r := range finishedReasons {
			p.success[r] = f.add(append(labels[:len(labels):len(labels)], label{"finished_reason", r}), s.createdTime())
		}
	}
	p.promptTok, p.genTok = add("vllm:request_prompt_tokens"), add("vllm:request_generation_tokens")
	p.iterTok, p.maxGen = add("vllm:iteration_tokens_total"), add("vllm:request_max_num_generation_tokens")
	p.paramsN, p.paramsMaxTok = add("vllm:request_params_n"), add("vllm:request_params_max_tokens")
	p.ttft, p.tpot, p.itl = add("vllm:time_to_first_token_seconds"), add("vllm:time_per_output_token_seconds"), add("vllm:inter_token_latency_seconds")
	p.e2e, p.queue = add("vllm:e2e_request_latency_seconds"), add("vllm:request_queue_time_seconds")
	p.inference, p.prefill, p.decode = add("vllm:request_inference_time_seconds"), add("vllm:request_prefill_time_seconds"), add("vllm:request_decode_time_seconds")
	p.timeInQueue = add("vllm:time_in_queue_requests")
	s.keys[k] = p
	if !s.engineLbl {
		s.byModel[model] = p
	}
	return p
}

func (s *Server) successSeries(p *perKey, reason string) *series {
	if r := p.success[reason]; r != nil {
		return r
	}
	f := s.byName["vllm:request_success_total"]
	r := f.add(append(p.labels[:len(p.labels):len(p.labels)], label{"finished_reason", reason}), s.createdTime())
	p.success[reason] = r
	return r
}

// ObserveFirstToken records a request's time to first token, as vLLM does
// in the frontend iteration that receives the request's first output.
func (s *Server) ObserveFirstToken(model string, engine int, ttft float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lookup(model, engine)
	s.observe(p.ttft, ttft)
	s.firstTokens++
}

// ObserveOne records one observation of a per-request family on its own,
// for servers that observe it at another moment than vLLM (the emulator's
// queue time at dequeue, its prefill time at the first token). A family
// the style does not have is not observed.
func (s *Server) ObserveOne(model string, engine int, m parser.Metric, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ser := range s.lookup(model, engine).seriesOf(m) {
		s.observe(ser, v)
	}
}

// seriesOf returns the series that observe metric m (nil where the style
// has no such family; V0's time_in_queue_requests duplicates the queue).
func (p *perKey) seriesOf(m parser.Metric) [2]*series {
	return [parser.NumMetrics][2]*series{
		parser.TTFT: {p.ttft}, parser.Queue: {p.queue, p.timeInQueue}, parser.Prefill: {p.prefill},
		parser.Decode: {p.decode}, parser.Inference: {p.inference}, parser.E2E: {p.e2e},
		parser.PromptTokens: {p.promptTok}, parser.GenerationTokens: {p.genTok},
	}[m]
}

// observe records one observation into ser (nil: the style has no such
// series).
func (s *Server) observe(ser *series, v float64) { s.observeN(ser, v, 1, v) }

func (s *Server) observeN(ser *series, v float64, n uint64, sum float64) {
	if ser == nil {
		return
	}
	if s.hide != nil {
		*s.hide = append(*s.hide, hiddenObs{ser: ser, v: v, n: n, sum: sum})
	}
	ser.observeN(v, n, sum)
}

// ObserveFinish records everything vLLM observes when a request finishes.
// The per-request histograms get exactly the values in f, except those
// f.Omit names. The token counters, iteration and per-token histograms,
// which a real server updates at every engine step, are updated here in
// one go; they are not per-request sources, only there to make the files
// look real.
func (s *Server) ObserveFinish(model string, engine int, f Finish) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.lookup(model, engine)
	values := [parser.NumMetrics]float64{
		parser.Queue: f.Queue, parser.Prefill: f.Prefill, parser.Decode: f.Decode, parser.Inference: f.Inference,
		parser.E2E: f.E2E, parser.PromptTokens: float64(f.PromptTokens), parser.GenerationTokens: float64(f.GenerationTokens),
	}
	for m := parser.Queue; m < parser.NumMetrics; m++ { // the finish group: all but TTFT
		if !f.Omit[m] {
			for _, ser := range p.seriesOf(m) {
				s.observe(ser, values[m])
			}
		}
	}
	s.observe(p.maxGen, float64(f.GenerationTokens))
	if f.MaxTokens > 0 {
		s.observe(p.paramsMaxTok, float64(f.MaxTokens))
	}
	reason := f.FinishedReason
	if reason == "" {
		reason = "stop"
	}
	if s.cfg.Style == SGLang {
		p.requests.value++
	} else {
		s.successSeries(p, reason).value++
	}

	// Step-level bookkeeping, folded into the finish.
	p.promptTotal.value += float64(f.PromptTokens)
	p.genTotal.value += float64(f.GenerationTokens)
	if p.prefixQ != nil {
		q, h := f.PromptTokens, f.PromptTokens*2/5/16*16
		if s.cfg.Style == V1NoEngine { // counted in blocks
			q, h = (q+15)/16, h/16
		}
		p.prefixQ.value += float64(q)
		p.prefixH.value += float64(h)
	}
	s.observe(p.iterTok, float64(f.PromptTokens+1))
	if n := f.GenerationTokens - 1; n > 0 {
		s.observeN(p.iterTok, 1, uint64(n), float64(n))
		per := f.Decode / float64(n)
		if s.cfg.Style == SGLang {
			// SGLang's ITL counts tokens; the decode time is not a
			// histogram of its own there, only this.
			per = (f.E2E - f.Queue - f.Prefill) / float64(n)
			s.observeN(p.itl, per, uint64(n), per*float64(n))
		} else {
			s.observeN(p.tpot, per, uint64(n), f.Decode)
			s.observeN(p.itl, per, uint64(n), f.Decode)
		}
	}

	s.finished++
	s.promptTokens += uint64(f.PromptTokens)
	s.genTokens += uint64(f.GenerationTokens)
	if s.httpChat != nil {
		req := uint64(4*f.PromptTokens + 180)
		resp := uint64(4*f.GenerationTokens + 350)
		s.httpChat.value++
		s.reqSizeChat.count++
		s.reqSizeChat.sum += float64(req)
		s.respSizeChat.count++
		s.respSizeChat.sum += float64(resp)
		d := f.E2E + 0.0004
		s.highr.observe(d)
		s.durChat.observe(d)
	}
}

// SetLoad sets the scheduler gauges of one engine. In styles without an
// engine label the engines of a model are summed (running, waiting) and
// averaged (KV-cache usage), as one series.
func (s *Server) SetLoad(model string, engine int, l Load) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if engine < 0 {
		engine = 0
	}
	p := s.lookup(model, engine)
	p.loads[engine] = l
	var run, wait int
	var kv float64
	for _, x := range p.loads {
		run += x.Running
		wait += x.Waiting
		kv += x.KVCacheUsage
	}
	p.running.value = float64(run)
	p.waiting.value = float64(wait)
	p.kv.value = kv / float64(len(p.loads))
}

// SetTime tells the server the current (simulated) time; it drives
// values a real server derives from the clock (process CPU time,
// lora_requests_info). Observations never depend on it.
func (s *Server) SetTime(t time.Time) {
	s.mu.Lock()
	s.now = t
	s.mu.Unlock()
}

// updateDerived computes the padding values from the totals. The formulas
// only need to be monotonic and plausible.
func (s *Server) updateDerived() {
	ev := s.finished + s.firstTokens
	if s.gcCollected[0] != nil {
		s.gcCollected[0].value = float64(18234 + 61*ev + s.genTokens/7)
		s.gcCollected[1].value = float64(4411 + 5*ev)
		s.gcCollected[2].value = float64(1287 + ev/9)
		s.gcCollections[0].value = float64(2103 + ev/2 + s.genTokens/400)
		s.gcCollections[1].value = float64(191 + ev/22)
		s.gcCollections[2].value = float64(12 + ev/240)
		s.vmBytes.value = float64(121_503_739_904 + 4096*(s.finished/3))
		s.rssBytes.value = float64(1_317_310_464 + 4096*(s.finished/2) + 64*s.promptTokens/1000*1000)
	}
	if s.cpuSecs != nil {
		up := s.now.Sub(s.cfg.StartTime).Seconds()
		if up < 0 {
			up = 0
		}
		// utime and stime in 100 Hz ticks, summed as Python does.
		ticks := uint64(up*2.7) + s.genTokens/9 + s.promptTokens/300 + 31*s.finished
		utime, stime := ticks*7/8, ticks-ticks*7/8
		s.cpuSecs.value = float64(utime)/100 + float64(stime)/100
		var inflight int
		for _, p := range s.keys {
			for _, l := range p.loads {
				inflight += l.Running + l.Waiting
			}
		}
		s.openFDs.value = float64(63 + inflight)
	}
	if s.loraInfo != nil {
		s.loraInfo.value = float64(s.now.UnixNano()) / 1e9
	}
}

// AppendText appends one full text-format scrape of the current state to
// b. It is the allocation-free form of WriteTo.
func (s *Server) AppendText(b []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updateDerived()
	start := len(b)
	for _, f := range s.fams {
		b = f.appendText(b, s.multiproc, s.cfg.Lazy)
	}
	s.lastSize = len(b) - start
	return b
}

// WriteTo writes one full text-format scrape (Prometheus text format
// 0.0.4, as prometheus_client generates it).
func (s *Server) WriteTo(w io.Writer) (int64, error) {
	s.mu.Lock()
	n := s.lastSize
	s.mu.Unlock()
	b := s.AppendText(make([]byte, 0, n+n/8+1024))
	written, err := w.Write(b)
	return int64(written), err
}

// ServeHTTP serves the current scrape, as vLLM's /metrics does, whatever
// the path: mount it where the fake server needs it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	n := s.lastSize
	s.mu.Unlock()
	b := s.AppendText(make([]byte, 0, n+n/8+1024))
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(b)
}
