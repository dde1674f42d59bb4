package simulate

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/delta-exporter/delta-exporter/parser"
)

// countSink counts files and bytes and keeps nothing: for runs whose
// files are not inspected.
type countSink struct {
	files, bytes int
	last         []byte
}

func (c *countSink) Snapshot(_ string, body []byte) error {
	c.files++
	c.bytes += len(body)
	c.last = append(c.last[:0], body...)
	return nil
}

// truthFamilies maps the truth fields to the vLLM families they feed.
var truthFamilies = []struct {
	family string
	value  func(Truth) float64
}{
	{"vllm:time_to_first_token_seconds", func(t Truth) float64 { return t.TTFT }},
	{"vllm:request_queue_time_seconds", func(t Truth) float64 { return t.Queue }},
	{"vllm:request_prefill_time_seconds", func(t Truth) float64 { return t.Prefill }},
	{"vllm:request_decode_time_seconds", func(t Truth) float64 { return t.Decode }},
	{"vllm:request_inference_time_seconds", func(t Truth) float64 { return t.Inference }},
	{"vllm:e2e_request_latency_seconds", func(t Truth) float64 { return t.E2E }},
	{"vllm:request_prompt_tokens", func(t Truth) float64 { return float64(t.PromptTokens) }},
	{"vllm:request_generation_tokens", func(t Truth) float64 { return float64(t.GenerationTokens) }},
}

type seriesKey struct{ family, labels string }

type histVal struct {
	count uint64
	sum   float64
}

// histograms flattens a scrape's histograms by family and label set.
func histograms(t testing.TB, body []byte) map[seriesKey]histVal {
	t.Helper()
	out := map[seriesKey]histVal{}
	for name, f := range parseScrape(t, body) {
		if f.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			out[seriesKey{name, strings.Join(ls, ",")}] = histVal{m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()}
		}
	}
	return out
}

func truthLabels(tr Truth, style Style) string {
	if style == V1 {
		return "engine=" + strconv.Itoa(tr.Engine) + ",model_name=" + tr.Model
	}
	return "model_name=" + tr.Model
}

// checkDeltas asserts that every request whose window (before, after]
// holds no observation of another request sees exactly its own values in
// the deltas, and nothing else changes. It returns how many requests
// were checked.
func checkDeltas(t *testing.T, files []File, truths []Truth, style Style) int {
	t.Helper()
	bodies := map[string][]byte{}
	for _, f := range files {
		bodies[f.Name] = f.Body
	}
	var moments []time.Time // every observation moment of every request
	for _, tr := range truths {
		moments = append(moments, tr.FirstToken, tr.Finish)
	}
	sort.Slice(moments, func(i, j int) bool { return moments[i].Before(moments[j]) })
	checked := 0
	for _, tr := range truths {
		// Observations in the window: exactly this request's two when clean.
		lo := sort.Search(len(moments), func(i int) bool { return moments[i].After(tr.BeforeScrape) })
		hi := sort.Search(len(moments), func(i int) bool { return moments[i].After(tr.AfterScrape) })
		if hi-lo != 2 || tr.FirstToken.Before(tr.BeforeScrape) || tr.Finish.After(tr.AfterScrape) {
			continue
		}
		b := bodies[parser.FormatName(tr.RequestID, parser.Before, tr.BeforeScrape)]
		a := bodies[parser.FormatName(tr.RequestID, parser.After, tr.AfterScrape)]
		if b == nil || a == nil {
			t.Fatalf("%s: before or after file missing", tr.RequestID)
		}
		hb, ha := histograms(t, b), histograms(t, a)
		own := map[seriesKey]float64{}
		for _, tf := range truthFamilies {
			own[seriesKey{tf.family, truthLabels(tr, style)}] = tf.value(tr)
		}
		for k, want := range own {
			av, ok := ha[k]
			if !ok {
				t.Fatalf("%s: series %v missing", tr.RequestID, k)
			}
			bv := hb[k]
			if av.count-bv.count != 1 {
				t.Errorf("%s %s: count delta %d, want 1", tr.RequestID, k.family, av.count-bv.count)
			}
			if d := av.sum - bv.sum; math.Abs(d-want) > 1e-9 {
				t.Errorf("%s %s: sum delta %.17g, truth %.17g", tr.RequestID, k.family, d, want)
			}
		}
		for k, av := range ha {
			if _, mine := own[k]; mine || !strings.HasPrefix(k.family, "vllm:") {
				continue
			}
			if k.family == "vllm:iteration_tokens_total" || k.family == "vllm:time_per_output_token_seconds" ||
				k.family == "vllm:inter_token_latency_seconds" || k.family == "vllm:request_max_num_generation_tokens" ||
				k.family == "vllm:request_params_max_tokens" || k.family == "vllm:time_in_queue_requests" {
				continue // step-level families, also moved by this request
			}
			if bv := hb[k]; av != bv {
				t.Errorf("%s: unrelated series %v changed", tr.RequestID, k)
			}
		}
		checked++
	}
	return checked
}

func TestSequentialRunDeltasEqualTruth(t *testing.T) {
	for _, style := range []Style{V1, V1NoEngine, V0Multiproc} {
		t.Run(style.String(), func(t *testing.T) {
			cfg := Config{
				Seed: 42, Requests: 40, Models: []string{"Qwen/Qwen3-8B", "meta-llama/Llama-3.1-8B-Instruct"}, Engines: 2,
				Server: ServerConfig{Style: style}, FirstSnapshots: true, TimelineInterval: 500 * time.Millisecond,
				AfterDelay: 3 * time.Millisecond, AfterJitter: 2 * time.Millisecond,
			}
			if style != V1 {
				cfg.Engines = 1 // no engine label: keep one series per model
			}
			var sink MemSink
			truths, err := Run(cfg, &sink)
			if err != nil {
				t.Fatal(err)
			}
			if len(truths) != cfg.Requests {
				t.Fatalf("%d truths, want %d", len(truths), cfg.Requests)
			}
			files := sink.Files()
			checkFiles(t, files, truths, cfg)
			if n := checkDeltas(t, files, truths, style); n != cfg.Requests {
				t.Errorf("only %d of %d sequential requests had a clean window", n, cfg.Requests)
			}
			// Sequential: windows do not overlap at all.
			for i := 1; i < len(truths); i++ {
				if !truths[i].Arrival.After(truths[i-1].AfterScrape) {
					t.Errorf("request %d arrives before request %d's after snapshot", i, i-1)
				}
			}
		})
	}
}

// checkFiles asserts what every run's files must satisfy.
func checkFiles(t *testing.T, files []File, truths []Truth, cfg Config) {
	t.Helper()
	byID := map[string]Truth{}
	for _, tr := range truths {
		byID[tr.RequestID] = tr
	}
	names := map[string]bool{}
	stages := map[parser.Stage]int{}
	var prev time.Time
	for _, f := range files {
		if names[f.Name] {
			t.Errorf("duplicate file name %s", f.Name)
		}
		names[f.Name] = true
		n, err := parser.ParseName(f.Name)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if n.Time.Before(prev) {
			t.Errorf("%s: files not in time order", f.Name)
		}
		prev = n.Time
		stages[n.Stage]++
		if n.Stage == parser.Timeline {
			if n.RequestID != "timeline" {
				t.Errorf("%s: timeline id %q", f.Name, n.RequestID)
			}
			continue
		}
		if _, ok := byID[n.RequestID]; !ok {
			t.Errorf("%s: unknown request id %q", f.Name, n.RequestID)
		}
	}
	if stages[parser.Before] != len(truths) || stages[parser.After] != len(truths) {
		t.Errorf("stages %v for %d requests", stages, len(truths))
	}
	if cfg.FirstSnapshots != (stages[parser.First] == len(truths)) {
		t.Errorf("%d first snapshots, FirstSnapshots=%v", stages[parser.First], cfg.FirstSnapshots)
	}
	if (cfg.TimelineInterval > 0) != (stages[parser.Timeline] > 0) {
		t.Errorf("%d timeline snapshots, interval %v", stages[parser.Timeline], cfg.TimelineInterval)
	}
}

func TestTruthInvariants(t *testing.T) {
	var sink countSink
	truths, err := Run(Config{Seed: 7, Requests: 1000, MeanInFlight: 4, Models: []string{"a", "b", "c"}, Engines: 3,
		BeforeDelay: time.Millisecond, AfterDelay: 2 * time.Millisecond, AfterJitter: 5 * time.Millisecond}, &sink)
	if err != nil {
		t.Fatal(err)
	}
	var oneToken, underscore, longQueue int
	models, engines := map[string]bool{}, map[int]bool{}
	for _, tr := range truths {
		if tr.Inference != tr.Prefill+tr.Decode {
			t.Errorf("%s: inference %v != prefill+decode", tr.RequestID, tr.Inference)
		}
		if tr.E2E < tr.Queue+tr.Inference {
			t.Errorf("%s: e2e %v < queue+inference %v", tr.RequestID, tr.E2E, tr.Queue+tr.Inference)
		}
		if tr.TTFT < tr.Prefill+tr.Queue {
			t.Errorf("%s: ttft %v < queue+prefill", tr.RequestID, tr.TTFT)
		}
		if (tr.Decode == 0) != (tr.GenerationTokens == 1) {
			t.Errorf("%s: decode %v with %d tokens", tr.RequestID, tr.Decode, tr.GenerationTokens)
		}
		if tr.PromptTokens < 20 || tr.PromptTokens > 4000 || tr.GenerationTokens < 1 || tr.GenerationTokens > 1000 {
			t.Errorf("%s: tokens %d/%d out of range", tr.RequestID, tr.PromptTokens, tr.GenerationTokens)
		}
		if tr.FirstToken.Before(tr.Arrival) || tr.Finish.Before(tr.FirstToken) || tr.AfterScrape.Before(tr.Finish) ||
			tr.BeforeScrape.Before(tr.Arrival) {
			t.Errorf("%s: moments out of order", tr.RequestID)
		}
		if got := tr.FirstToken.Sub(tr.Arrival).Seconds(); got != tr.TTFT {
			t.Errorf("%s: ttft %v != first token - arrival %v", tr.RequestID, tr.TTFT, got)
		}
		if got := tr.Finish.Sub(tr.Arrival).Seconds(); got != tr.E2E {
			t.Errorf("%s: e2e %v != finish - arrival %v", tr.RequestID, tr.E2E, got)
		}
		if tr.GenerationTokens == 1 {
			oneToken++
		}
		if strings.Contains(tr.RequestID, "_") {
			underscore++
		}
		if tr.Queue > 1 {
			longQueue++
		}
		models[tr.Model], engines[tr.Engine] = true, true
	}
	if oneToken == 0 || underscore == 0 || longQueue == 0 || len(models) != 3 || len(engines) != 3 {
		t.Errorf("variety missing: %d one-token, %d ids with _, %d queues > 1 s, models %v, engines %v",
			oneToken, underscore, longQueue, models, engines)
	}
	if sink.files != 2*len(truths) {
		t.Errorf("%d files for %d requests", sink.files, len(truths))
	}
}

// TestConcurrentRunCleanWindows checks, in an overlapping run, that the
// requests whose windows happen to be clean still match the truth
// exactly, and that the run writes what it should.
func TestConcurrentRunCleanWindows(t *testing.T) {
	cfg := Config{Seed: 3, Requests: 200, MeanInFlight: 1.5, Models: []string{"m1", "m2"}, Engines: 2, FirstSnapshots: true}
	var sink MemSink
	truths, err := Run(cfg, &sink)
	if err != nil {
		t.Fatal(err)
	}
	files := sink.Files()
	checkFiles(t, files, truths, cfg)
	n := checkDeltas(t, files, truths, V1)
	t.Logf("%d of %d clean", n, len(truths))
	if n == 0 || n == len(truths) {
		t.Errorf("%d of %d requests have clean windows at 1.5 in flight; want some but not all", n, len(truths))
	}
}

// TestPhases: a closed-loop run in phases runs each phase's requests with
// its own clients, one phase after the other, on one server process.
func TestPhases(t *testing.T) {
	cfg := Config{Seed: 5, Requests: 60, Clients: 16, Phases: []Phase{{1, 10}, {2, 10}}, Engines: 1, MaxRunning: 8}
	var sink MemSink
	truths, err := Run(cfg, &sink)
	if err != nil {
		t.Fatal(err)
	}
	if len(truths) != cfg.Requests {
		t.Fatalf("%d truths for %d requests", len(truths), cfg.Requests)
	}
	checkFiles(t, sink.Files(), truths, cfg)
	slices.SortFunc(truths, func(a, b Truth) int { return a.Arrival.Compare(b.Arrival) })
	// most is the largest number of requests of ts in flight (arrival to
	// after snapshot) at once; last is the latest after snapshot.
	most := func(ts []Truth) (most int, last time.Time) {
		for _, a := range ts {
			n := 0
			for _, b := range ts {
				if !b.Arrival.After(a.Arrival) && b.AfterScrape.After(a.Arrival) {
					n++
				}
			}
			most = max(most, n)
			if a.AfterScrape.After(last) {
				last = a.AfterScrape
			}
		}
		return most, last
	}
	start := 0
	for i, want := range []int{1, 2, 16} {
		end := min(start+[]int{10, 10, 40}[i], len(truths))
		n, last := most(truths[start:end])
		if n > want || (want > 2 && n <= 2) {
			t.Errorf("phase %d: %d requests in flight at once with %d clients", i, n, want)
		}
		if end < len(truths) && !truths[end].Arrival.After(last) {
			t.Errorf("phase %d: the next phase's first request arrived at %v, before the phase's last after %v", i, truths[end].Arrival, last)
		}
		start = end
	}
}

func TestParsePhases(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []Phase
		ok   bool
	}{
		{"", nil, true},
		{"1:10", []Phase{{1, 10}}, true},
		{"1:10,4:20", []Phase{{1, 10}, {4, 20}}, true},
		{"2:0", []Phase{{2, 0}}, true},
		{"0:10", nil, false},
		{"1:-1", nil, false},
		{"1", nil, false},
		{"1:x", nil, false},
		{"1:10,", nil, false},
	} {
		got, err := ParsePhases(c.in)
		if (err == nil) != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParsePhases(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestMeanInFlight(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 800 // the mean is still within 20 % at 16 in flight
	}
	for _, want := range []float64{1.5, 4, 16} {
		var sink countSink
		truths, err := Run(Config{Seed: 11, Requests: n, MeanInFlight: want, Models: []string{"a", "b"}, Engines: 2}, &sink)
		if err != nil {
			t.Fatal(err)
		}
		got := MeasuredInFlight(truths)
		t.Logf("mean in flight %v: measured %.3f", want, got)
		if math.Abs(got-want)/want > 0.2 {
			t.Errorf("mean in flight %v: measured %.3f, more than 20%% off", want, got)
		}
	}
	// Step batching is calibrated to the same mean (see calibrate).
	steps := Config{Seed: 11, Requests: n, MeanInFlight: 16, Models: []string{"a", "b"}, Engines: 2, MaxRunning: 128}
	steps.Semantics.Steps = true
	var ss countSink
	truths, err := Run(steps, &ss)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("steps, mean in flight 16: measured %.3f", MeasuredInFlight(truths))
	if got := MeasuredInFlight(truths); math.Abs(got-16)/16 > 0.2 {
		t.Errorf("steps, mean in flight 16: measured %.3f, more than 20%% off", got)
	}
	var sink countSink
	truths, err = Run(Config{Seed: 11, Requests: 200}, &sink)
	if err != nil {
		t.Fatal(err)
	}
	if got := MeasuredInFlight(truths); got >= 1 {
		t.Errorf("sequential run: measured %.3f in flight, want < 1", got)
	}
}

func TestDeterminism(t *testing.T) {
	cfg := Config{Seed: 5, Requests: 80, MeanInFlight: 4, Engines: 2, TimelineInterval: time.Second, FirstSnapshots: true,
		AfterJitter: time.Millisecond, Server: ServerConfig{Padding: true}}
	run := func(seed int64) ([]File, []Truth) {
		var sink MemSink
		c := cfg
		c.Seed = seed
		truths, err := Run(c, &sink)
		if err != nil {
			t.Fatal(err)
		}
		return sink.Files(), truths
	}
	f1, t1 := run(5)
	f2, t2 := run(5)
	if !reflect.DeepEqual(t1, t2) || !reflect.DeepEqual(f1, f2) {
		t.Error("two runs with the same seed differ")
	}
	_, t3 := run(6)
	if reflect.DeepEqual(t1, t3) {
		t.Error("runs with different seeds are equal")
	}
}

func TestTruthJSONRoundTrip(t *testing.T) {
	var sink countSink
	truths, err := Run(Config{Seed: 1, Requests: 50, MeanInFlight: 2}, &sink)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteTruth(&buf, truths); err != nil {
		t.Fatal(err)
	}
	back, err := ReadTruth(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(truths) {
		t.Fatalf("%d truths back, want %d", len(back), len(truths))
	}
	for i := range truths {
		a, b := truths[i], back[i]
		if !a.Arrival.Equal(b.Arrival) || !a.Finish.Equal(b.Finish) || !a.FirstToken.Equal(b.FirstToken) ||
			!a.BeforeScrape.Equal(b.BeforeScrape) || !a.AfterScrape.Equal(b.AfterScrape) {
			t.Errorf("%d: times differ", i)
		}
		a.Arrival, a.Finish, a.FirstToken, a.BeforeScrape, a.AfterScrape = b.Arrival, b.Finish, b.FirstToken, b.BeforeScrape, b.AfterScrape
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%d: %+v != %+v", i, a, b)
		}
	}
	if _, err := ReadTruth(strings.NewReader(`[{"request_id":"x","bogus":1}]`)); err == nil {
		t.Error("unknown field accepted")
	}
}

func TestDirSink(t *testing.T) {
	dir := t.TempDir()
	truths, err := Run(Config{Seed: 9, Requests: 5}, DirSink(dir))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2*len(truths) {
		t.Fatalf("%d files, want %d", len(entries), 2*len(truths))
	}
	for _, e := range entries {
		if _, err := parser.ParseName(e.Name()); err != nil {
			t.Errorf("%s: %v", e.Name(), err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		parseScrape(t, b)
	}
	if _, err := Run(Config{Requests: 1}, DirSink(filepath.Join(dir, "missing"))); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Requests: -1},
		{Requests: 1, MeanInFlight: -1},
		{Requests: 1, MeanInFlight: math.NaN()},
		{Requests: 1, AfterDelay: -time.Second},
		{Requests: 1, Phases: []Phase{{1, 1}}},              // phases without Clients
		{Requests: 1, Clients: 2, Phases: []Phase{{0, 1}}},  // a phase without clients
		{Requests: 1, Clients: 2, Phases: []Phase{{1, -1}}}, // negative requests
		{Requests: 1, GenTokens: [2]int{0, 4}},
		{Requests: 1, PromptTokens: [2]int{9, 8}},
		{Requests: 1, ScrapeTime: -time.Millisecond},
		{Requests: 1, TPOT: -time.Millisecond},
		{Requests: 1, FrontendLag: -time.Millisecond},
		{Requests: 1, Clients: 2, Think: [2]time.Duration{2, 1}},
	} {
		if _, err := Run(cfg, &countSink{}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestShapeOptions: the realistic upstream's load shape (TestRealStackShape
// in internal/attribution) is what the options say: token counts in
// their ranges, capture scrapes that last up to ScrapeTime, several
// milliseconds for some, where the default's last at most 1.5 ms, and
// befores that are earlier scrapes, completed before the request arrived.
func TestShapeOptions(t *testing.T) {
	cfg := Config{Seed: 3, Requests: 200, Clients: 16, Engines: 1, MaxRunning: 8, Capture: true, NonStreaming: 0.5,
		FirstSnapshots: true, PromptTokens: [2]int{9, 208}, GenTokens: [2]int{4, 24},
		Think: [2]time.Duration{0, time.Millisecond}, ScrapeTime: 8 * time.Millisecond, TPOT: 27 * time.Millisecond,
		LatestBefore: true}
	files, truths := runProfile(t, ProfileVLLMSteps, cfg)
	if len(truths) != cfg.Requests {
		t.Fatalf("%d truths for %d requests", len(truths), cfg.Requests)
	}
	for _, tr := range truths {
		if tr.GenerationTokens < 4 || tr.GenerationTokens > 24 || tr.PromptTokens < 9 || tr.PromptTokens > 208 {
			t.Errorf("%s: %d prompt and %d generation tokens, outside the ranges", tr.RequestID, tr.PromptTokens, tr.GenerationTokens)
		}
	}
	arrival := map[string]time.Time{}
	for _, tr := range truths {
		arrival[tr.RequestID] = tr.Arrival
	}
	bodies := map[string]bool{}
	for _, f := range files {
		if n, err := parser.ParseName(f.Name); err == nil && n.Stage != parser.Before {
			bodies[string(f.Body)] = true
		}
	}
	var longest time.Duration
	reused := 0
	for _, f := range files {
		n, err := parser.ParseName(f.Name)
		if err != nil || n.Stage == parser.Info {
			continue
		}
		line, _, _ := strings.Cut(string(f.Body), "\n")
		at, ok := strings.CutPrefix(line, parser.ScrapeStartedPrefix)
		started, err := time.Parse(time.RFC3339Nano, at)
		if !ok || err != nil {
			t.Fatalf("%s: no scrape start line: %q", f.Name, line)
		}
		d := n.Time.Sub(started)
		if d < -time.Microsecond || d > cfg.ScrapeTime+time.Microsecond { // names are to the µs
			t.Errorf("%s: the scrape took %v, outside [0, %v]", f.Name, d, cfg.ScrapeTime)
		}
		longest = max(longest, d)
		if n.Stage == parser.Before && bodies[string(f.Body)] {
			// Another snapshot's scrape (a fresh one, without one in
			// the last second, completes after the arrival).
			reused++
			if n.Time.After(arrival[n.RequestID]) {
				t.Errorf("%s: the before completed after the request's arrival %v", f.Name, arrival[n.RequestID])
			}
		}
	}
	if reused < cfg.Requests/2 {
		t.Errorf("%d of %d befores are another snapshot's scrape", reused, cfg.Requests)
	}
	if longest < cfg.ScrapeTime/2 {
		t.Errorf("the longest scrape took %v, ScrapeTime is %v", longest, cfg.ScrapeTime)
	}
}

// BenchmarkRun2000 is the size the report benchmark uses: 2,000 requests
// with padding, every scrape kept in memory.
func BenchmarkRun2000(b *testing.B) {
	for b.Loop() {
		var sink MemSink
		if _, err := Run(Config{Seed: 1, Requests: 2000, MeanInFlight: 4, Server: ServerConfig{Padding: true}}, &sink); err != nil {
			b.Fatal(err)
		}
	}
}
