package attribution_test

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// The accuracy benchmark: a ground-truth load simulation at several mean
// concurrencies, attributed by the real ingest pipeline, every published
// value compared with the truth. It fails on a single wrong value. The
// table TestAccuracy logs is the one quoted in the README:
//
//	ACCURACY_REQUESTS=1000 go test -run 'TestAccuracy$' -v ./attribution
//
// The server is vLLM V1 with step-synchronous continuous batching
// (simulate.ProfileVLLMSteps): the first-token and finish observations of
// one engine step are made together. TestAccuracyProfiles does the same
// for servers whose metrics mean something else (simulate.Profiles).
//
// Rows: "pairs" is a directory of before/after pairs only, the after
// taken 0-20 ms after the response ended (as a log-hook tool does at
// best), attributed with --attribution.trust-afters (the user vouches for
// the afters: true of this tool); "pairs (no flag)" is the same without
// it, where nothing vouches for the afters and every per-request value
// is withheld as unvouched; "capture" adds what `delta-exporter capture` writes: a first
// snapshot right after the first response byte, timeline snapshots every
// 50 ms, scrape times and the info sidecars (proxy times, token usage),
// all requests streaming; "capture½" is the same with half of the
// requests not streaming (no first snapshot); "naive" is the per-pair
// delta the original tool prints (after minus before of the first series,
// no count check).
//
// With -short, a few levels at a few requests, so that the package's
// tests stay quick under -race; the full run has the README's table.

// close enough: 1 µs for seconds, exact for tokens.
func matches(m parser.Metric, got, want float64) bool {
	if m.IsTokens() {
		return got == want
	}
	return math.Abs(got-want) <= 1e-6
}

type tally struct {
	requests, exactRequests int
	values, exact, withheld int
	wrong                   int
	ttftExact, finishExact  int
	inFlight                float64
	// per metric: the true values of every request that has one, and the
	// exact values published
	truth, published [parser.NumMetrics][]float64
	wrongBy          map[string]int // per metric name
	outcomes         map[attribution.Outcome]int
	rejectedFiles    int
	assumptions      []attribution.ServerAssumptions
	// withheldBy counts the withheld values the server observed, per reason.
	withheldBy map[attribution.Reason]int
}

func (t tally) row(name string, inflight float64) string {
	pct := func(a, b int) string { return strconv.FormatFloat(100*float64(a)/float64(max(b, 1)), 'f', 1, 64) + "%" }
	return fmt.Sprintf("| %-8s | %5.1f | %5.1f | %7s | %7s | %7s | %7s | %7s | %d |", name, inflight, t.inFlight,
		pct(t.exactRequests, t.requests), pct(t.ttftExact, t.requests), pct(t.finishExact, t.requests),
		pct(t.exact, t.values), pct(t.withheld, t.values), t.wrong)
}

const tableHeader = "| method   | in flight | measured | requests exact | TTFT exact | finish exact | values exact | values withheld | values wrong |\n" +
	"|---|---|---|---|---|---|---|---|---|"

// biasMetrics are the families of the bias table.
var biasMetrics = []parser.Metric{parser.TTFT, parser.Queue, parser.Prefill, parser.Decode, parser.E2E, parser.GenerationTokens}

func biasHeader() string {
	var b strings.Builder
	b.WriteString("| method   | in flight |")
	for _, m := range biasMetrics {
		b.WriteString(" " + m.Name() + " p50 / p90 |")
	}
	b.WriteString("\n|---|---|" + strings.Repeat("---|", len(biasMetrics)))
	return b.String()
}

// quantile is the q-quantile of sorted xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// biasRow gives, per family, how far the exact sample's p50 and p90 are
// from the truth's over every request (issue 15 item 7): the bias a
// dashboard built on the exact values alone would show.
func (t tally) biasRow(name string, inflight float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| %-8s | %5.1f |", name, inflight)
	for _, m := range biasMetrics {
		tr, pub := append([]float64(nil), t.truth[m]...), append([]float64(nil), t.published[m]...)
		if len(tr) == 0 || len(pub) == 0 {
			b.WriteString(" — |")
			continue
		}
		sort.Float64s(tr)
		sort.Float64s(pub)
		rel := func(q float64) string {
			want := quantile(tr, q)
			if want == 0 {
				return "—"
			}
			d := 100 * (quantile(pub, q)/want - 1)
			if math.Abs(d) < 0.5 {
				return "0%"
			}
			return fmt.Sprintf("%+.0f%%", d)
		}
		fmt.Fprintf(&b, " %s / %s |", rel(0.5), rel(0.9))
	}
	return b.String()
}

// runConfig is the simulation of one row; nonStreaming < 0 means pairs
// only, else the capture layout with that fraction of requests not
// streaming.
func runConfig(n int, inflight, nonStreaming float64, profile simulate.Profile, seed int64) simulate.Config {
	cfg := simulate.Config{Seed: seed, Requests: n, MeanInFlight: inflight,
		Models: []string{"llama-8b", "qwen-32b"}, Engines: 2, MaxRunning: 128,
		AfterJitter: 10 * time.Millisecond, AfterDelay: 10 * time.Millisecond}
	if profile == simulate.ProfileEmulator {
		// Its --max-num-seqs: 8 slots an engine, so that requests queue
		// from 16 in flight on; above, enough slots for a stable queue.
		cfg.MaxRunning = max(8, int(inflight/2))
	}
	if nonStreaming >= 0 {
		cfg.FirstSnapshots = true
		cfg.TimelineInterval = 50 * time.Millisecond
		cfg.Capture, cfg.NonStreaming = true, nonStreaming
	}
	if err := profile.Apply(&cfg); err != nil {
		panic(err)
	}
	return cfg
}

// measure simulates cfg into a temporary directory (a capture run at 16
// in flight writes tens of thousands of timeline snapshots: on disk, not
// in memory), attributes it with the real ingest and scores every result
// against the truth. Every simulated request must get exactly one result.
// A pairs-only directory is attributed with --attribution.trust-afters:
// the simulator's pairs tool takes each after once the request's finish
// is recorded (except where a profile knowingly does not: early afters,
// late finishes, which the checks must then catch).
func measure(t *testing.T, cfg simulate.Config, lenient bool) tally {
	t.Helper()
	return measureTrust(t, cfg, lenient, !cfg.Capture)
}

// measureTrust is measure with --attribution.trust-afters as trust says.
func measureTrust(t *testing.T, cfg simulate.Config, lenient, trust bool) tally {
	t.Helper()
	dir, truths := simulateDir(t, cfg)
	defer os.RemoveAll(dir) // long runs make many directories
	rec := ingestWith(t, dir, trust)
	if !lenient {
		rec.NoRejections(t)
	}
	s := score(t, rec.Results, truths)
	s.rejectedFiles = len(rec.Rejections)
	s.inFlight = simulate.MeasuredInFlight(truths)
	s.assumptions = rec.Assumptions
	return s
}

// simulateDir writes a simulated run into a new directory and returns it
// with the run's truth.
func simulateDir(t *testing.T, cfg simulate.Config) (string, []simulate.Truth) {
	t.Helper()
	dir, err := os.MkdirTemp(t.TempDir(), "run")
	if err != nil {
		t.Fatal(err)
	}
	truths, err := simulate.Run(cfg, simulate.DirSink(dir))
	if err != nil {
		t.Fatal(err)
	}
	return dir, truths
}

// ingestDir reads a whole directory as report does and records what
// ingest decides.
func ingestDir(t *testing.T, dir string) *record.Recorder {
	t.Helper()
	return ingestWith(t, dir, false)
}

// ingestWith is ingestDir with --attribution.trust-afters as trust says.
func ingestWith(t *testing.T, dir string, trust bool) *record.Recorder {
	t.Helper()
	rec := record.New()
	in := ingest.New(ingest.Config{FS: os.DirFS(dir), MaxObserveDelay: ingest.DefaultMaxObserveDelay, TrustAfters: trust, Results: rec.Publish, Metrics: rec})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	// As report shows them: the counts behind each state too (Metrics
	// is given the states when one changed).
	rec.Assumptions = in.Assumptions()
	return rec
}

func score(t *testing.T, results []attribution.Result, truths []simulate.Truth) tally {
	t.Helper()
	byID := map[string]simulate.Truth{}
	for _, tr := range truths {
		byID[tr.RequestID] = tr
	}
	s := tally{wrongBy: map[string]int{}, outcomes: map[attribution.Outcome]int{}, withheldBy: map[attribution.Reason]int{}}
	for _, tr := range truths {
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			if tr.Observed(m) {
				s.truth[m] = append(s.truth[m], tr.Value(m))
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range results {
		tr, ok := byID[r.RequestID]
		if !ok {
			continue // timeline snapshots have no request
		}
		if seen[r.RequestID] {
			t.Errorf("%s: a second result", r.RequestID)
			continue
		}
		seen[r.RequestID] = true
		s.requests++
		s.outcomes[r.Outcome]++
		if r.Outcome == attribution.Exact {
			s.exactRequests++
		}
		if r.Model != "" && r.Model != tr.Model {
			s.wrong++
			s.wrongBy["model"]++
			t.Errorf("%s attributed to model %q, truth %q", r.RequestID, r.Model, tr.Model)
		}
		finish := true
		for m, v := range r.Values {
			m := parser.Metric(m)
			observed := tr.Observed(m)
			if observed {
				s.values++
			}
			switch {
			case v.Exact && (!observed || !matches(m, v.V, tr.Value(m))):
				s.wrong++
				s.wrongBy[m.Name()]++
				if s.wrongBy[m.Name()] <= 3 {
					if observed {
						t.Errorf("%s %s = %v, truth %v", r.RequestID, m.Name(), v.V, tr.Value(m))
					} else {
						t.Errorf("%s %s = %v, but the server never observed it", r.RequestID, m.Name(), v.V)
					}
				}
			case v.Exact:
				s.exact++
				s.published[m] = append(s.published[m], v.V)
			case observed:
				s.withheld++
				s.withheldBy[v.Reason]++
			}
			if m.Group() == parser.Finish && observed && !v.Exact {
				finish = false
			}
		}
		if r.Values[parser.TTFT].Exact {
			s.ttftExact++
		}
		if finish {
			s.finishExact++
		}
	}
	// Every request gets a result, in every layout: a result silently
	// lost would leave the exact share looking better than it is.
	if s.requests != len(truths) {
		var lost []string
		for _, tr := range truths {
			if !seen[tr.RequestID] {
				lost = append(lost, tr.RequestID)
			}
		}
		t.Errorf("%d results for %d requests; no result for %d, e.g. %v", s.requests, len(truths), len(lost), lost[:min(3, len(lost))])
	}
	return s
}

// naive scores the per-pair delta without a count check: after minus
// before, summed over the series of each family (the original tool even
// takes only the first series, which is worse with several models).
func naive(t *testing.T, cfg simulate.Config) tally {
	t.Helper()
	var sink simulate.MemSink
	truths, err := simulate.Run(cfg, &sink)
	if err != nil {
		t.Fatal(err)
	}
	type pair struct{ before, after *parser.Snapshot }
	pairs := map[string]*pair{}
	for _, f := range sink.Files() {
		n, err := parser.ParseName(f.Name)
		if err != nil || (n.Stage != parser.Before && n.Stage != parser.After) {
			continue
		}
		s, err := parser.Scan(f.Body)
		if err != nil {
			t.Fatal(err)
		}
		p := pairs[n.RequestID]
		if p == nil {
			p = &pair{}
			pairs[n.RequestID] = p
		}
		if n.Stage == parser.Before {
			p.before = s
		} else {
			p.after = s
		}
	}
	first := func(s *parser.Snapshot, m parser.Metric) float64 {
		v := 0.0
		for _, se := range s.Series {
			if se.Metric == m {
				v += se.Sum
			}
		}
		return v
	}
	var s tally
	for _, tr := range truths {
		p := pairs[tr.RequestID]
		s.requests++
		all := true
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			s.values++
			v := first(p.after, m) - first(p.before, m)
			if matches(m, v, tr.Value(m)) {
				s.exact++
				if m == parser.TTFT {
					s.ttftExact++
				}
			} else {
				s.wrong++
				all = false
			}
		}
		if all {
			s.exactRequests++
			s.finishExact++
		}
	}
	s.inFlight = simulate.MeasuredInFlight(truths)
	return s
}

// accuracyRequests is the number of requests per row: ACCURACY_REQUESTS,
// else def, else with -short a few.
func accuracyRequests(def, short int) int {
	if v, err := strconv.Atoi(os.Getenv("ACCURACY_REQUESTS")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return short
	}
	return def
}

func TestAccuracy(t *testing.T) {
	n := accuracyRequests(200, 30)
	levels := []float64{0, 1.5, 4, 16, 64, 128}
	if testing.Short() {
		levels = []float64{0, 4, 16}
	}
	table := []string{tableHeader}
	bias := []string{biasHeader()}
	for _, inflight := range levels {
		pairs := measure(t, runConfig(n, inflight, -1, simulate.ProfileVLLMSteps, 42), false)
		// The same pairs without --attribution.trust-afters: nothing
		// vouches for their afters, so no per-request value is published
		// (the population families, read from the snapshots alone, are:
		// TestPopulationAccuracy).
		plain := measureTrust(t, runConfig(n, inflight, -1, simulate.ProfileVLLMSteps, 42), false, false)
		if plain.exact != 0 || plain.withheldBy[attribution.ReasonUnvouched] != plain.withheld {
			t.Errorf("in flight %v, pairs without the flag: %d values exact, withheld %v; want all unvouched", inflight, plain.exact, plain.withheldBy)
		}
		capture := measure(t, runConfig(n, inflight, 0, simulate.ProfileVLLMSteps, 42), false)
		table = append(table, pairs.row("pairs", inflight), plain.row("pairs (no flag)", inflight), capture.row("capture", inflight))
		bias = append(bias, pairs.biasRow("pairs", inflight), capture.biasRow("capture", inflight))
		var half tally
		if !testing.Short() {
			half = measure(t, runConfig(n, inflight, 0.5, simulate.ProfileVLLMSteps, 42), false)
			nv := naive(t, runConfig(n, inflight, -1, simulate.ProfileVLLMSteps, 42))
			table = append(table, half.row("capture½", inflight), nv.row("naive", inflight))
			bias = append(bias, half.biasRow("capture½", inflight))
			// Sequential requests are all exact; the naive delta agrees there.
			if inflight == 0 && nv.wrong != 0 {
				t.Errorf("sequential: naive wrong %d", nv.wrong)
			}
		}
		t.Logf("in flight %v done: pairs %d%%, capture %d%% of requests exact", inflight,
			100*pairs.exactRequests/max(pairs.requests, 1), 100*capture.exactRequests/max(capture.requests, 1))
		if pairs.wrong != 0 || plain.wrong != 0 || capture.wrong != 0 || half.wrong != 0 {
			t.Errorf("in flight %v: %d, %d, %d and %d wrong values", inflight, pairs.wrong, plain.wrong, capture.wrong, half.wrong)
		}
		// Coverage must not go down: floors a little under what the step
		// model measured (97.4 % and 93.3 % over 1,000 requests, 97 % and
		// 92 % over 200), not checked on the few requests of -short.
		floor := map[float64]int{4: 95, 16: 88}[inflight]
		if !testing.Short() && capture.exactRequests*100 < capture.requests*floor {
			t.Errorf("capture at %v in flight: %d of %d requests exact, under %d %%", inflight, capture.exactRequests, capture.requests, floor)
		}
		if inflight == 0 && (pairs.exactRequests != pairs.requests || capture.exactRequests != capture.requests) {
			t.Errorf("sequential: %d and %d of %d exact", pairs.exactRequests, capture.exactRequests, pairs.requests)
		}
	}
	t.Logf("accuracy over %d requests per row, vLLM V1 with step batching (values wrong tolerance 1 µs, tokens exact):\n%s\n\nbias of the exact sample against the truth, p50 / p90:\n%s",
		n, strings.Join(table, "\n"), strings.Join(bias, "\n"))
}

// TestAccuracyProfiles is TestAccuracy for servers whose metrics differ
// from vLLM V1's (simulate.Profiles): "exact or withheld, never wrong"
// must hold for every one of them, at every level, pairs and capture.
// Rejected files are counted, not fatal: a server whose families appear
// only at their first observation has scrapes without them. 100 requests
// a row (13 server runs × 5 levels × 2 layouts, also under -race in CI);
// ACCURACY_REQUESTS asks for more, ACCURACY_PROFILE=NAME runs one profile:
//
//	ACCURACY_PROFILE=emulator ACCURACY_REQUESTS=150 go test -run 'TestAccuracyProfiles$' -v ./attribution
func TestAccuracyProfiles(t *testing.T) {
	n := accuracyRequests(100, 20)
	levels := []float64{1.5, 4, 16, 64, 128}
	if testing.Short() {
		levels = []float64{4}
	}
	type run struct {
		profile simulate.Profile
		seed    int64
		clients int // closed loop, one engine, one model: levels do not apply
		wide    bool
	}
	var runs []run
	only := os.Getenv("ACCURACY_PROFILE") // one profile, while working on it
	for _, p := range simulate.Profiles() {
		if only != "" && string(p) != only {
			continue // not asked for
		}
		if p == simulate.ProfileVLLMSteps {
			// TestAccuracy has the rest. Here one engine with 256 slots:
			// a step of more than 128 outputs lets vLLM answer some of
			// its requests before it records their finish.
			if !testing.Short() {
				runs = append(runs, run{p, 42, 0, true})
			}
			continue
		}
		runs = append(runs, run{p, 42, 0, false})
		if p == simulate.ProfileEmulator {
			// Issue 16's run: 16 closed-loop clients, half streaming,
			// 8 slots, so that nearly every request waits.
			runs = append(runs, run{p, 42, 16, false})
		}
		if p == simulate.ProfileMix && !testing.Short() {
			runs = append(runs, run{p, 43, 0, false}, run{p, 44, 0, false}, run{p, 45, 0, false})
		}
	}
	head := func(h string, extra ...string) []string {
		lines := strings.SplitN(h, "\n", 2)
		return []string{"| profile " + lines[0] + strings.Join(extra, ""), "|---" + lines[1] + strings.Repeat("---|", len(extra))}
	}
	table := head(tableHeader, " rejected files |", " wrong by family |", " A1 |")
	bias := head(biasHeader())
	var failures []string
	for _, r := range runs {
		name := string(r.profile)
		if r.profile == simulate.ProfileMix {
			name += "-" + strconv.FormatInt(r.seed, 10)
		}
		lv := levels
		if r.clients > 0 {
			name += fmt.Sprintf(" (%d clients, 8 slots)", r.clients)
			lv = []float64{0}
		}
		if r.wide {
			name += " (1 engine, 256 slots)"
			lv = []float64{128, 256}
		}
		for _, inflight := range lv {
			type layout struct {
				name         string
				nonStreaming float64
			}
			modes := []layout{{"pairs", -1}, {"capture", 0.3}}
			if r.clients > 0 {
				// Not the run: every request streaming, what
				// capture can reach on this server.
				modes = append(modes, layout{"streamed", 0})
			}
			for _, mode := range modes {
				cfg := runConfig(n, inflight, mode.nonStreaming, r.profile, r.seed)
				if r.wide {
					// Enough requests for the batch to pass 128.
					cfg.Requests, cfg.Engines, cfg.MaxRunning = max(n, 800), 1, 256
				}
				if r.clients > 0 {
					cfg.Clients, cfg.Engines, cfg.Models, cfg.MaxRunning = r.clients, 1, []string{"llama-8b"}, 8
					if mode.name == "capture" {
						cfg.NonStreaming = 0.5
					}
				}
				if testing.Short() && cfg.TimelineInterval > 0 {
					// Timeline snapshots are most of a capture run's
					// files; fewer keep -short quick under -race.
					cfg.TimelineInterval = 250 * time.Millisecond
				}
				s := measure(t, cfg, true)
				a1 := a1States(s.assumptions)
				table = append(table, fmt.Sprintf("| %s %s %d | %v | %s |", name, s.row(mode.name, inflight), s.rejectedFiles, s.wrongBy, a1))
				// Counts never confirm A1; only capture's protocol does
				// (pairs rest on --attribution.trust-afters: unchecked).
				if mode.nonStreaming < 0 && strings.Contains(a1, string(attribution.Confirmed)) {
					failures = append(failures, fmt.Sprintf("%s pairs at %v: A1 %s without capture", name, inflight, a1))
				}
				// On vLLM V1, capture's afters and first snapshots (info
				// sidecar through ingest) vouch for both A1s.
				if want := "confirmed/confirmed"; r.profile == simulate.ProfileVLLM && mode.nonStreaming >= 0 && a1 != want {
					failures = append(failures, fmt.Sprintf("%s capture at %v: A1 %s, want %s (vouched for by capture)", name, inflight, a1, want))
				}
				bias = append(bias, "| "+name+" "+s.biasRow(mode.name, inflight))
				if s.wrong != 0 {
					failures = append(failures, fmt.Sprintf("%s %s at %v: %d wrong %v", name, mode.name, inflight, s.wrong, s.wrongBy))
				}
			}
		}
	}
	t.Logf("accuracy per server profile over %d requests per row:\n%s\n\nbias of the exact sample against the truth, p50 / p90:\n%s",
		n, strings.Join(table, "\n"), strings.Join(bias, "\n"))
	if len(failures) > 0 {
		t.Errorf("wrong values published:\n%s", strings.Join(failures, "\n"))
	}
}

// a1States lists after_holds_observation's and first_holds_observation's
// states per server process ("after/first").
func a1States(sas []attribution.ServerAssumptions) string {
	var out []string
	for _, sa := range sas {
		out = append(out, string(sa.Status[attribution.AfterHolds].State)+"/"+string(sa.Status[attribution.FirstHolds].State))
	}
	return strings.Join(out, ",")
}

// TestEmulatorSixteenClients is issue 16's run (llm-d-inference-sim, 8
// slots, 16 closed-loop clients, half streaming, capture) long enough for
// first_token_at_decode_start to be confirmed: only a streaming request
// that did not wait is certain enough to check it on (a few in 100), and
// without it every TTFT window overlaps some non-streaming request's whole
// life. From then on the first tokens pin where no other rule could.
func TestEmulatorSixteenClients(t *testing.T) {
	if testing.Short() {
		t.Skip("600 requests")
	}
	cfg := runConfig(600, 0, 0.5, simulate.ProfileEmulator, 42)
	cfg.Clients, cfg.Engines, cfg.Models, cfg.MaxRunning = 16, 1, []string{"llama-8b"}, 8
	s := measure(t, cfg, true)
	t.Logf("%s\n%s", tableHeader, s.row("capture", 0))
	if s.wrong != 0 {
		t.Errorf("%d wrong values %v", s.wrong, s.wrongBy)
	}
	var state attribution.State
	for _, st := range s.assumptions[0].Status {
		if st.Assumption == attribution.FirstAtDecodeStart {
			state = st.State
		}
	}
	if state != attribution.Confirmed {
		t.Errorf("first_token_at_decode_start %s after %d requests", state, s.requests)
	}
	// 59 % with the rule's 250 ms (frontendLagSpread; 81 % with 50 ms);
	// the floor leaves room for the simulator's draws.
	if s.ttftExact*100 < s.requests*50 {
		t.Errorf("TTFT exact for %d of %d requests, under 50 %%", s.ttftExact, s.requests)
	}
}
