package attribution_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// issue16Config is issue 16's run (llm-d-inference-sim, 8 slots, 16
// closed-loop clients, half streaming, capture) of busy requests, after
// the warm-up phases on the same server process (none: the run as filed).
func issue16Config(busy int, warm []simulate.Phase) simulate.Config {
	cfg := runConfig(busy+warmRequests(warm), 0, 0.5, simulate.ProfileEmulator, 42)
	cfg.Clients, cfg.Engines, cfg.Models, cfg.MaxRunning = 16, 1, []string{"llama-8b"}, 8
	cfg.Phases = warm
	return cfg
}

// warmRequests is the number of requests of the phases.
func warmRequests(warm []simulate.Phase) int {
	n := 0
	for _, ph := range warm {
		n += ph.Requests
	}
	return n
}

// busyPart is the requests of the last phase: the truths after the first
// warm by arrival (a phase starts once the one before has ended).
func busyPart(truths []simulate.Truth, warm int) []simulate.Truth {
	ts := slices.Clone(truths)
	slices.SortFunc(ts, func(a, b simulate.Truth) int { return a.Arrival.Compare(b.Arrival) })
	return ts[warm:]
}

// warmRun is one run of issue16Config attributed as report does (the
// whole directory at once) and as serve does (file by file, deciding
// after each), scored on the busy part only; confirmedAtBusy lists, for
// serve, the value assumptions confirmed when the busy part's first file
// was read.
type warmRun struct {
	// report and serve score the busy part; allWrong counts the wrong
	// values of the whole run (report and serve), quiet start included,
	// which the scores leave out.
	report, serve   tally
	allWrong        int
	confirmedAtBusy []string
	states          string
}

func runWarm(t *testing.T, busy int, phases []simulate.Phase) warmRun {
	t.Helper()
	cfg := issue16Config(busy, phases)
	warm := warmRequests(phases)
	var sink simulate.MemSink
	truths, err := simulate.Run(cfg, &sink)
	if err != nil {
		t.Fatal(err)
	}
	busyTruths := busyPart(truths, warm)
	busyStart := busyTruths[0].Arrival

	// report: every file of the directory, then one decision.
	fsys := fstest.MapFS{}
	for _, f := range sink.Files() {
		fsys[f.Name] = &fstest.MapFile{Data: f.Body}
	}
	rec := record.New()
	in := ingest.New(ingest.Config{FS: fsys, MaxObserveDelay: ingest.DefaultMaxObserveDelay, Results: rec.Publish})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	var out warmRun
	out.report = score(t, rec.Results, busyTruths)
	out.allWrong = score(t, rec.Results, truths).wrong
	out.report.inFlight = simulate.MeasuredInFlight(busyTruths)
	out.states = valueStates(in.Assumptions())

	// serve: one file at a time, in the order they were written.
	atBusy := false
	rec = serveFiles(sink.Files(), false, ingest.DefaultMaxDelay, func(now time.Time, in *ingest.Ingester) {
		if atBusy || now.Before(busyStart) {
			return
		}
		atBusy = true
		for _, sa := range in.Assumptions() {
			for _, st := range sa.Status {
				if !st.Assumption.IsMoment() && st.State == attribution.Confirmed {
					out.confirmedAtBusy = append(out.confirmedAtBusy, st.Assumption.Name())
				}
			}
		}
	})
	out.serve = score(t, rec.Results, busyTruths)
	out.serve.inFlight = out.report.inFlight
	out.allWrong += score(t, rec.Results, truths).wrong
	return out
}

// perFamily is each family's exact values against the requests the
// server observed it for.
func perFamily(s tally) string {
	var out []string
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		out = append(out, fmt.Sprintf("%s %d/%d", m.Name(), len(s.published[m]), len(s.truth[m])))
	}
	return strings.Join(out, ", ")
}

// valueStates lists the first-token value assumptions' states.
func valueStates(sas []attribution.ServerAssumptions) string {
	var out []string
	for _, sa := range sas {
		for _, st := range sa.Status {
			switch st.Assumption {
			case attribution.FirstAtDecodeStart, attribution.FirstBeforeFinish, attribution.TTFTWithinE2E:
				out = append(out, fmt.Sprintf("%s %s (%d)", st.Assumption.Name(), st.State, st.Agreed))
			}
		}
	}
	return strings.Join(out, ", ")
}

// TestEmulatorWarmUp is issue 16's run after a quiet start on the same
// server process, as its user ran it: 10 requests at 1 client and 20 at 4,
// then the 150 requests of the issue at 16 clients on 8 slots. States are per server process, so the
// evidence the quiet part gives (requests alone or nearly, whose first
// tokens and finishes the bare count rule pins) confirms
// first_token_at_decode_start before the load, and the busy part's
// non-streaming first tokens pin from their first request on: as report
// reads the directory, and as serve meets it file by file.
//
//	WARMUP=1:10,4:20 ACCURACY_REQUESTS=150 go test -run 'TestEmulatorWarmUp$' -v ./internal/attribution
//
// (WARMUP=clients:requests,…; "none" is the run as filed; the floors
// are checked on the default run only).
func TestEmulatorWarmUp(t *testing.T) {
	busy := accuracyRequests(150, 60)
	phases := []simulate.Phase{{Clients: 1, Requests: 10}, {Clients: 4, Requests: 20}}
	v := os.Getenv("WARMUP")
	if v != "" {
		var err error
		if phases, err = simulate.ParsePhases(strings.TrimPrefix(v, "none")); err != nil {
			t.Fatal(err)
		}
	}
	warm := warmRequests(phases)
	w := runWarm(t, busy, phases)
	t.Logf("busy part, %d requests after %v (clients, requests):\n%s\n%s\n%s\nexact per family of those the server observed, report: %s\nserve: %s\nconfirmed when the busy part began (serve): %v\nend of run: %s",
		busy, phases, tableHeader, w.report.row("report", 0), w.serve.row("serve", 0), perFamily(w.report), perFamily(w.serve), w.confirmedAtBusy, w.states)
	if w.allWrong != 0 {
		t.Errorf("%d wrong values over the whole run, quiet start included", w.allWrong)
	}
	for _, s := range []struct {
		name string
		tally
	}{{"report", w.report}, {"serve", w.serve}} {
		if s.wrong != 0 {
			t.Errorf("%s: %d wrong values %v", s.name, s.wrong, s.wrongBy)
		}
		if v != "" || testing.Short() {
			continue // the floors are the default run's
		}
		// Floors under what was measured: 63 % as report reads the
		// directory, 48 % in serve (which decides each request of a
		// busy server once it has waited at most --attribution.max-delay,
		// before every request that would narrow it has ended); 2 %
		// without the warm-up. (82 and 74 % while
		// first_token_at_decode_start allowed 50 ms, not the 250 ms a
		// frontend's varying lag behind the engine needs:
		// frontendLagSpread.)
		if floor := map[string]int{"report": 55, "serve": 40}[s.name]; s.ttftExact*100 < s.requests*floor {
			t.Errorf("%s: TTFT exact for %d of %d busy requests, under %d %%", s.name, s.ttftExact, s.requests, floor)
		}
	}
	if warm > 0 && !slices.Contains(w.confirmedAtBusy, attribution.FirstAtDecodeStart.Name()) {
		t.Errorf("first_token_at_decode_start not confirmed when the busy part began (confirmed: %v)", w.confirmedAtBusy)
	}
}
