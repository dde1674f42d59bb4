package parser

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// pyFloat renders v as prometheus_client's floatToGoString does: Python's
// repr, switched to a Go-style exponent when more than 6 digits precede the
// point ("8.128902e+06").
func pyFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	var s string
	if a := math.Abs(v); a != 0 && (a < 1e-4 || a >= 1e16) {
		s = strconv.FormatFloat(v, 'e', -1, 64)
	} else {
		s = strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
	}
	if dot := strings.IndexByte(s, '.'); v > 0 && dot > 6 && !strings.Contains(s, "e") {
		m := strings.TrimRight(s[:1]+"."+s[1:dot]+s[dot+1:], "0.")
		return fmt.Sprintf("%se+0%d", m, dot-1)
	}
	return s
}

// synthScrape builds a vLLM V1 (≈v0.10, single API server, engine="0")
// /metrics output of about 41 KB: the python_gc/process families, the
// prometheus-fastapi-instrumentator http families, and every vllm: family
// with its _created companion, with the bucket layouts of that version and
// consistent (cumulative) random counts. It stands in for
// testdata/realistic/vllm-v1-34k.prom while that file does not exist.
func synthScrape(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	const model = `Qwen/Qwen3-8B`
	lbl := `engine="0",model_name="` + model + `"`
	created := 1.7537953269352946e+09
	family := func(name, help, typ string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	createdFam := func(name, help, labels string) {
		family(name+"_created", help, "gauge")
		created += r.Float64() / 1000
		fmt.Fprintf(&b, "%s_created{%s} %s\n", name, labels, pyFloat(created))
	}
	// hist writes one histogram series with le placed where
	// prometheus_client puts it (sorted label names).
	hist := func(name, pre, post string, bounds []float64, n int, scale float64, intVals bool) {
		counts := make([]float64, len(bounds)+1)
		sum := 0.0
		for range n {
			v := r.ExpFloat64() * scale
			if intVals {
				v = math.Ceil(v)
			}
			sum += v
			i := 0
			for i < len(bounds) && v > bounds[i] {
				i++
			}
			counts[i]++
		}
		cum := 0.0
		for i := range counts {
			cum += counts[i]
			bound := math.Inf(1)
			if i < len(bounds) {
				bound = bounds[i]
			}
			fmt.Fprintf(&b, "%s_bucket{%sle=\"%s\"%s} %s\n", name, pre, pyFloat(bound), post, pyFloat(cum))
		}
		lb := strings.TrimSuffix(pre, ",") + post
		fmt.Fprintf(&b, "%s_count{%s} %s\n", name, lb, pyFloat(float64(n)))
		fmt.Fprintf(&b, "%s_sum{%s} %s\n", name, lb, pyFloat(sum))
	}
	plain := func(name, help, typ, labels string, v float64) {
		family(name, help, typ)
		if labels != "" {
			labels = "{" + labels + "}"
		}
		fmt.Fprintf(&b, "%s%s %s\n", name, labels, pyFloat(v))
	}

	family("python_gc_objects_collected_total", "Objects collected during gc", "counter")
	for g, v := range []float64{18234, 3621, 1020} {
		fmt.Fprintf(&b, "python_gc_objects_collected_total{generation=\"%d\"} %s\n", g, pyFloat(v))
	}
	family("python_gc_objects_uncollectable_total", "Uncollectable objects found during GC", "counter")
	for g := range 3 {
		fmt.Fprintf(&b, "python_gc_objects_uncollectable_total{generation=\"%d\"} 0.0\n", g)
	}
	family("python_gc_collections_total", "Number of times this generation was collected", "counter")
	for g, v := range []float64{2101, 190, 12} {
		fmt.Fprintf(&b, "python_gc_collections_total{generation=\"%d\"} %s\n", g, pyFloat(v))
	}
	plain("python_info", "Python platform information", "gauge",
		`implementation="CPython",major="3",minor="12",patchlevel="11",version="3.12.11"`, 1)
	plain("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", "", 6.0129624064e+10)
	plain("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", "", 2.913656832e+09)
	plain("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", "", 1.75379526542e+09)
	plain("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", "", 439.72)
	plain("process_open_fds", "Number of open file descriptors.", "gauge", "", 71)
	plain("process_max_fds", "Maximum number of open file descriptors.", "gauge", "", 1.048576e+06)

	plain("vllm:num_requests_running", "Number of requests in model execution batches.", "gauge", lbl, 1)
	plain("vllm:num_requests_waiting", "Number of requests waiting to be processed.", "gauge", lbl, 0)
	plain("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "gauge", lbl, 9.75010481363281e-06)
	for _, c := range []string{"prefix_cache_queries", "prefix_cache_hits", "num_preemptions", "prompt_tokens", "generation_tokens"} {
		plain("vllm:"+c+"_total", "Counter "+c+".", "counter", lbl, float64(r.IntN(5000000)))
		createdFam("vllm:"+c, "Counter "+c+".", lbl)
	}
	family("vllm:request_success_total", "Count of successfully processed requests.", "counter")
	for _, fr := range []string{"stop", "length", "abort"} {
		fmt.Fprintf(&b, "vllm:request_success_total{engine=\"0\",finished_reason=%q,model_name=%q} %s\n", fr, model, pyFloat(float64(r.IntN(3000))))
	}
	family("vllm:request_success_created", "Count of successfully processed requests.", "gauge")
	for _, fr := range []string{"stop", "length", "abort"} {
		fmt.Fprintf(&b, "vllm:request_success_created{engine=\"0\",finished_reason=%q,model_name=%q} %s\n", fr, model, pyFloat(created))
	}

	const n = 3177
	tokens := []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000}
	iter := []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}
	ttft := []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560}
	tpot := []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	req := []float64{0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680}
	hists := []struct {
		name, help string
		bounds     []float64
		n          int
		scale      float64
	}{
		{"vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens, n, 800},
		{"vllm:request_generation_tokens", "Number of generation tokens processed.", tokens, n, 300},
		{"vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", iter, 58211, 40},
		{"vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft, n, 0.3},
		{"vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", tpot, 951000, 0.03},
		{"vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", tpot, 951000, 0.03},
		{"vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", req, n, 9},
		{"vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", req, n, 0.2},
		{"vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", req, n, 8},
		{"vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", req, n, 0.2},
		{"vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", req, n, 8},
	}
	for _, h := range hists {
		family(h.name, h.help, "histogram")
		nn := h.n
		if nn > 20000 { // do not draw a million samples
			nn = 20000
		}
		hist(h.name, `engine="0",`, `,model_name="`+model+`"`, h.bounds, nn, h.scale, strings.Contains(h.name, "tokens"))
		createdFam(h.name, h.help, lbl)
	}
	plain("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", "gauge",
		`block_size="16",cache_dtype="auto",calculate_kv_scales="False",cpu_offload_gb="0",enable_prefix_caching="True",engine="0",gpu_memory_utilization="0.9",is_attention_free="False",num_cpu_blocks="None",num_gpu_blocks="29127",num_gpu_blocks_override="None",prefix_caching_hash_algo="builtin",sliding_window="None",swap_space="4",swap_space_bytes="4294967296"`, 1)

	handlers := []string{"/v1/chat/completions", "/v1/completions", "/metrics", "/health", "/v1/models"}
	family("http_requests_total", "Total number of requests by method, status and handler.", "counter")
	for _, h := range handlers {
		fmt.Fprintf(&b, "http_requests_total{handler=%q,method=\"GET\",status=\"2xx\"} %s\n", h, pyFloat(float64(r.IntN(9000))))
	}
	family("http_requests_created", "Total number of requests by method, status and handler.", "gauge")
	for _, h := range handlers {
		fmt.Fprintf(&b, "http_requests_created{handler=%q,method=\"GET\",status=\"2xx\"} %s\n", h, pyFloat(created))
	}
	for _, sz := range []string{"request", "response"} {
		name := "http_" + sz + "_size_bytes"
		family(name, "Content length of incoming requests by handler.", "summary")
		for _, h := range handlers {
			fmt.Fprintf(&b, "%s_count{handler=%q} %s\n", name, h, pyFloat(float64(r.IntN(9000))))
			fmt.Fprintf(&b, "%s_sum{handler=%q} %s\n", name, h, pyFloat(float64(r.IntN(9000000))))
		}
		family(name+"_created", "Content length of incoming requests by handler.", "gauge")
		for _, h := range handlers {
			fmt.Fprintf(&b, "%s_created{handler=%q} %s\n", name, h, pyFloat(created))
		}
	}
	family("http_request_duration_highr_seconds", "Latency with many buckets but no API specific labels.", "histogram")
	hist("http_request_duration_highr_seconds", "", "",
		[]float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5, 10, 30, 60}, 9000, 2, false)
	family("http_request_duration_highr_seconds_created", "Latency with many buckets but no API specific labels.", "gauge")
	fmt.Fprintf(&b, "http_request_duration_highr_seconds_created %s\n", pyFloat(created))
	family("http_request_duration_seconds", "Latency with only few buckets by handler.", "histogram")
	for _, h := range handlers {
		hist("http_request_duration_seconds", fmt.Sprintf("handler=%q,", h), `,method="GET"`, []float64{0.1, 0.5, 1}, 2000, 0.5, false)
	}
	return b.Bytes()
}
