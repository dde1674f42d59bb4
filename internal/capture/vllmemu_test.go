package capture

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// Issue 16's original experiment, on vLLM's own stack: capture in front
// of the realistic upstream measuring as llm-d-inference-sim does
// (vllm_like.py --semantics emulator: TTFT from scheduling, queue at
// dequeue and only when waited, prefill at the first token, series absent
// until their first observation; TTFT 150 ms ± 30 ms, inter-token latency
// 20 ms ± 4 ms, 8 slots), 16 closed-loop clients, half streaming. The
// same load on vLLM's semantics is the control row.

// emuTruth is one request's values as the server observed them, each
// family present only when the server observed it for the request.
type emuTruth struct {
	id     string
	stream bool
	values [parser.NumMetrics]*float64
}

// emuTruthLine is a truth log line of either semantics: "first", "queue"
// (emulator only) and "finish" lines; a value the line does not carry is
// nil.
type emuTruthLine struct {
	Kind             string   `json:"kind"`
	ID               string   `json:"id"`
	Stream           bool     `json:"stream"`
	TTFT             *float64 `json:"ttft"`
	Queue            *float64 `json:"queue"`
	Prefill          *float64 `json:"prefill"`
	Decode           *float64 `json:"decode"`
	Inference        *float64 `json:"inference"`
	E2E              *float64 `json:"e2e"`
	PromptTokens     *float64 `json:"prompt_tokens"`
	GenerationTokens *float64 `json:"generation_tokens"`
}

// readEmuTruth reads the truth log: every finished request with the
// values the server observed for it, from whichever line observed them.
// A family observed for a request on any line but its finish line must
// agree with the finish line's copy.
func (v *vllmLike) readEmuTruth(tb testing.TB) []emuTruth {
	tb.Helper()
	f, err := os.Open(v.truth)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	seen := map[string]*emuTruth{}
	var order []string
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		var l emuTruthLine
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			tb.Fatalf("truth log: %v", err)
		}
		t := seen[l.ID]
		if t == nil {
			t = &emuTruth{id: l.ID, stream: l.Stream}
			seen[l.ID] = t
		}
		for m, p := range map[parser.Metric]*float64{parser.TTFT: l.TTFT, parser.Queue: l.Queue, parser.Prefill: l.Prefill,
			parser.Decode: l.Decode, parser.Inference: l.Inference, parser.E2E: l.E2E,
			parser.PromptTokens: l.PromptTokens, parser.GenerationTokens: l.GenerationTokens} {
			if p == nil {
				continue
			}
			if old := t.values[m]; old != nil && *old != *p {
				tb.Fatalf("truth log: %s %s observed %v and %v", l.ID, m.Name(), *old, *p)
			}
			t.values[m] = p
		}
		if l.Kind == "finish" {
			order = append(order, l.ID)
		}
	}
	if err := lines.Err(); err != nil {
		tb.Fatal(err)
	}
	out := make([]emuTruth, len(order))
	for i, id := range order {
		out[i] = *seen[id]
	}
	return out
}

// emuScore is a run's coverage: per family, the values published exact
// and the values withheld by reason, and every wrong value.
type emuScore struct {
	requests, exact int
	exactBy         [parser.NumMetrics]int
	withheldBy      [parser.NumMetrics]map[attribution.Reason]int
	wrong           []string
}

// scoreEmu compares every value res published with the server's truth. A
// value is wrong when it differs from what the server observed for the
// request, or when the server made no such observation for it.
func scoreEmu(tb testing.TB, res *record.Recorder, truth []emuTruth) emuScore {
	tb.Helper()
	var s emuScore
	for m := range s.withheldBy {
		s.withheldBy[m] = map[attribution.Reason]int{}
	}
	for _, tr := range truth {
		r, ok := res.ByID[SanitizeID(tr.id)]
		if !ok {
			tb.Errorf("%s: no result", tr.id)
			continue
		}
		s.requests++
		if r.Outcome == attribution.Exact {
			s.exact++
		}
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			v := r.Values[m]
			if !v.Exact {
				s.withheldBy[m][v.Reason]++
				continue
			}
			s.exactBy[m]++
			switch want := tr.values[m]; {
			case want == nil:
				s.wrong = append(s.wrong, fmt.Sprintf("%s %s: published %v, the server observed none for it", tr.id, m.Name(), v.V))
			case !sameValue(v.V, *want):
				s.wrong = append(s.wrong, fmt.Sprintf("%s %s: published %v, the server observed %v", tr.id, m.Name(), v.V, *want))
			}
		}
	}
	return s
}

// table is the coverage per family, one line each.
func (s emuScore) table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, %d exact; family: exact, withheld by reason\n", s.requests, s.exact)
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		var why []string
		for r, n := range s.withheldBy[m] {
			why = append(why, fmt.Sprintf("%s %d", r, n))
		}
		slices.Sort(why)
		fmt.Fprintf(&b, "  %-18s %4d exact  withheld: %s\n", m.Name(), s.exactBy[m], strings.Join(why, ", "))
	}
	return b.String()
}

// assumptionStates is each assumption's state (the last server process's
// where there were several).
func assumptionStates(res *record.Recorder) map[string]attribution.State {
	out := map[string]attribution.State{}
	for _, sa := range res.Assumptions {
		for _, st := range sa.Status {
			out[st.Assumption.Name()] = st.State
		}
	}
	return out
}

func statesText(res *record.Recorder) string {
	by := map[attribution.State][]string{}
	for _, sa := range res.Assumptions {
		for _, st := range sa.Status {
			by[st.State] = append(by[st.State], fmt.Sprintf("%s(%d)", st.Assumption.Name(), st.Agreed))
		}
	}
	var b strings.Builder
	for _, st := range []attribution.State{attribution.Confirmed, attribution.Contradicted, attribution.Unchecked} {
		slices.Sort(by[st])
		fmt.Fprintf(&b, "  %s: %s\n", st, strings.Join(by[st], " "))
	}
	return b.String()
}

// TestRealisticEmulator: issue 16's run on vLLM's stack with ground
// truth. No published value may be wrong, on the emulator's semantics or
// on vLLM's at the same load; the coverage per family is logged, not
// asserted (it depends on timing). On the emulator the server's own
// queue and TTFT must not be taken as vLLM's: queue is in no finish
// moment (its count drifts from e2e's), and TTFT ≥ queue + prefill is
// never confirmed. After a warm-up at 1 and 4 clients on the same server
// process (the user's), first_token_at_decode_start must be
// confirmed (without one it was in some runs and not in others while the
// rule allowed 50 ms; with 250 ms it has 11 to 25 agreements over 300
// busy requests), and without it a non-streaming request's TTFT does not
// pin. The busy part is scored apart.
func TestRealisticEmulator(t *testing.T) {
	if testing.Short() {
		t.Skip("a Python server and about 20 s of load")
	}
	const requests = 300
	emulator := []string{"--semantics", "emulator", "--slots", "8",
		"--ttft-ms", "150", "--ttft-spread-ms", "30", "--itl-ms", "20", "--itl-spread-ms", "4"}
	busy := vllmLoad{clients: 16, n: requests, duration: time.Minute, minTokens: 4, maxTokens: 24, streamShare: 0.5}
	for _, row := range []struct {
		name     string
		server   []string
		timeline time.Duration // Config.TimelineInterval
		// warm is the load sent first, phase after phase, to the same
		// server process: the busy part is scored apart.
		warm []vllmLoad
	}{
		{"emulator", emulator, 0, nil},
		// The user ran 1 and 4 clients before 16: the evidence
		// of the quiet part confirms first_token_at_decode_start before
		// the load, and the busy part's first tokens pin.
		{"emulator/warm-up", emulator, 0, []vllmLoad{
			{clients: 1, n: 10, duration: time.Minute, minTokens: 4, maxTokens: 24, streamShare: 0.5},
			{clients: 4, n: 20, duration: time.Minute, minTokens: 4, maxTokens: 24, streamShare: 0.5}}},
		// As the simulator's accuracy table runs capture: more
		// snapshots, more evidence, more rules that can go wrong.
		{"emulator/timeline=50ms", emulator, 50 * time.Millisecond, nil},
		{"vllm", []string{"--slots", "8"}, 0, nil},
	} {
		t.Run(row.name, func(t *testing.T) {
			start := time.Now()
			v := startVLLMLike(t, row.server...)
			h := startProxyAt(t, v.url, func(c *Config) { c.ScrapeBudget, c.TimelineInterval = 0, row.timeline })
			h.waitReady()
			warm := 0
			for _, l := range row.warm {
				warm += l.run(t, h.client, h.srv.URL)
			}
			n := busy.run(t, h.client, h.srv.URL)
			h.p.Wait()
			truth := v.readEmuTruth(t)
			if len(truth) != warm+n || n != requests {
				t.Errorf("%d requests sent, %d completed, the server finished %d", requests, n, len(truth)-warm)
			}
			res := h.attribute()
			// The truth log is in the order the server met the requests:
			// a phase's requests after the phase before.
			s := scoreEmu(t, res, truth[min(warm, len(truth)):])
			if warm > 0 {
				// Wrong values of the warm-up fail the test too.
				s.wrong = append(s.wrong, scoreEmu(t, res, truth[:warm]).wrong...)
			}
			states := assumptionStates(res)
			t.Logf("%s: %s(%.1f s)\nassumptions:\n%s", row.name, s.table(), time.Since(start).Seconds(), statesText(res))
			if s.requests == 0 || slices.Max(s.exactBy[:]) == 0 {
				t.Fatalf("%d requests, no value published: nothing was checked", s.requests)
			}
			if len(s.wrong) > 0 {
				t.Errorf("%d wrong values: %s", len(s.wrong), strings.Join(s.wrong[:min(len(s.wrong), 20)], "; "))
			}
			if row.server[1] != "emulator" {
				return
			}
			if row.warm != nil && states[attribution.FirstAtDecodeStart.Name()] != attribution.Confirmed {
				t.Errorf("first_token_at_decode_start %s after a warm-up of %d requests", states[attribution.FirstAtDecodeStart.Name()], warm)
			}
			var waited int
			for _, tr := range truth {
				if tr.values[parser.Queue] != nil {
					waited++
				}
			}
			t.Logf("emulator: %d of %d requests waited for a slot (observed a queue time)", waited, len(truth))
			for _, a := range []string{"moment_finish_queue", "ttft_contains_queue_prefill"} {
				if states[a] == attribution.Confirmed {
					t.Errorf("%s confirmed on a server that contradicts it", a)
				}
			}
		})
	}
}
