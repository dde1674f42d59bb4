// Package parser reads what the snapshot directory holds: file names
// ({request_id}_{stage}_{YYYYMMDD_HHMMSS_micro}.txt) and the Prometheus text
// exposition inside each file. It extracts only the per-request histograms
// the exporter republishes, plus process_start_time_seconds; everything else
// in a scrape is skipped without being parsed.
//
// Scan is split as Prometheus's textparse splits lexing from building:
// lex.go finds the relevant lines and reads their tokens (label block,
// value, timestamp), build.go turns them into series and checks them,
// scan.go holds the API and the loop between the two.
//
// The domain's family enum, Metric, lives here although collector,
// attribution, report and others use it, because the parser is where a
// family gets its identity: the table of source families (sources), the
// one place that knows which server names feed which quantity, maps a
// scraped name to a Metric, and every Series the scanner returns is keyed
// by it. The parser imports nothing of the project, so any package can
// use the enum without a cycle. A package of its own would hold a dozen
// lines, and the mapping would stay here, split from the type it
// produces.
package parser

// Metric identifies one per-request quantity that the servers observe once
// per request into a histogram, and that delta-exporter republishes as a
// per-request histogram of its own.
type Metric uint8

// The metrics, in output order. TPOT is not here: it is derived from Decode
// and GenerationTokens by the attribution step, never read from a scrape.
const (
	TTFT Metric = iota
	Queue
	Prefill
	Decode
	Inference
	E2E
	PromptTokens
	GenerationTokens
	NumMetrics // number of metrics; not a metric
)

var metricNames = [NumMetrics]string{
	TTFT:             "time_to_first_token_seconds",
	Queue:            "queue_seconds",
	Prefill:          "prefill_seconds",
	Decode:           "decode_seconds",
	Inference:        "inference_seconds",
	E2E:              "e2e_seconds",
	PromptTokens:     "prompt_tokens",
	GenerationTokens: "generation_tokens",
}

// Name is the metric's suffix in the exporter's output
// (llm_request_<Name>) and its key in reports.
func (m Metric) Name() string {
	if m < NumMetrics {
		return metricNames[m]
	}
	return "unknown"
}

// IsTokens reports whether the metric counts tokens (exact integers) rather
// than seconds.
func (m Metric) IsTokens() bool { return m == PromptTokens || m == GenerationTokens }

// Group is the moment at which the server observes a metric. All metrics of
// one group are observed together, once per request, so one observation
// index identifies one request across the whole group.
type Group uint8

const (
	// FirstToken: observed when the request's first output token is processed.
	FirstToken Group = iota
	// Finish: observed when the request finishes.
	Finish
	NumGroups // number of groups; not a group
)

// Group returns the moment at which m is observed.
func (m Metric) Group() Group {
	if m == TTFT {
		return FirstToken
	}
	return Finish
}

func (g Group) String() string {
	if g == FirstToken {
		return "first_token"
	}
	return "finish"
}

// sources maps every source family name the exporter understands to the
// metric it feeds. Several eras of vLLM use the same names; SGLang's are
// listed for the metrics it has. Families not listed here are skipped.
var sources = map[string]Metric{
	"vllm:time_to_first_token_seconds":    TTFT,
	"vllm:request_queue_time_seconds":     Queue,
	"vllm:request_prefill_time_seconds":   Prefill,
	"vllm:request_decode_time_seconds":    Decode,
	"vllm:request_inference_time_seconds": Inference,
	"vllm:e2e_request_latency_seconds":    E2E,
	"vllm:request_prompt_tokens":          PromptTokens,
	"vllm:request_generation_tokens":      GenerationTokens,

	"sglang:time_to_first_token_seconds": TTFT,
	"sglang:e2e_request_latency_seconds": E2E,
	"sglang:prompt_tokens_histogram":     PromptTokens,
	"sglang:generation_tokens_histogram": GenerationTokens,
	// The first SGLang metrics (PR #1853) and 2026 versions use
	// vLLM-compatible names for the token histograms.
	"sglang:request_prompt_tokens":     PromptTokens,
	"sglang:request_generation_tokens": GenerationTokens,
}

// SourceFamilies returns the source family names feeding m (for docs and tests).
func SourceFamilies(m Metric) []string {
	var out []string
	for name, mm := range sources {
		if mm == m {
			out = append(out, name)
		}
	}
	return out
}

// LookupSource returns the metric fed by the source family name.
func LookupSource(family string) (Metric, bool) {
	m, ok := sources[family]
	return m, ok
}
