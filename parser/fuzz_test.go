package parser

// FuzzScanAgainstExpfmt checks Scan against github.com/prometheus/common/expfmt.
//
// The oracle, refScan, does all lexical work with expfmt: every line that
// Scan's documented rule calls relevant (first name, read as an unquoted
// name, is X_bucket/X_sum/X_count of a source family or
// process_start_time_seconds, and is not continued by a quote) is parsed
// alone by expfmt's TextParser; the samples it returns are then grouped into
// series with plain maps and checked by the rules Scan documents. The fuzz
// target asserts, for every input:
//
//  1. Scan and refScan agree: the same error reason (and, for ErrSyntax,
//     the same line), or the same snapshot bit for bit.
//  2. If expfmt parses the whole input, Scan either succeeds, or fails with
//     ErrEmpty, ErrIncomplete or ErrNoFamilies, or with ErrSyntax only for
//     the documented stricter checks: a repeated sample, a _bucket line
//     without a numeric non-NaN le, an le on a _sum/_count line (refScan
//     flags these "strict"), or a relevant line that expfmt itself rejects
//     when parsed alone but tolerates in the file's context (a histogram
//     TYPE makes expfmt drop le from the label pairs, so it accepts a
//     repeated le).
//  3. If Scan succeeds, the relevant lines alone are a valid exposition for
//     expfmt: whatever expfmt rejects in the whole input is in lines Scan
//     does not read (comments, TYPE/HELP misuse, other families).
//
// Run (seeds: every file of testdata/samples and testdata/realistic, the
// synthetic scrape, trickyInputs, committed under testdata/fuzz):
//
//	go test -run '^$' -fuzz FuzzScanAgainstExpfmt -fuzztime 30s -fuzzminimizetime 2s ./parser
//
// Keep -fuzzminimizetime short: minimising an interesting 150 KB input
// with the default 60 s looks like a stall.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type refResult struct {
	snap   *Snapshot
	reason error // nil or one of the sentinels
	line   int   // for ErrSyntax
	strict bool  // ErrSyntax from a check expfmt's TextParser does not make
	alone  bool  // ErrSyntax because expfmt rejects the line parsed alone
	why    string
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':'
}

// refClassify applies Scan's documented relevance rule to one line.
func refClassify(line string) (name string, relevant bool) {
	t := strings.TrimLeft(line, " \t")
	n := 0
	for n < len(t) && isNameByte(t[n]) {
		n++
	}
	name = t[:n]
	if n < len(t) && t[n] == '"' {
		return name, false
	}
	if name == processStartTime {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if _, ok := LookupSource(base); ok {
				return name, true
			}
		}
	}
	return name, false
}

// refFloat is the text format's float: strconv without hex or underscores.
func refFloat(s string) (float64, bool) {
	if strings.ContainsAny(s, "pP_") {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

func refLegacyName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func refEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

type refSeries struct {
	fam, labels, model string
	metric             Metric
	count, sum         float64
	hasCount, hasSum   bool
	buckets            map[float64]float64
}

func refScan(data []byte) refResult {
	if len(bytes.Trim(data, " \t\r\n")) == 0 {
		return refResult{reason: ErrEmpty}
	}
	if data[len(data)-1] != '\n' {
		return refResult{reason: ErrIncomplete, why: "no final newline"}
	}
	series := map[string]*refSeries{}
	var pst float64
	hasPST := false
	sawServer := false
	syntax := func(line int, strict bool, why string) refResult {
		return refResult{reason: ErrSyntax, line: line, strict: strict, why: why}
	}
	for i, line := range strings.Split(string(data[:len(data)-1]), "\n") {
		lineNo := i + 1
		if t := strings.TrimLeft(line, " \t"); strings.HasPrefix(t, "vllm:") || strings.HasPrefix(t, "sglang:") {
			sawServer = true
		}
		name, relevant := refClassify(line)
		if !relevant {
			continue
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(line + "\n"))
		if err != nil {
			return refResult{reason: ErrSyntax, line: lineNo, alone: true, why: err.Error()}
		}
		mf := fams[name]
		if len(fams) != 1 || mf == nil || len(mf.Metric) != 1 || mf.GetType() != dto.MetricType_UNTYPED {
			panic(fmt.Sprintf("oracle: line %d %q parsed as %v", lineNo, line, fams))
		}
		m := mf.Metric[0]
		val := m.GetUntyped().GetValue()
		labels := map[string]string{}
		for _, lp := range m.Label {
			labels[lp.GetName()] = lp.GetValue()
		}
		if name == processStartTime {
			if len(labels) > 0 {
				continue
			}
			if hasPST {
				return syntax(lineNo, true, "duplicate process_start_time_seconds")
			}
			pst, hasPST = val, true
			continue
		}
		var fam, part string
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suf); ok {
				fam, part = base, suf
			}
		}
		le, hasLe := labels["le"]
		var bound float64
		if part == "_bucket" {
			if !hasLe {
				return syntax(lineNo, true, "bucket without le")
			}
			var ok bool
			if bound, ok = refFloat(le); !ok || math.IsNaN(bound) {
				return syntax(lineNo, true, "bad le")
			}
			if bound == 0 {
				bound = 0 // -0 and 0 are one bound
			}
		} else if hasLe {
			return syntax(lineNo, true, "le on sum/count")
		}
		delete(labels, "le")
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range labels {
				if !yield(k) {
					return
				}
			}
		})
		var canon []string
		for _, k := range keys {
			n := k
			if !refLegacyName(k) {
				n = `"` + refEscape(k) + `"`
			}
			canon = append(canon, n+`="`+refEscape(labels[k])+`"`)
		}
		ls := strings.Join(canon, ",")
		key := fam + "\x00" + ls
		sr := series[key]
		if sr == nil {
			metric, _ := LookupSource(fam)
			mdl, ok := labels["model_name"]
			if !ok {
				mdl = labels["name"]
			}
			sr = &refSeries{fam: fam, labels: ls, model: mdl, metric: metric, buckets: map[float64]float64{}}
			series[key] = sr
		}
		switch part {
		case "_count":
			if sr.hasCount {
				return syntax(lineNo, true, "duplicate count")
			}
			sr.count, sr.hasCount = val, true
		case "_sum":
			if sr.hasSum {
				return syntax(lineNo, true, "duplicate sum")
			}
			sr.sum, sr.hasSum = val, true
		default:
			if _, dup := sr.buckets[bound]; dup {
				return syntax(lineNo, true, "duplicate bucket")
			}
			sr.buckets[bound] = val
		}
	}
	if len(series) == 0 && !hasPST && !sawServer {
		return refResult{reason: ErrNoFamilies}
	}
	snap := &Snapshot{ProcessStartTime: pst, HasProcessStartTime: hasPST}
	var list []*refSeries
	for _, sr := range series {
		list = append(list, sr)
	}
	slices.SortFunc(list, func(a, b *refSeries) int {
		if a.metric != b.metric {
			return int(a.metric) - int(b.metric)
		}
		if c := strings.Compare(a.labels, b.labels); c != 0 {
			return c
		}
		return strings.Compare(a.fam, b.fam)
	})
	var why string
	for _, sr := range list {
		out := Series{Metric: sr.metric, Labels: sr.labels, Model: sr.model, Count: sr.count, Sum: sr.sum}
		for _, ub := range slices.Sorted(func(yield func(float64) bool) {
			for k := range sr.buckets {
				if !yield(k) {
					return
				}
			}
		}) {
			out.Buckets = append(out.Buckets, Bucket{UpperBound: ub, Count: sr.buckets[ub]})
		}
		snap.Series = append(snap.Series, out)
		if why != "" {
			continue
		}
		nb := len(out.Buckets)
		switch {
		case !sr.hasCount:
			why = "no count"
		case !sr.hasSum:
			why = "no sum"
		case math.IsNaN(sr.count) || sr.count < 0 || math.IsInf(sr.count, 1):
			why = "bad count"
		case nb == 0 || !math.IsInf(out.Buckets[nb-1].UpperBound, 1):
			why = "no +Inf"
		default:
			for j, b := range out.Buckets {
				if math.IsNaN(b.Count) || b.Count < 0 || math.IsInf(b.Count, 1) {
					why = "bad bucket count"
				} else if j > 0 && b.Count < out.Buckets[j-1].Count {
					why = "not cumulative"
				}
				if why != "" {
					break
				}
			}
			if why == "" && out.Buckets[nb-1].Count != sr.count {
				why = "+Inf != count"
			}
		}
	}
	if why != "" {
		return refResult{snap: snap, reason: ErrIncomplete, why: why}
	}
	return refResult{snap: snap}
}

func sameFloat(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }

// diffSnapshots describes the first difference between two snapshots.
func diffSnapshots(got, want *Snapshot) string {
	if got.HasProcessStartTime != want.HasProcessStartTime || !sameFloat(got.ProcessStartTime, want.ProcessStartTime) {
		return fmt.Sprintf("process start time %v/%v, want %v/%v",
			got.HasProcessStartTime, got.ProcessStartTime, want.HasProcessStartTime, want.ProcessStartTime)
	}
	if len(got.Series) != len(want.Series) {
		return fmt.Sprintf("%d series, want %d", len(got.Series), len(want.Series))
	}
	for i := range got.Series {
		g, w := &got.Series[i], &want.Series[i]
		switch {
		case g.Metric != w.Metric || g.Labels != w.Labels || g.Model != w.Model:
			return fmt.Sprintf("series %d: %v{%s} model %q, want %v{%s} model %q", i,
				g.Metric.Name(), g.Labels, g.Model, w.Metric.Name(), w.Labels, w.Model)
		case !sameFloat(g.Count, w.Count) || !sameFloat(g.Sum, w.Sum):
			return fmt.Sprintf("series %d %v{%s}: count/sum %v/%v, want %v/%v", i,
				g.Metric.Name(), g.Labels, g.Count, g.Sum, w.Count, w.Sum)
		case len(g.Buckets) != len(w.Buckets):
			return fmt.Sprintf("series %d %v{%s}: %d buckets, want %d", i, g.Metric.Name(), g.Labels, len(g.Buckets), len(w.Buckets))
		}
		for j := range g.Buckets {
			if !sameFloat(g.Buckets[j].UpperBound, w.Buckets[j].UpperBound) || !sameFloat(g.Buckets[j].Count, w.Buckets[j].Count) {
				return fmt.Sprintf("series %d %v{%s} bucket %d: %v, want %v", i, g.Metric.Name(), g.Labels, j, g.Buckets[j], w.Buckets[j])
			}
		}
	}
	return ""
}

// checkAgainstExpfmt runs the three properties above on one input.
func checkAgainstExpfmt(t *testing.T, data []byte) {
	t.Helper()
	got, err := Scan(data)
	ref := refScan(data)
	// 1. Scan agrees with the oracle.
	if ref.reason == nil {
		if err != nil {
			t.Fatalf("Scan: %v; oracle: success", err)
		}
		if d := diffSnapshots(got, ref.snap); d != "" {
			t.Fatalf("Scan differs from oracle: %s", d)
		}
	} else {
		if !errors.Is(err, ref.reason) {
			t.Fatalf("Scan: %v; oracle: %v (%s, line %d)", err, ref.reason, ref.why, ref.line)
		}
		var se *ScanError
		if !errors.As(err, &se) {
			t.Fatalf("Scan error %T is not a *ScanError", err)
		}
		if ref.reason == ErrSyntax && se.Line != ref.line {
			t.Fatalf("Scan: %v; oracle: syntax error on line %d (%s)", err, ref.line, ref.why)
		}
		if ref.reason == ErrIncomplete && ref.snap != nil {
			// The partial result agrees too.
			snap, _, perr := scanPartial(data)
			if !errors.Is(perr, ErrIncomplete) || snap == nil {
				t.Fatalf("scanPartial: %v", perr)
			}
			if d := diffSnapshots(snap, ref.snap); d != "" {
				t.Fatalf("scanPartial differs from oracle: %s", d)
			}
		}
	}
	// 2. Where expfmt accepts the input, only documented rejections.
	tp := expfmt.NewTextParser(model.UTF8Validation)
	_, perr := tp.TextToMetricFamilies(bytes.NewReader(data))
	if perr == nil && errors.Is(err, ErrSyntax) && !ref.strict && !ref.alone {
		t.Fatalf("expfmt accepts the input, Scan rejects it: %v", err)
	}
	// 3. Where Scan accepts the input, the relevant lines are valid alone.
	if err == nil {
		var rel bytes.Buffer
		for _, line := range strings.Split(string(data[:len(data)-1]), "\n") {
			if _, ok := refClassify(line); ok {
				rel.WriteString(line)
				rel.WriteByte('\n')
			}
		}
		tp := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := tp.TextToMetricFamilies(&rel); err != nil {
			t.Fatalf("Scan accepts the input, expfmt rejects its relevant lines: %v", err)
		}
	}
}

// sampleFiles lists the real and realistic scrapes used as seeds and in
// table tests.
func sampleFiles(t testing.TB) []string {
	var files []string
	for _, dir := range []string{"../testdata/samples", "../testdata/realistic"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.prom"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no sample files")
	}
	return files
}

func FuzzScanAgainstExpfmt(f *testing.F) {
	for _, p := range sampleFiles(f) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add(synthScrape(1))
	for _, c := range trickyInputs {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAgainstExpfmt(t, data)
	})
}

// trickyInputs are hand-made seeds (also committed as files under
// testdata/fuzz/FuzzScanAgainstExpfmt by TestWriteFuzzCorpus -update).
var trickyInputs = []string{
	"",
	"  \n\t\n",
	"curl: (28) Operation timed out after 5001 milliseconds with 0 bytes received\n",
	"curl: (7) Failed to connect to localhost port 8000",
	"\x00\xff\xfe binary \x01\n",
	"<html><body>502 Bad Gateway</body></html>\n",
	"process_start_time_seconds 1.74262400557e+09\n",
	"process_start_time_seconds{} 1.7e9\nprocess_start_time_seconds{pid=\"1\"} 2\n",
	"process_start_time_seconds 1\nprocess_start_time_seconds 1\n",
	"process_start_time_seconds 1.7e9 1700000000000\n",
	"process_start_time_seconds 1.7e9 \n",
	// A complete V1 series with engine, le in the middle; then _created.
	"# HELP vllm:e2e_request_latency_seconds h\n# TYPE vllm:e2e_request_latency_seconds histogram\n" +
		"vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"0.3\",model_name=\"m\"} 0.0\n" +
		"vllm:e2e_request_latency_seconds_bucket{engine=\"0\",le=\"+Inf\",model_name=\"m\"} 2.0\n" +
		"vllm:e2e_request_latency_seconds_count{engine=\"0\",model_name=\"m\"} 2.0\n" +
		"vllm:e2e_request_latency_seconds_sum{engine=\"0\",model_name=\"m\"} 1.25\n" +
		"# HELP vllm:e2e_request_latency_seconds_created h\n# TYPE vllm:e2e_request_latency_seconds_created gauge\n" +
		"vllm:e2e_request_latency_seconds_created{engine=\"0\",model_name=\"m\"} 1.7537953269358883e+09\n" +
		"# EOF\n",
	// Multiprocess order: all _sum first, le first, two models.
	"vllm:request_queue_time_seconds_sum{model_name=\"a\"} 0.5\n" +
		"vllm:request_queue_time_seconds_sum{model_name=\"b/c\"} 0.25\n" +
		"vllm:request_queue_time_seconds_bucket{le=\"1.0\",model_name=\"a\"} 1.0\n" +
		"vllm:request_queue_time_seconds_bucket{le=\"+Inf\",model_name=\"a\"} 1.0\n" +
		"vllm:request_queue_time_seconds_count{model_name=\"a\"} 1.0\n" +
		"vllm:request_queue_time_seconds_bucket{le=\"1.0\",model_name=\"b/c\"} 0.0\n" +
		"vllm:request_queue_time_seconds_bucket{le=\"+Inf\",model_name=\"b/c\"} 1.0\n" +
		"vllm:request_queue_time_seconds_count{model_name=\"b/c\"} 1.0\n",
	// Label order differing between lines of one series, blanks, trailing comma, timestamps.
	"vllm:request_prefill_time_seconds_bucket{model_name=\"m\",le=\"+Inf\",engine=\"1\"} 3 1700000000000\n" +
		"vllm:request_prefill_time_seconds_bucket { engine = \"1\" , le = \"0.5\" , model_name = \"m\" , } 2\n" +
		"vllm:request_prefill_time_seconds_count{engine=\"1\",model_name=\"m\"}\t3\n" +
		"  vllm:request_prefill_time_seconds_sum{model_name=\"m\",engine=\"1\"} 0.75\n",
	// Escapes in values, quoted label names, the SGLang name label.
	"sglang:e2e_request_latency_seconds_bucket{le=\"+Inf\",name=\"a\\\\b\\\"c\\nd\"} 1\n" +
		"sglang:e2e_request_latency_seconds_count{name=\"a\\\\b\\\"c\\nd\"} 1\n" +
		"sglang:e2e_request_latency_seconds_sum{\"name\"=\"a\\\\b\\\"c\\nd\"} 1\n",
	"sglang:time_to_first_token_seconds_bucket{\"le\"=\"+Inf\",\"dotted.name\"=\"x\",model_name=\"m\"} 1\n" +
		"sglang:time_to_first_token_seconds_count{\"dotted.name\"=\"x\",model_name=\"m\"} 1\n" +
		"sglang:time_to_first_token_seconds_sum{model_name=\"m\",\"dotted.name\"=\"x\"} NaN\n",
	// model_name wins over name; name sorts after model_name, and before.
	"sglang:e2e_request_latency_seconds_bucket{le=\"+Inf\",model_name=\"m\",name=\"n\"} 1\n" +
		"sglang:e2e_request_latency_seconds_count{name=\"n\",model_name=\"m\"} 1\n" +
		"sglang:e2e_request_latency_seconds_sum{model_name=\"m\",name=\"n\"} 1\n" +
		"sglang:time_to_first_token_seconds_bucket{le=\"+Inf\",a=\"x\",name=\"n\",zz=\"m\"} 1\n" +
		"sglang:time_to_first_token_seconds_count{name=\"n\",zz=\"m\",a=\"x\"} 1\n" +
		"sglang:time_to_first_token_seconds_sum{name=\"n\",a=\"x\",zz=\"m\"} 1\n",
	// Quoted label names: escapes, empty, invalid UTF-8, unterminated.
	"vllm:request_queue_time_seconds_bucket{\"a\\\"b\\\\c\\nd\"=\"x\",le=\"+Inf\"} 1\n" +
		"vllm:request_queue_time_seconds_count{\"a\\\"b\\\\c\\nd\"=\"x\"} 1\nvllm:request_queue_time_seconds_sum{\"a\\\"b\\\\c\\nd\"=\"x\"} 1\n",
	"vllm:request_queue_time_seconds_count{\"\"=\"x\"} 1\n",
	"vllm:request_queue_time_seconds_count{\"\xc3\"=\"x\"} 1\n",
	"vllm:request_queue_time_seconds_count{\"a\\qb\"=\"x\"} 1\n",
	"vllm:request_queue_time_seconds_count{\"abc\n",
	"vllm:request_queue_time_seconds_count{abc\n",
	"vllm:request_queue_time_seconds_count{abc \n",
	"vllm:request_queue_time_seconds_count{a=\"x\",\n",
	"vllm:request_queue_time_seconds_count{a=\"x\"\n",
	"vllm:request_queue_time_seconds_count{a=\"x\\\n",
	"vllm:request_queue_time_seconds_count{a\"b\"c=\"x\"} 1\n",
	"vllm:request_queue_time_seconds_count{a\"b\"=\"x\"} 1\n",
	// The cached path: a NaN le, a NaN bucket count, a blank-only line.
	"vllm:request_queue_time_seconds_bucket{le=\"1\",model_name=\"m\"} 0\n   \t\nvllm:request_queue_time_seconds_bucket{le=\"NaN\",model_name=\"m\"} 1\n",
	"vllm:request_queue_time_seconds_bucket{le=\"1\",model_name=\"m\"} NaN\nvllm:request_queue_time_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 1\n" +
		"vllm:request_queue_time_seconds_count{model_name=\"m\"} 1\nvllm:request_queue_time_seconds_sum{model_name=\"m\"} 1\n",
	"vllm:x 1\nsglang:x 1\nprocess_x 1\nvllm:\n",
	// Errors and strictness.
	"vllm:request_decode_time_seconds_bucket{le=\"+Inf\"} 1\nvllm:request_decode_time_seconds_bucket{le=\"+Inf\"} 1\n",
	"vllm:request_decode_time_seconds_bucket{le=\"1\"} 1\nvllm:request_decode_time_seconds_bucket{le=\"1.0\"} 1\n",
	"vllm:request_decode_time_seconds_count 1\nvllm:request_decode_time_seconds_count 1\n",
	"vllm:request_decode_time_seconds_bucket{model_name=\"m\"} 1\n",
	"vllm:request_decode_time_seconds_bucket{le=\"NaN\"} 1\n",
	"vllm:request_decode_time_seconds_bucket{le=\"abc\"} 1\n",
	"vllm:request_decode_time_seconds_sum{le=\"1\"} 1\n",
	"# TYPE vllm:request_decode_time_seconds histogram\nvllm:request_decode_time_seconds_bucket{le=\"1\",le=\"2\"} 1\n",
	"vllm:request_decode_time_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 1\nvllm:request_decode_time_seconds_bucket{le=\"0.5\",model_name=\"m\"",
	"vllm:request_decode_time_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 1\nvllm:request_decode_time_seconds_bucket{le=\"0.5\",model_name=\"m\"\n",
	"vllm:request_decode_time_seconds_count{model_name=\"m\"} 1.0\r\n",
	"vllm:request_decode_time_seconds_count{model_name=\"m\",model_name=\"n\"} 1\n",
	"vllm:request_decode_time_seconds_count{__name__=\"x\"} 1\n",
	"vllm:request_decode_time_seconds_count{model_name=\"\xff\"} 1\n",
	"vllm:request_decode_time_seconds_count{model_name=\"a\\q\"} 1\n",
	"vllm:request_decode_time_seconds_count-1\n",
	"vllm:request_decode_time_seconds_count 0x1p-2\n",
	"vllm:request_decode_time_seconds_count 1_000\n",
	"vllm:request_decode_time_seconds_count 1e400\n",
	"vllm:request_decode_time_seconds_count 1 2 3\n",
	"vllm:request_decode_time_seconds_count 1 # {trace_id=\"a\"} 1\n",
	"vllm:request_decode_time_seconds_count\"x\" 1\n",
	"{\"vllm:request_decode_time_seconds_count\"} 1\n",
	// Series checks (ErrIncomplete).
	"vllm:request_inference_time_seconds_bucket{le=\"1\"} 2\nvllm:request_inference_time_seconds_bucket{le=\"+Inf\"} 1\n" +
		"vllm:request_inference_time_seconds_count 1\nvllm:request_inference_time_seconds_sum 1\n",
	"vllm:request_inference_time_seconds_bucket{le=\"+Inf\"} 2\nvllm:request_inference_time_seconds_count 1\nvllm:request_inference_time_seconds_sum 1\n",
	"vllm:request_inference_time_seconds_count 0\nvllm:request_inference_time_seconds_sum 0\n",
	"vllm:request_inference_time_seconds_bucket{le=\"+Inf\"} -1\nvllm:request_inference_time_seconds_count -1\nvllm:request_inference_time_seconds_sum 0\n",
	"vllm:request_prompt_tokens_bucket{le=\"+Inf\"} 1\nvllm:request_prompt_tokens_sum 7\n",
	// Out-of-order buckets, -0 bound, -Inf bound, irrelevant TYPE misuse.
	"# TYPE vllm:request_generation_tokens counter\n# TYPE vllm:request_generation_tokens counter\n" +
		"vllm:request_generation_tokens_bucket{le=\"+Inf\"} 3\nvllm:request_generation_tokens_bucket{le=\"-0\"} 0\n" +
		"vllm:request_generation_tokens_bucket{le=\"-Inf\"} 0\nvllm:request_generation_tokens_bucket{le=\"1e1\"} 2\n" +
		"vllm:request_generation_tokens_bucket{le=\"0.5\"} 1\nvllm:request_generation_tokens_count 3\nvllm:request_generation_tokens_sum 9\n",
	"vllm:request_generation_tokens_bucket{le=\"-0\"} 0\nvllm:request_generation_tokens_bucket{le=\"+Inf\"} 0\nvllm:request_generation_tokens_bucket{le=\"0\"} 0\n",
	"garbage line {{{\nvllm:time_to_first_token_seconds_bucket{le=\"+Inf\"} 0\nvllm:time_to_first_token_seconds_sum 0\nvllm:time_to_first_token_seconds_count 0\n",
	// Both servers' families, same metric and labels.
	"vllm:time_to_first_token_seconds_bucket{le=\"+Inf\"} 1\nvllm:time_to_first_token_seconds_sum 1\nvllm:time_to_first_token_seconds_count 1\n" +
		"sglang:time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\nsglang:time_to_first_token_seconds_sum 2\nsglang:time_to_first_token_seconds_count 2\n",
}

// TestScanAgainstExpfmtFiles runs the differential check on every sample
// (also the fuzz seeds; this names them in failures).
func TestScanAgainstExpfmtFiles(t *testing.T) {
	for _, p := range sampleFiles(t) {
		t.Run(filepath.Base(p), func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstExpfmt(t, data)
		})
	}
}
