package attribution_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
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
// warm requests at warmClients clients on the same server process (none:
// the run as filed).
func issue16Config(busy, warm, warmClients int) simulate.Config {
	cfg := runConfig(busy+warm, 0, 0.5, simulate.ProfileEmulator, 42)
	cfg.Clients, cfg.Engines, cfg.Models, cfg.MaxRunning = 16, 1, []string{"llama-8b"}, 8
	if warm > 0 {
		cfg.Phases = []simulate.Phase{{Clients: warmClients, Requests: warm}}
	}
	return cfg
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
	report, serve   tally
	confirmedAtBusy []string
	states          string
}

func runWarm(t *testing.T, busy, warm, warmClients int) warmRun {
	t.Helper()
	cfg := issue16Config(busy, warm, warmClients)
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
	out.report.inFlight = simulate.MeasuredInFlight(busyTruths)
	out.states = valueStates(in.Assumptions())

	// serve: one file at a time, in the order they were written.
	fsys = fstest.MapFS{}
	rec = record.New()
	var now time.Time
	in = ingest.New(ingest.Config{FS: fsys, MaxObserveDelay: ingest.DefaultMaxObserveDelay, Results: rec.Publish, MaxDelay: ingest.DefaultMaxDelay, Now: func() time.Time { return now }})
	atBusy := false
	for _, f := range sink.Files() {
		fsys[f.Name] = &fstest.MapFile{Data: f.Body}
		if nm, err := parser.ParseName(f.Name); err == nil {
			now = nm.Time
		}
		if !atBusy && !now.Before(busyStart) {
			atBusy = true
			for _, sa := range in.Assumptions() {
				for _, st := range sa.Status {
					if !st.Assumption.IsMoment() && st.State == attribution.Confirmed {
						out.confirmedAtBusy = append(out.confirmedAtBusy, st.Assumption.Name())
					}
				}
			}
		}
		in.Ingest(f.Name)
		in.Decide()
	}
	in.Finish()
	out.serve = score(t, rec.Results, busyTruths)
	out.serve.inFlight = out.report.inFlight
	return out
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
// server process: 25 requests at 2 clients, then the 150 requests of the
// issue at 16 clients on 8 slots. States are per server process, so the
// evidence the quiet part gives (requests alone or nearly, whose first
// tokens and finishes the bare count rule pins) confirms
// first_token_at_decode_start before the load, and the busy part's
// non-streaming first tokens pin from their first request on: as report
// reads the directory, and as serve meets it file by file.
//
//	WARMUP=2:25 ACCURACY_REQUESTS=150 go test -run 'TestEmulatorWarmUp$' -v ./internal/attribution
//
// (WARMUP=clients:requests; 0:0 is the run as filed).
func TestEmulatorWarmUp(t *testing.T) {
	busy := accuracyRequests(150, 60)
	warmClients, warm := 2, 25
	if v := os.Getenv("WARMUP"); v != "" {
		c, r, _ := strings.Cut(v, ":")
		warmClients, _ = strconv.Atoi(c)
		warm, _ = strconv.Atoi(r)
	}
	w := runWarm(t, busy, warm, warmClients)
	t.Logf("busy part, %d requests after %d at %d clients:\n%s\n%s\n%s\nconfirmed when the busy part began (serve): %v\nend of run: %s",
		busy, warm, warmClients, tableHeader, w.report.row("report", 0), w.serve.row("serve", 0), w.confirmedAtBusy, w.states)
	for _, s := range []struct {
		name string
		tally
	}{{"report", w.report}, {"serve", w.serve}} {
		if s.wrong != 0 {
			t.Errorf("%s: %d wrong values %v", s.name, s.wrong, s.wrongBy)
		}
		if warm == 0 || testing.Short() {
			continue
		}
		// Floors a little under what was measured (see the log).
		if s.ttftExact*100 < s.requests*80 {
			t.Errorf("%s: TTFT exact for %d of %d busy requests, under 80 %%", s.name, s.ttftExact, s.requests)
		}
	}
	if warm > 0 && !slices.Contains(w.confirmedAtBusy, attribution.FirstAtDecodeStart.Name()) {
		t.Errorf("first_token_at_decode_start not confirmed when the busy part began (confirmed: %v)", w.confirmedAtBusy)
	}
}
