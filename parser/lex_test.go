package parser

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// checkLexer compares the lexer alone with Scan's documented relevance
// rule (refClassify): next returns exactly the relevant lines, in order,
// with their numbers, names and the rest of the line after the name, and
// sawServer is whether any line starts with a server's namespace.
func checkLexer(t *testing.T, data []byte) {
	t.Helper()
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return // Scan rejects such data before lexing
	}
	var want []string
	server := false
	for i, line := range strings.Split(string(data[:len(data)-1]), "\n") {
		trimmed := strings.TrimLeft(line, " \t")
		server = server || strings.HasPrefix(trimmed, "vllm:") || strings.HasPrefix(trimmed, "sglang:")
		if name, ok := refClassify(line); ok {
			want = append(want, fmt.Sprintf("%d %s %q", i+1, name, trimmed[len(name):]))
		}
	}
	var l lexer
	l.reset(data)
	var got []string
	for {
		sn, rest, ok := l.next()
		if !ok {
			break
		}
		name := processStartTime
		if sn.fam >= 0 {
			name = famNames[sn.fam] + [...]string{partBucket: "_bucket", partSum: "_sum", partCount: "_count"}[sn.part]
		}
		got = append(got, fmt.Sprintf("%d %s %q", l.line, name, rest))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lexer returned\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if l.sawServer != server {
		t.Fatalf("sawServer %v, want %v", l.sawServer, server)
	}
}

// TestLexerLines: the lexer finds the relevant lines of every sample, and
// of lines that only look relevant.
func TestLexerLines(t *testing.T) {
	for _, p := range sampleFiles(t) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		checkLexer(t, data)
	}
	in := strings.Join([]string{
		`vllm:e2e_request_latency_seconds_sum 1`,
		`vllm:e2e_request_latency_seconds_sum{a="1"} 1`, // same name: the cached lookup
		`vllm:e2e_request_latency_seconds_summary 1`,    // a longer name sharing the prefix
		`vllm:e2e_request_latency_seconds_sum"x" 1`,     // name continued in quotes
		` 	sglang:e2e_request_latency_seconds_count 2`,
		`sglang:e2e_request_latency_seconds_created 2`,
		`vllm:num_requests_running 0`,
		`process_start_time_seconds 1.7e9`,
		`process_start_time_seconds_total 1`,
		`# vllm:e2e_request_latency_seconds_sum 1`,
		`{"vllm:e2e_request_latency_seconds_sum"} 1`,
		``,
		`   `,
		`vllm:e2e_request_latency_seconds_bucket`,
	}, "\n") + "\n"
	checkLexer(t, []byte(in))
	var l lexer
	l.reset([]byte(in))
	n := 0
	for _, _, ok := l.next(); ok; _, _, ok = l.next() {
		n++
	}
	if n != 5 {
		t.Fatalf("%d relevant lines, want 5", n)
	}
}

// FuzzLexer: on any bytes, the lexer returns the lines the relevance rule
// names (Scan's result is checked against expfmt by FuzzScanAgainstExpfmt;
// this pins the lexer's part of it alone).
func FuzzLexer(f *testing.F) {
	f.Add(synthScrape(1))
	for _, c := range trickyInputs {
		f.Add([]byte(c))
	}
	f.Add([]byte("vllm:e2e_request_latency_seconds_sum 1\nvllm:e2e_request_latency_seconds_sumx 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Count(data, []byte("\n")) > 10000 {
			return
		}
		checkLexer(t, data)
	})
}
