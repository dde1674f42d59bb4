package report

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/parser"
)

var (
	update = flag.Bool("update", false, "rewrite the golden outputs in ../../testdata/report")
	gen    = flag.Bool("gen", false, "regenerate the golden input directories in ../../testdata/report from the simulator (then run with -update)")
)

const goldenDir = "../../testdata/report"

// scenario is one golden input directory, made by the simulator.
type scenario struct {
	name string
	cfg  simulate.Config
	// damage, when set, spoils some files after the run, as a real
	// snapshot tool does (lost files, curl errors, empty files).
	damage func(t *testing.T, dir string, truths []simulate.Truth)
}

var scenarios = []scenario{
	{
		// One request at a time: every window holds one observation.
		name: "sequential",
		cfg: simulate.Config{Seed: 1, Requests: 4, Models: []string{"org/model-a"},
			BeforeDelay: time.Millisecond, AfterDelay: 2 * time.Millisecond},
	},
	{
		// Three requests in flight on average: some windows hold several
		// observations and cannot all be pinned.
		name: "overlapping",
		cfg: simulate.Config{Seed: 6, Requests: 10, MeanInFlight: 3, Models: []string{"org/model-a"},
			BeforeDelay: time.Millisecond, AfterDelay: 2 * time.Millisecond, AfterJitter: time.Millisecond},
	},
	{
		// Sequential requests whose files a careless snapshot tool spoiled.
		name: "damaged",
		cfg: simulate.Config{Seed: 5, Requests: 7, Models: []string{"org/model-a"},
			BeforeDelay: time.Millisecond, AfterDelay: 2 * time.Millisecond},
		damage: damage,
	},
}

// damage spoils the files of requests 1 to 5 (in finish order, which is
// arrival order for a sequential run); 0 and 6 stay intact.
func damage(t *testing.T, dir string, truths []simulate.Truth) {
	file := func(i int, stage parser.Stage) string {
		tr := truths[i]
		at := tr.BeforeScrape
		if stage == parser.After {
			at = tr.AfterScrape
		}
		return filepath.Join(dir, parser.FormatName(tr.RequestID, stage, at))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Remove(file(1, parser.After)))  // a before without an after
	must(os.Remove(file(2, parser.Before))) // an after without a before
	// curl -s --max-time 10 ... > file 2>&1 that timed out.
	must(os.WriteFile(file(3, parser.After), []byte("curl: (28) Operation timed out after 10001 milliseconds with 0 bytes received\n"), 0o644))
	must(os.WriteFile(file(4, parser.Before), nil, 0o644)) // curl never wrote
	data, err := os.ReadFile(file(5, parser.After))
	must(err)
	must(os.WriteFile(file(5, parser.After), data[:len(data)*2/3], 0o644)) // cut mid-scrape
	must(os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a snapshot\n"), 0o644))
}

// trimSink keeps, of each scrape, only the families the exporter reads and
// process_start_time_seconds, so that the committed inputs stay small
// enough to read (about 15 KB instead of 40). Full scrapes are the
// parser's and ingest's tests' business, and the benchmark's.
type trimSink struct{ simulate.DirSink }

func (s trimSink) Snapshot(name string, body []byte) error {
	var out bytes.Buffer
	for line := range bytes.Lines(body) {
		if keepLine(line) {
			out.Write(line)
		}
	}
	return s.DirSink.Snapshot(name, out.Bytes())
}

func keepLine(line []byte) bool {
	name := line
	if rest, ok := bytes.CutPrefix(line, []byte("# ")); ok {
		f := bytes.Fields(rest)
		if len(f) < 2 {
			return false
		}
		name = f[1]
	} else if i := bytes.IndexAny(line, "{ "); i >= 0 {
		name = line[:i]
	}
	if string(name) == "process_start_time_seconds" {
		return true
	}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		for _, fam := range parser.SourceFamilies(m) {
			if rest, ok := bytes.CutPrefix(name, []byte(fam)); ok && (len(rest) == 0 || rest[0] == '_') {
				return true
			}
		}
	}
	return false
}

func generate(t *testing.T, sc scenario) {
	dir := filepath.Join(goldenDir, sc.name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	truths, err := simulate.Run(sc.cfg, trimSink{simulate.DirSink(dir)})
	if err != nil {
		t.Fatal(err)
	}
	if sc.damage != nil {
		sc.damage(t, dir, truths)
	}
	f, err := os.Create(filepath.Join(goldenDir, sc.name+".truth.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := simulate.WriteTruth(f, truths); err != nil {
		t.Fatal(err)
	}
}

func readTruth(t *testing.T, name string) map[string]simulate.Truth {
	m := map[string]simulate.Truth{}
	for _, tr := range testutil.ReadTruth(t, filepath.Join(goldenDir, name+".truth.json")) {
		m[tr.RequestID] = tr
	}
	return m
}

// truthValue is what the server really observed for column c.
func truthValue(tr simulate.Truth, c column) (float64, bool) {
	if c.tpot {
		if tr.GenerationTokens < 2 {
			return 0, false
		}
		return tr.Decode / float64(tr.GenerationTokens-1), true
	}
	return tr.Value(c.metric), true
}

// checkNeverWrong asserts the report's promise: every value it shows is
// the request's true value (to float rounding of the sums' difference;
// token counts exactly), and the model is the true model. It returns the
// number of exact and withheld values.
func checkNeverWrong(t *testing.T, r *Report, truth map[string]simulate.Truth) (exact, withheld int) {
	t.Helper()
	for i := range r.Requests {
		res := &r.Requests[i]
		tr, ok := truth[res.RequestID]
		if !ok {
			t.Errorf("%s: not a request of the run", res.RequestID)
			continue
		}
		if res.Model != "" && res.Model != tr.Model {
			t.Errorf("%s: model %q, truly %q", res.RequestID, res.Model, tr.Model)
		}
		for _, c := range columns {
			v := c.value(res)
			if !v.Exact {
				if v.Reason != attribution.ReasonAbsent {
					withheld++
				}
				continue
			}
			exact++
			want, ok := truthValue(tr, c)
			tol := 1e-9
			if c.tokens() {
				tol = 0
			}
			if !ok || math.Abs(v.V-want) > tol {
				t.Errorf("%s %s = %v, truly %v (defined %v)", res.RequestID, c.key, v.V, want, ok)
			}
		}
	}
	return exact, withheld
}

func TestGolden(t *testing.T) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if *gen {
				generate(t, sc)
			}
			dir := filepath.Join(goldenDir, sc.name)
			// The simulator's pairs tool takes each after once the
			// request's finish is recorded: read as with
			// --attribution.trust-afters.
			r, err := Run(context.Background(), Config{FS: os.DirFS(dir), TrustAfters: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				ext   string
				write func(io.Writer, *Report) error
			}{{"txt", WriteText}, {"json", WriteJSON}, {"csv", WriteCSV}, {"summary.csv", WriteSummaryCSV}} {
				var b bytes.Buffer
				if err := f.write(&b, r); err != nil {
					t.Fatal(err)
				}
				compareGolden(t, filepath.Join(goldenDir, sc.name+"."+f.ext), b.Bytes())
			}

			checkPopulation(t, r, readTruth(t, sc.name))
			exact, withheld := checkNeverWrong(t, r, readTruth(t, sc.name))
			o := r.Summary.Outcomes
			switch sc.name {
			case "sequential":
				if o.Exact != sc.cfg.Requests || o.Requests() != sc.cfg.Requests || withheld != 0 {
					t.Errorf("sequential: outcomes %+v, %d values withheld; want all %d exact", o, withheld, sc.cfg.Requests)
				}
			case "overlapping":
				// The scenario must show both sides of the promise.
				if exact == 0 || withheld == 0 || o.Partial+o.Withheld == 0 {
					t.Errorf("overlapping: %d exact, %d withheld values, outcomes %+v; want both", exact, withheld, o)
				}
				if o.Rejected+o.Unpaired != 0 || len(r.Rejected) != 0 {
					t.Errorf("overlapping: outcomes %+v, files rejected %v", o, r.Rejected)
				}
			case "damaged":
				checkDamaged(t, r)
			}
		})
	}
}

// checkDamaged asserts what each spoiled file became.
func checkDamaged(t *testing.T, r *Report) {
	t.Helper()
	o := r.Summary.Outcomes
	// The two intact requests are partial: e2e and TTFT exact, the other
	// families withheld (unconfirmed), since two requests cannot confirm
	// that the server observes them with the finish.
	want := Outcomes{Partial: 2, Rejected: 3, Unpaired: 2,
		RejectedBy: map[attribution.Reason]int{attribution.RejectBadSnapshot: 3}}
	if fmt.Sprint(o) != fmt.Sprint(want) {
		t.Errorf("outcomes %+v, want %+v", o, want)
	}
	reasons := map[string]int{}
	for _, f := range r.Rejected {
		reasons[f.Reason]++
	}
	if fmt.Sprint(reasons) != fmt.Sprint(map[string]int{"empty": 1, "incomplete": 1, "no_families": 1}) {
		t.Errorf("rejected files %v", r.Rejected)
	}
	if r.Ignored != 1 {
		t.Errorf("ignored %d files, want 1 (notes.txt)", r.Ignored)
	}
	for _, res := range r.Requests {
		if (res.Outcome == attribution.Unpaired) == (res.BeforeFile != "" && res.AfterFile != "") {
			t.Errorf("%s: outcome %s with files %q, %q", res.RequestID, res.Outcome, res.BeforeFile, res.AfterFile)
		}
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./report -update rewrites it):\n%s", path, firstDiff(want, got))
	}
}

// firstDiff shows the first differing line.
func firstDiff(want, got []byte) string {
	ws, gs := bufio.NewScanner(bytes.NewReader(want)), bufio.NewScanner(bytes.NewReader(got))
	for n := 1; ; n++ {
		w, g := ws.Scan(), gs.Scan()
		if !w && !g {
			return "(same lines, different bytes)"
		}
		if ws.Text() != gs.Text() || w != g {
			return fmt.Sprintf("line %d:\nwant %q\ngot  %q", n, ws.Text(), gs.Text())
		}
	}
}

// TestTrimKeepsWhatTheExporterReads guards the golden inputs: trimming a
// scrape must not change what the parser extracts from it.
func TestTrimKeepsWhatTheExporterReads(t *testing.T) {
	srv := simulate.NewServer(simulate.ServerConfig{Models: []string{"org/model-a"}, Engines: 2, Padding: true})
	srv.ObserveFirstToken("org/model-a", 1, 0.25)
	srv.ObserveFinish("org/model-a", 1, simulate.Finish{Queue: 0.01, Prefill: 0.2, Decode: 1, Inference: 1.2, E2E: 1.3, PromptTokens: 40, GenerationTokens: 7})
	full := srv.AppendText(nil)
	var trimmed []byte
	for line := range bytes.Lines(full) {
		if keepLine(line) {
			trimmed = append(trimmed, line...)
		}
	}
	a, err := parser.Scan(full)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parser.Scan(trimmed)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", b) {
		t.Errorf("trimmed scrape parses differently:\nfull    %+v\ntrimmed %+v", a, b)
	}
	if len(trimmed) >= len(full) || strings.Contains(string(trimmed), "python_gc") {
		t.Errorf("trimmed %d of %d bytes: not trimmed", len(full)-len(trimmed), len(full))
	}
}
