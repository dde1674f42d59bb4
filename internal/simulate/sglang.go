package simulate

// sglangFamilies builds the families of SGLang's metrics collector in the
// order its docs example prints them (VLLM_METRICS.md §4; the sample
// sglang-v0.4.x-docs-production-metrics.prom), with the late-2025 buckets
// and collect_tokens_histogram on. SGLang always runs prometheus_client in
// multiprocess mode, so there are no _created, python_* or process_*
// families.
func (s *Server) sglangFamilies(maxLen []float64) {
	s.fam("sglang:prompt_tokens_total", "Number of prefill tokens processed.", counterKind, nil)
	s.fam("sglang:generation_tokens_total", "Number of generation tokens processed.", counterKind, nil)
	s.fam("sglang:token_usage", "The token usage", gaugeKind, nil)
	s.fam("sglang:num_running_reqs", "The number of running requests.", gaugeKind, nil)
	s.fam("sglang:num_queue_reqs", "The number of requests in the waiting queue.", gaugeKind, nil)
	s.fam("sglang:num_requests_total", "Number of requests processed.", counterKind, nil)
	s.fam("sglang:time_to_first_token_seconds", "Histogram of time to first token in seconds.", histogramKind, sglangTTFTBuckets)
	s.fam("sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", histogramKind, sglangITLBuckets)
	s.fam("sglang:e2e_request_latency_seconds", "Histogram of End-to-end request latency in seconds", histogramKind, sglangE2EBuckets)
	s.fam("sglang:prompt_tokens_histogram", "Histogram of prompt token length.", histogramKind, maxLen)
	s.fam("sglang:generation_tokens_histogram", "Histogram of generation token length.", histogramKind, maxLen)
}
