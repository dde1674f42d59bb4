package parser

import (
	"strings"
	"testing"
)

// TestErrorsQuoteAShortPrefix: an error quotes at most a short prefix of
// a bad line, however long the line: the error is logged, and before, a
// 10 MB line made a 10 MB log line.
func TestErrorsQuoteAShortPrefix(t *testing.T) {
	const head = "# TYPE vllm:e2e_request_latency_seconds histogram\n"
	long := strings.Repeat("x", 1<<20)
	series := `vllm:e2e_request_latency_seconds_count{model_name="m"} 1` + "\n" +
		`vllm:e2e_request_latency_seconds_sum{model_name="m"} 1` + "\n"
	tests := []struct{ name, data string }{
		{"value", `vllm:e2e_request_latency_seconds_count{model_name="m"} ` + long + "\n"},
		{"after the timestamp", `vllm:e2e_request_latency_seconds_count{model_name="m"} 1 1 ` + long + "\n"},
		{"timestamp", `vllm:e2e_request_latency_seconds_count{model_name="m"} 1 ` + long + "\n"},
		{"label name", `vllm:e2e_request_latency_seconds_count{` + long + `="m"} 1` + "\n"},
		{"unterminated label value", `vllm:e2e_request_latency_seconds_count{model_name="` + long + "\n"},
		{"le", `vllm:e2e_request_latency_seconds_bucket{model_name="m",le="` + long + `"} 1` + "\n" + series},
		{"incomplete series with a long label", `vllm:e2e_request_latency_seconds_bucket{model_name="` + long + `",le="+Inf"} 1` + "\n"},
		{"duplicate bucket with a long label", strings.Repeat(`vllm:e2e_request_latency_seconds_bucket{model_name="`+long+`",le="+Inf"} 1`+"\n", 2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Scan([]byte(head + tc.data))
			if err == nil {
				t.Fatal("no error")
			}
			if n := len(err.Error()); n > 600 {
				t.Fatalf("error of %d bytes: %.200s…", n, err.Error())
			}
		})
	}
}
