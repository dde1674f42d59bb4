package parser

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden and the committed fuzz seeds")

const samplesDir = "../testdata/samples"

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(samplesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// spot is one value read by hand from a sample file. what is "count",
// "sum", "buckets" (how many bucket lines) or "le=<bound as written>".
type spot struct {
	m     Metric
	model string
	what  string
	want  float64
}

func (sp spot) check(t *testing.T, snap *Snapshot) {
	t.Helper()
	for _, sr := range snap.Series {
		if sr.Metric != sp.m || sr.Model != sp.model {
			continue
		}
		var got float64
		switch {
		case sp.what == "count":
			got = sr.Count
		case sp.what == "sum":
			got = sr.Sum
		case sp.what == "buckets":
			got = float64(len(sr.Buckets))
		case strings.HasPrefix(sp.what, "le="):
			bound, err := strconv.ParseFloat(strings.TrimPrefix(sp.what, "le="), 64)
			if err != nil {
				t.Fatal(err)
			}
			got = math.NaN()
			for _, b := range sr.Buckets {
				if b.UpperBound == bound {
					got = b.Count
				}
			}
		default:
			t.Fatalf("bad spot %q", sp.what)
		}
		if got != sp.want {
			t.Errorf("%s{model %q} %s = %v, want %v", sp.m.Name(), sp.model, sp.what, got, sp.want)
		}
		return
	}
	t.Errorf("no series %s with model %q", sp.m.Name(), sp.model)
}

func TestScanSamples(t *testing.T) {
	const (
		glm    = "zai-org/GLM-4.5"
		qwen8  = "/home/jovyan/qwen3-8b"
		llama2 = "meta-llama/Llama-2-7b-hf"
		lora   = "sql-lora"
		sgl    = "meta-llama/Llama-3.1-8B-Instruct"
		sgl03  = "/shared/public/elr-models/meta-llama/Llama-3.2-3B/5cc0ffe09ee49f7be6ca7c794ee6bd7245e84e60/"
	)
	for _, tc := range []struct {
		file   string
		err    error          // what Scan returns
		series map[Metric]int // series per metric (complete or not)
		labels []string       // Labels of the series, in output order
		pst    float64        // process_start_time_seconds, 0 if absent
		spots  []spot
	}{
		{
			file:   "sglang-v0.4.x-docs-production-metrics.prom", // the one complete sample
			series: map[Metric]int{TTFT: 1, E2E: 1}, labels: []string{`model_name="` + sgl + `"`, `model_name="` + sgl + `"`},
			spots: []spot{
				{TTFT, sgl, "count", 11008}, {TTFT, sgl, "sum", 2.3518979474117756e+06}, {TTFT, sgl, "buckets", 21},
				{TTFT, sgl, "le=1.0", 27}, {TTFT, sgl, "le=30.0", 2513}, {TTFT, sgl, "le=+Inf", 11008},
				{E2E, sgl, "count", 11228}, {E2E, sgl, "sum", 3.116093850019932e+06}, {E2E, sgl, "le=60.0", 1513},
			},
		},
		{
			file: "sglang-v0.3.x-name-label-pr1853.excerpt.prom", err: ErrIncomplete, // model from the name label
			series: map[Metric]int{TTFT: 1, E2E: 1, GenerationTokens: 1}, labels: []string{`name="` + sgl03 + `"`, `name="` + sgl03 + `"`, `name="` + sgl03 + `"`},
			spots: []spot{{E2E, sgl03, "sum", 12786.840049982071}, {E2E, sgl03, "le=10.0", 438}, {TTFT, sgl03, "le=+Inf", 1029}, {TTFT, sgl03, "buckets", 8},
				{GenerationTokens, sgl03, "count", 1003}},
		},
		{
			file: "sglang-v0.4.4-queue-metrics-pr4444.excerpt.prom", err: ErrIncomplete,
			series: map[Metric]int{E2E: 1},
			spots:  []spot{{E2E, "/shared/public/models/Meta-Llama-3-8B-Instruct", "buckets", 11}, {E2E, "/shared/public/models/Meta-Llama-3-8B-Instruct", "le=300.0", 1}},
		},
		{
			file: "vllm-v0.10.0-V1-production-stack-issue617.excerpt.prom", err: ErrIncomplete, // _created gauges skipped
			series: map[Metric]int{Prefill: 1}, labels: []string{`engine="0",model_name="` + glm + `"`},
			spots: []spot{{Prefill, glm, "buckets", 13}, {Prefill, glm, "le=5.0", 4}, {Prefill, glm, "le=1920.0", 4}},
		},
		{
			file: "vllm-v0.10.x-V1-multiengine-pr22227.excerpt.prom", err: ErrIncomplete,
			series: map[Metric]int{TTFT: 1, Prefill: 1, Decode: 1},
			labels: []string{`engine="1",model_name="` + qwen8 + `"`, `engine="1",model_name="` + qwen8 + `"`, `engine="1",model_name="` + qwen8 + `"`},
			spots:  []spot{{TTFT, qwen8, "le=160.0", 1}, {Decode, qwen8, "le=+Inf", 1}, {Decode, qwen8, "buckets", 13}},
		},
		{
			file: "vllm-v0.5.1-V0-issue6337.excerpt.prom", err: ErrIncomplete, // trailing slash in model_name
			series: map[Metric]int{TTFT: 1},
			spots: []spot{{TTFT, "/secondary/thies/Hermes-2-Theta-Llama-3-70B/", "le=0.001", 208},
				{TTFT, "/secondary/thies/Hermes-2-Theta-Llama-3-70B/", "buckets", 6}},
		},
		{
			file: "vllm-v0.5.x-V0-issue8819.excerpt.prom", err: ErrIncomplete,
			series: map[Metric]int{TTFT: 1},
			spots:  []spot{{TTFT, "facebook/opt-125m", "le=0.02", 0}, {TTFT, "facebook/opt-125m", "le=0.04", 1}, {TTFT, "facebook/opt-125m", "buckets", 15}},
		},
		{
			file: "vllm-v0.6.x-V0-lora-multimodel-pr11117.excerpt.prom", err: ErrIncomplete, // two models, sums first
			series: map[Metric]int{TTFT: 2, Prefill: 1, Decode: 2, E2E: 2},
			spots: []spot{
				{TTFT, lora, "count", 1}, {TTFT, lora, "buckets", 5}, {TTFT, llama2, "buckets", 9}, {TTFT, llama2, "le=0.04", 2},
				{E2E, lora, "count", 1}, {E2E, lora, "buckets", 10}, {E2E, llama2, "buckets", 5},
				{Prefill, llama2, "count", 2}, {Prefill, llama2, "buckets", 3},
				{Decode, lora, "sum", 0.18552303314208984}, {Decode, lora, "buckets", 9},
				{Decode, llama2, "sum", 0.3675656318664551}, {Decode, llama2, "buckets", 0},
			},
		},
		// vLLM gauges without a per-request family: a server's scrape of
		// zero counts (a fresh server exposes a histogram only from its
		// first observation), not a foreign file.
		{file: "vllm-v0.7.x-V0-aibrix-runtime-docs.prom", series: map[Metric]int{}},
		{file: "derived-vllm-v0.7.x-V0-aibrix-runtime-docs.deindented.prom", series: map[Metric]int{}},
		{
			file: "vllm-v0.7.x-V1-docs-design-metrics.excerpt.prom", err: ErrIncomplete, // "..." lines skipped
			series: map[Metric]int{TTFT: 1},
			spots:  []spot{{TTFT, sgl, "count", 140}, {TTFT, sgl, "le=0.1", 140}, {TTFT, sgl, "buckets", 8}},
		},
		{file: "vllm-v0.7.x-V1-docs-usage-metrics.excerpt.prom", series: map[Metric]int{}},
		{
			file: "vllm-v0.8.x-V1-noengine-production-stack-issue318.excerpt.prom", err: ErrIncomplete,
			series: map[Metric]int{Queue: 1}, labels: []string{`model_name="Qwen/Qwen2.5-Coder-32B-Instruct"`},
			pst:   1.74262400557e+09,
			spots: []spot{{Queue, "Qwen/Qwen2.5-Coder-32B-Instruct", "le=2.5", 293}, {Queue, "Qwen/Qwen2.5-Coder-32B-Instruct", "buckets", 12}},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data := readSample(t, tc.file)
			snap, err := Scan(data)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("Scan: %v, want %v", err, tc.err)
			}
			if err != nil && snap != nil {
				t.Fatalf("Scan returned a snapshot with error %v", err)
			}
			if err == nil && len(snap.Series) > 0 && !math.IsInf(snap.Series[0].Buckets[len(snap.Series[0].Buckets)-1].UpperBound, 1) {
				t.Fatalf("last bucket is not +Inf")
			}
			if tc.err != nil {
				snap, _, err = scanPartial(data)
				if tc.err == ErrNoFamilies {
					if snap != nil || !errors.Is(err, ErrNoFamilies) {
						t.Fatalf("scanPartial: %v, %v", snap, err)
					}
					return
				}
			}
			got := map[Metric]int{}
			var labels []string
			for _, sr := range snap.Series {
				got[sr.Metric]++
				labels = append(labels, sr.Labels)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.series) {
				t.Errorf("series per metric %v, want %v", got, tc.series)
			}
			if tc.labels != nil && fmt.Sprint(labels) != fmt.Sprint(tc.labels) {
				t.Errorf("labels %q, want %q", labels, tc.labels)
			}
			if snap.HasProcessStartTime != (tc.pst != 0) || snap.ProcessStartTime != tc.pst {
				t.Errorf("process start %v %v, want %v", snap.HasProcessStartTime, snap.ProcessStartTime, tc.pst)
			}
			for _, sp := range tc.spots {
				sp.check(t, snap)
			}
		})
	}
}

// TestScanIndent: the AIBrix sample's 4-space indent, and blanks or tabs
// before every line of a complete scrape, change nothing.
func TestScanIndent(t *testing.T) {
	a, _, errA := scanPartial(readSample(t, "vllm-v0.7.x-V0-aibrix-runtime-docs.prom"))
	b, _, errB := scanPartial(readSample(t, "derived-vllm-v0.7.x-V0-aibrix-runtime-docs.deindented.prom"))
	if fmt.Sprint(a, errA) != fmt.Sprint(b, errB) {
		t.Fatalf("indented %v %v, de-indented %v %v", a, errA, b, errB)
	}
	for _, data := range [][]byte{readSample(t, "sglang-v0.4.x-docs-production-metrics.prom"), synthScrape(2)} {
		want, err := Scan(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, indent := range []string{"    ", "\t", " \t "} {
			in := indent + strings.ReplaceAll(string(bytes.TrimSuffix(data, []byte("\n"))), "\n", "\n"+indent) + "\n"
			got, err := Scan([]byte(in))
			if err != nil {
				t.Fatalf("indent %q: %v", indent, err)
			}
			if d := diffSnapshots(got, want); d != "" {
				t.Fatalf("indent %q: %s", indent, d)
			}
		}
	}
}

// TestScanAnyLineOrder: shuffling the lines of a complete scrape changes
// nothing (multiprocess output reorders them; Scan must not care).
func TestScanAnyLineOrder(t *testing.T) {
	for _, data := range [][]byte{synthScrape(3), readSample(t, "sglang-v0.4.x-docs-production-metrics.prom")} {
		want, err := Scan(data)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(data), "\n")
		lines = lines[:len(lines)-1]
		r := rand.New(rand.NewPCG(1, 2))
		for range 20 {
			r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
			got, err := Scan([]byte(strings.Join(lines, "")))
			if err != nil {
				t.Fatal(err)
			}
			if d := diffSnapshots(got, want); d != "" {
				t.Fatal(d)
			}
		}
	}
}

// TestScanLabelOrder: the label order inside a line does not matter, nor
// where le is.
func TestScanLabelOrder(t *testing.T) {
	lines := []string{
		`vllm:request_decode_time_seconds_bucket{%s} 1.0`,
		`vllm:request_decode_time_seconds_bucket{%s} 2.0`,
		`vllm:request_decode_time_seconds_count{%s} 2.0`,
		`vllm:request_decode_time_seconds_sum{%s} 0.5`,
	}
	labels := [][]string{
		{`engine="0"`, `le="0.5"`, `model_name="m/x"`, `pid="12"`},
		{`engine="0"`, `le="+Inf"`, `model_name="m/x"`, `pid="12"`},
		{`engine="0"`, `model_name="m/x"`, `pid="12"`},
		{`engine="0"`, `model_name="m/x"`, `pid="12"`},
	}
	r := rand.New(rand.NewPCG(3, 4))
	var want *Snapshot
	for range 50 {
		var b strings.Builder
		for i, l := range lines {
			ls := append([]string(nil), labels[i]...)
			r.Shuffle(len(ls), func(a, c int) { ls[a], ls[c] = ls[c], ls[a] })
			fmt.Fprintf(&b, l+"\n", strings.Join(ls, ","))
		}
		got, err := Scan([]byte(b.String()))
		if err != nil {
			t.Fatalf("%v\n%s", err, b.String())
		}
		if want == nil {
			want = got
			sr := got.Series[0]
			if len(got.Series) != 1 || sr.Labels != `engine="0",model_name="m/x",pid="12"` || sr.Model != "m/x" ||
				sr.Count != 2 || sr.Sum != 0.5 || len(sr.Buckets) != 2 || sr.Buckets[0] != (Bucket{0.5, 1}) {
				t.Fatalf("got %+v", got.Series)
			}
		}
		if d := diffSnapshots(got, want); d != "" {
			t.Fatalf("%s\n%s", d, b.String())
		}
	}
}

// TestScanLabelsCanonical pins the Labels identity: sorted by name, le
// left out, values as written (escaped), names bare unless they need
// quotes; Model unescaped.
func TestScanLabelsCanonical(t *testing.T) {
	for _, tc := range []struct{ labels, want, model string }{
		{`model_name="m",engine="0",le="+Inf"`, `engine="0",model_name="m"`, "m"},
		{` le = "+Inf" , model_name = "a\"b\\c\nd" , `, `model_name="a\"b\\c\nd"`, "a\"b\\c\nd"},
		{`"model_name"="m",le="+Inf"`, `model_name="m"`, "m"},
		{`"dotted.name"="x",le="+Inf",name="n"`, `"dotted.name"="x",name="n"`, "n"},
		{`"we\"ird\\"="x",le="+Inf"`, `"we\"ird\\"="x"`, ""},
		{`a"b"="x",le="+Inf"`, `ab="x"`, ""},
		{`le="+Inf",Z="1",_a="2",a="3"`, `Z="1",_a="2",a="3"`, ""},
		{`le="+Inf",model_name="Ünïcödé/😀"`, `model_name="Ünïcödé/😀"`, "Ünïcödé/😀"},
	} {
		in := "vllm:e2e_request_latency_seconds_bucket{" + tc.labels + "} 1\n"
		snap, _, err := scanPartial([]byte(in))
		if !errors.Is(err, ErrIncomplete) || len(snap.Series) != 1 {
			t.Fatalf("%s: %v", tc.labels, err)
		}
		if sr := snap.Series[0]; sr.Labels != tc.want || sr.Model != tc.model {
			t.Errorf("{%s}: Labels %s, Model %q; want %s, %q", tc.labels, sr.Labels, sr.Model, tc.want, tc.model)
		}
	}
}

// TestScanEverySource: every source family is read, as its metric.
func TestScanEverySource(t *testing.T) {
	var b strings.Builder
	for i, fam := range famNames {
		fmt.Fprintf(&b, "%s_bucket{le=\"+Inf\",model_name=\"m\"} %d\n%s_sum{model_name=\"m\"} 0.5\n%s_count{model_name=\"m\"} %d\n", fam, i, fam, fam, i)
	}
	snap, err := Scan([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Series) != len(famNames) {
		t.Fatalf("%d series, want %d", len(snap.Series), len(famNames))
	}
	for _, sr := range snap.Series {
		fam := famNames[int(sr.Count)]
		if m, _ := LookupSource(fam); sr.Metric != m {
			t.Errorf("%s read as %v", fam, sr.Metric.Name())
		}
	}
}

// TestScanTruncated: a file cut anywhere but at a line end is
// ErrIncomplete; cut at a line end it is an error or a subset of the full
// result (a cut between families cannot be seen in the text format).
func TestScanTruncated(t *testing.T) {
	data := synthScrape(4)
	full, err := Scan(data)
	if err != nil {
		t.Fatal(err)
	}
	bySeries := map[string]Series{}
	for _, sr := range full.Series {
		bySeries[sr.Metric.Name()+sr.Labels] = sr
	}
	for n := 0; n < len(data); n++ {
		snap, err := Scan(data[:n])
		if n == 0 || data[n-1] != '\n' {
			if n > 0 && !errors.Is(err, ErrIncomplete) {
				t.Fatalf("cut at %d: %v, want ErrIncomplete", n, err)
			}
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrIncomplete) && !errors.Is(err, ErrNoFamilies) {
				t.Fatalf("cut at %d: %v", n, err)
			}
			continue
		}
		for _, sr := range snap.Series {
			whole := bySeries[sr.Metric.Name()+sr.Labels]
			if d := diffSnapshots(&Snapshot{Series: []Series{sr}}, &Snapshot{Series: []Series{whole}}); d != "" {
				t.Fatalf("cut at %d: %s", n, d)
			}
		}
	}
}

// TestScanHostileOrder: many bucket lines in reverse le order (each one
// out of order) are sorted and checked in O(n log n), not O(n²).
func TestScanHostileOrder(t *testing.T) {
	const n = 100000
	var b strings.Builder
	b.WriteString("vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\"} 100000\n")
	for i := n - 1; i > 0; i-- {
		fmt.Fprintf(&b, "vllm:e2e_request_latency_seconds_bucket{le=\"%d\"} %d\n", i, i)
	}
	b.WriteString("vllm:e2e_request_latency_seconds_count 100000\nvllm:e2e_request_latency_seconds_sum 1\n")
	snap, err := Scan([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	bs := snap.Series[0].Buckets
	if len(bs) != n || bs[0] != (Bucket{1, 1}) || bs[n-2] != (Bucket{n - 1, n - 1}) || !math.IsInf(bs[n-1].UpperBound, 1) {
		t.Fatalf("%d buckets: %v ... %v", len(bs), bs[0], bs[len(bs)-1])
	}
	// The same with one repeat in the middle.
	in := strings.Replace(b.String(), "le=\"500\"", "le=\"501\"", 1)
	if _, err := Scan([]byte(in)); !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "le=501") {
		t.Fatalf("repeat: %v", err)
	}
}

func TestScanAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	data := synthScrape(5)
	if _, err := Scan(data); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(50, func() { _, _ = Scan(data) }); n > 4 {
		t.Fatalf("Scan allocates %v times per call, want at most 4", n)
	}
}

// TestScanKeepsNoReference: the snapshot does not alias the input, and
// concurrent scans (pooled state) do not mix.
func TestScanKeepsNoReference(t *testing.T) {
	inputs := [][]byte{synthScrape(6), synthScrape(7), readSample(t, "sglang-v0.4.x-docs-production-metrics.prom")}
	want := make([]*Snapshot, len(inputs))
	for i, in := range inputs {
		var err error
		if want[i], err = Scan(bytes.Clone(in)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := range 8 {
		wg.Go(func() {
			for k := range 30 {
				i := (g + k) % len(inputs)
				buf := bytes.Clone(inputs[i])
				got, err := Scan(buf)
				clear(buf)
				if err != nil {
					errs <- err.Error()
					return
				}
				if d := diffSnapshots(got, want[i]); d != "" {
					errs <- d
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// Golden files: testdata/golden/<sample>.json is what the file holds for
// the exporter (scanPartial, so the excerpts show their series too) and the
// error Scan gives. Rewrite with -update after checking the diff.

type goldenSeries struct {
	Metric   string   `json:"metric"`
	Labels   string   `json:"labels"`
	Model    string   `json:"model"`
	HasCount bool     `json:"has_count"`
	HasSum   bool     `json:"has_sum"`
	Count    string   `json:"count,omitempty"`
	Sum      string   `json:"sum,omitempty"`
	Buckets  []string `json:"buckets"` // "le count"
}

type golden struct {
	Error            string         `json:"error,omitempty"`
	ProcessStartTime string         `json:"process_start_time,omitempty"`
	Series           []goldenSeries `json:"series,omitempty"`
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func toGolden(data []byte) golden {
	snap, has, err := scanPartial(data)
	var g golden
	if err != nil {
		g.Error = err.Error()
	}
	if snap == nil {
		return g
	}
	if snap.HasProcessStartTime {
		g.ProcessStartTime = fmtFloat(snap.ProcessStartTime)
	}
	for i, sr := range snap.Series {
		gs := goldenSeries{Metric: sr.Metric.Name(), Labels: sr.Labels, Model: sr.Model,
			HasCount: has[i]&1 != 0, HasSum: has[i]&2 != 0, Buckets: []string{}}
		if gs.HasCount {
			gs.Count = fmtFloat(sr.Count)
		}
		if gs.HasSum {
			gs.Sum = fmtFloat(sr.Sum)
		}
		for _, b := range sr.Buckets {
			gs.Buckets = append(gs.Buckets, fmtFloat(b.UpperBound)+" "+fmtFloat(b.Count))
		}
		g.Series = append(g.Series, gs)
	}
	return g
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(samplesDir, "*.prom"))
	if err != nil || len(files) == 0 {
		t.Fatal("no samples", err)
	}
	for _, p := range files {
		name := strings.TrimSuffix(filepath.Base(p), ".prom") + ".json"
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(toGolden(data), "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			gp := filepath.Join("testdata", "golden", name)
			if *update {
				if err := os.MkdirAll(filepath.Dir(gp), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(gp, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(gp)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file; run with -update and review the diff:\n%s", gp, got)
			}
		})
	}
}

// TestWriteFuzzCorpus keeps the committed seed files of
// FuzzScanAgainstExpfmt in step with trickyInputs (-update writes them).
func TestWriteFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzScanAgainstExpfmt")
	for i, in := range trickyInputs {
		p := filepath.Join(dir, fmt.Sprintf("tricky-%02d", i))
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(in) + ")\n"
		if *update {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != content {
			t.Errorf("%s is not trickyInputs[%d] (run with -update): %v", p, i, err)
		}
	}
}
