package simulate

// Bucket lists of vLLM's histograms (see VLLM_METRICS.md §3.3 and §3.4).
// The "old" lists are those before vLLM PR #15202 (≈v0.8.3), which appended
// larger bounds; V1NoEngine (v0.8.0-0.8.2) and V0Multiproc (v0.6.4-0.7)
// scrapes use them, so the generated files exercise more than one layout.
var (
	reqLatencyBuckets = []float64{0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0}
	reqLatencyOld     = reqLatencyBuckets[:15] // up to 60.0

	ttftBuckets = []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0}
	ttftOld     = ttftBuckets[:16] // up to 10.0

	tpotBuckets = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0}
	tpotOld     = tpotBuckets[:13] // up to 2.5

	iterationTokensV1 = []float64{1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}
	iterationTokensV0 = v0IterationBuckets()

	paramsNBuckets = []float64{1, 2, 5, 10, 20}

	// prometheus-fastapi-instrumentator defaults, used by the padding.
	httpHighrBuckets = []float64{0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5, 10, 30, 60}
	httpFewBuckets   = []float64{0.1, 0.5, 1}
)

// build125Buckets is vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ...
// up to and including max.
func build125Buckets(max int) []float64 {
	var out []float64
	for exp := 1; ; exp *= 10 {
		for _, m := range []int{1, 2, 5} {
			v := m * exp
			if v > max {
				return out
			}
			out = append(out, float64(v))
		}
	}
}

// v0IterationBuckets is V0's [1] + CUDA-graph batch sizes (1, 2, 4, then
// multiples of 8 up to 256), as in the AIBrix V0 sample.
func v0IterationBuckets() []float64 {
	out := []float64{1, 2, 4}
	for v := 8; v <= 256; v += 8 {
		out = append(out, float64(v))
	}
	return out
}

// SGLang's default buckets, late 2025 (VLLM_METRICS.md §4).
var (
	sglangTTFTBuckets = []float64{0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400}
	sglangITLBuckets  = []float64{0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8}
	sglangE2EBuckets  = []float64{0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 600, 1200, 1800, 2400}
)
