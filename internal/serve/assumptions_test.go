package serve

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/retention"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/state"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestContradictionOutlivesExporterRestart: the first exporter process
// sees a pair whose after holds no finish observation (the server never
// recorded it, or the after was taken early): after_holds_observation is
// contradicted for that server process. Retention then deletes every
// file, and the exporter restarts; the same server process serves twelve
// more requests, vouched for by --attribution.trust-afters, whose counts
// all fit. Nothing in the directory contradicts A1 any more, yet it must
// stay contradicted: no finish value of that server process is published.
// Without the record (the control row: the .assumptions file removed) the
// twelve would be published on an assumption the server already broke.
func TestContradictionOutlivesExporterRestart(t *testing.T) {
	for _, c := range []struct {
		name       string
		keepRecord bool
	}{
		{"restored", true},
		{"record removed", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, stateFile := t.TempDir(), filepath.Join(t.TempDir(), "delta-exporter.state")
			s := testutil.NewSnapshots(t, dir, model)
			f := simulate.Finish{Queue: 0.01, Prefill: 0.02, Decode: 0.2, Inference: 0.22, E2E: 0.23, PromptTokens: 10, GenerationTokens: 3}
			at := time.Now().Add(-time.Hour)
			request := func(id string, observe bool) {
				s.SnapAt(id, parser.Before, at)
				if observe {
					s.Observe(model, 0.05, f)
				}
				s.SnapAt(id, parser.After, at.Add(500*time.Millisecond))
				at = at.Add(time.Second)
			}
			for i := range 3 {
				request(fmt.Sprintf("req-%04d", i), true)
			}
			request("req-early", false)
			request("req-0004", true)

			var log1 bytes.Buffer
			e1 := newExporterWith(t, Config{Dir: dir, StateFile: stateFile, Ingest: ingest.Config{TrustAfters: true},
				Logger: slog.New(slog.NewTextHandler(&log1, nil))})
			if err := e1.in.Scan(true); err != nil {
				t.Fatal(err)
			}
			const a1 = `delta_exporter_assumptions{assumption="after_holds_observation",state="contradicted"}`
			if _, body := e1.scrape(t); value(body, a1) != "1" {
				t.Fatalf("first run: %s = %s, want 1 (the test's premise)\n%s", a1, value(body, a1), log1.String())
			}
			e1.close()
			// Retention deleted the evidence (and everything else).
			for _, n := range s.List() {
				if err := os.Remove(filepath.Join(dir, n)); err != nil {
					t.Fatal(err)
				}
			}
			if !c.keepRecord {
				if err := os.Remove(stateFile + ".assumptions"); err != nil {
					t.Fatal(err)
				}
			}
			for i := 10; i < 22; i++ {
				request(fmt.Sprintf("req-%04d", i), true)
			}

			var log2 bytes.Buffer
			e2 := newExporterWith(t, Config{Dir: dir, StateFile: stateFile, Ingest: ingest.Config{TrustAfters: true},
				Logger: slog.New(slog.NewTextHandler(&log2, nil))})
			if err := e2.in.Scan(true); err != nil {
				t.Fatal(err)
			}
			_, body := e2.scrape(t)
			e2e := value(body, `llm_request_e2e_seconds_count{model_name="`+model+`"}`)
			if !c.keepRecord {
				// The control: the data alone no longer say it.
				if e2e != "12" || value(body, a1) != "0" {
					t.Fatalf("without the record: e2e count %s, %s = %s; want 12 and 0", e2e, a1, value(body, a1))
				}
				return
			}
			if e2e != "0" && e2e != "-1" {
				t.Errorf("e2e values published after the restart: %s, want none (A1 contradicted on this server process)", e2e)
			}
			if got := value(body, `delta_exporter_requests_total{outcome="exact"}`); got != "0" && got != "-1" {
				t.Errorf("exact requests after the restart: %s, want 0", got)
			}
			if got := value(body, a1); got != "1" {
				t.Errorf("after the restart %s = %s, want 1", a1, got)
			}
			var restored *attribution.Contradiction
			for _, sa := range e2.in.Assumptions() {
				for _, st := range sa.Status {
					if st.Assumption == attribution.AfterHolds {
						restored = st.Contradiction
					}
				}
			}
			if restored == nil || restored.RequestID != "req-early" || restored.Detail == "" {
				t.Errorf("restored evidence = %+v, want req-early's", restored)
			}
			logs := log2.String()
			if strings.Contains(logs, "attribution assumption contradicted") {
				t.Errorf("the restored contradiction was logged again as new:\n%s", logs)
			}
			if !strings.Contains(logs, "assumption states recorded by an earlier run restored") || !strings.Contains(logs, "processes=1") {
				t.Errorf("no restore line at start:\n%s", logs)
			}
		})
	}
}

// stateCounts counts state.Metrics events.
type stateCounts struct {
	writes, fails int
	recovered     map[state.Recovery]int
}

func (c *stateCounts) SetRecords(int) {}
func (c *stateCounts) Write(err error) {
	c.writes++
	if err != nil {
		c.fails++
	}
}
func (c *stateCounts) AlreadyPublished() {}
func (c *stateCounts) Recovered(r state.Recovery) {
	if c.recovered == nil {
		c.recovered = map[state.Recovery]int{}
	}
	c.recovered[r]++
}

func openAssumptions(t *testing.T, stateFile string, m *stateCounts) (*assumptionRecord, []attribution.ServerAssumptions) {
	t.Helper()
	r, restored, err := openAssumptionRecord(stateFile, discard(), m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.close)
	return r, restored
}

// statesOf returns a process's states in the timeline's form: every
// assumption unchecked, then the given ones.
func statesOf(epoch string, set ...attribution.AssumptionStatus) attribution.ServerAssumptions {
	sa := attribution.ServerAssumptions{Epoch: epoch}
	for _, a := range attribution.Assumptions() {
		sa.Status = append(sa.Status, attribution.AssumptionStatus{Assumption: a, State: attribution.Unchecked})
	}
	for _, s := range set {
		sa.Status[s.Assumption] = s
	}
	return sa
}

// TestAssumptionRecordRoundTrip: each state, with its agreements and a
// contradiction's evidence (quotes, a newline), is restored as written;
// the file has the documented form. The epoch "" (servers without
// process_start_time_seconds: not one process) is not written.
func TestAssumptionRecordRoundTrip(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "s.state")
	m := &stateCounts{}
	r, restored := openAssumptions(t, stateFile, m)
	if len(restored) != 0 {
		t.Fatalf("a new file restored %v", restored)
	}
	why := &attribution.Contradiction{Epoch: "1767225600", Assumption: attribution.TTFTWithinE2E, RequestID: `req "7"`,
		Detail: "TTFT 0.5s > e2e 0.23s\nsecond line", PublishedBefore: 3}
	in := []attribution.ServerAssumptions{
		statesOf("1767225600",
			attribution.AssumptionStatus{Assumption: attribution.TTFTWithinE2E, State: attribution.Contradicted, Agreed: 4, Contradiction: why},
			attribution.AssumptionStatus{Assumption: attribution.ObserveDelay, State: attribution.Confirmed, Agreed: 10},
			attribution.AssumptionStatus{Assumption: attribution.CaptureBounds, State: attribution.Unchecked, Agreed: 6}),
		statesOf(""), // a server without process_start_time_seconds
	}
	r.save(in)
	if m.writes != 1 {
		t.Fatalf("writes = %d, want 1", m.writes)
	}
	r.save(in) // nothing changed: nothing written
	if m.writes != 1 {
		t.Fatalf("an unchanged save wrote: writes = %d", m.writes)
	}
	r.close()
	data, err := os.ReadFile(stateFile + ".assumptions")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"delta-exporter records 1\n",
		` "1767225600/ttft_within_e2e" "1 contradicted 4 3 \"req \\\"7\\\"\" \"TTFT 0.5s > e2e 0.23s\\nsecond line\""` + "\n",
		` "1767225600/observe_delay" "1 confirmed 10"` + "\n",
	} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("file lacks %q:\n%s", want, data)
		}
	}
	if bytes.Contains(data, []byte(` "/`)) {
		t.Errorf("the epoch \"\" was written:\n%s", data)
	}

	_, restored = openAssumptions(t, stateFile, m)
	if len(restored) != 1 {
		t.Fatalf("restored %d processes, want 1", len(restored))
	}
	for i, sa := range restored {
		if sa.Epoch != in[i].Epoch || len(sa.Status) != len(in[i].Status) {
			t.Fatalf("process %d: %q with %d states, want %q with %d", i, sa.Epoch, len(sa.Status), in[i].Epoch, len(in[i].Status))
		}
		for j, got := range sa.Status {
			want := in[i].Status[j]
			if got.Assumption != want.Assumption || got.State != want.State || got.Agreed != want.Agreed {
				t.Errorf("%q %s: %s %d, want %s %d", sa.Epoch, got.Assumption.Name(), got.State, got.Agreed, want.State, want.Agreed)
			}
			if (got.Contradiction == nil) != (want.Contradiction == nil) || (got.Contradiction != nil && *got.Contradiction != *want.Contradiction) {
				t.Errorf("%q %s: evidence %+v, want %+v", sa.Epoch, got.Assumption.Name(), got.Contradiction, want.Contradiction)
			}
		}
	}
}

// TestAssumptionRecordKeepsTheLatestProcesses: a server restarting in a
// loop makes a new process each time; the record keeps the
// maxRecordedProcesses whose states changed last, also across a restart,
// and the file stays bounded (state.Records compacts it).
func TestAssumptionRecordKeepsTheLatestProcesses(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "s.state")
	r, _ := openAssumptions(t, stateFile, &stateCounts{})
	const n = 300
	var all []attribution.ServerAssumptions
	for i := range n {
		all = append(all, statesOf(fmt.Sprint(1000+i)))
		r.save(all) // as the ingester does: every process, each time
	}
	// The oldest changes again: it is the latest now.
	all[0].Status[attribution.ObserveDelay].State = attribution.Confirmed
	r.save(all)
	r.close()
	st, err := os.Stat(stateFile + ".assumptions")
	if err != nil {
		t.Fatal(err)
	}
	// One process's records take ~1.3 kB: n of them ~400 kB.
	t.Logf("file of %d bytes after %d processes", st.Size(), n)
	if st.Size() > 200<<10 {
		t.Errorf("file of %d bytes after %d processes: not bounded", st.Size(), n)
	}
	_, restored := openAssumptions(t, stateFile, &stateCounts{})
	if len(restored) != maxRecordedProcesses {
		t.Fatalf("restored %d processes, want %d", len(restored), maxRecordedProcesses)
	}
	wantFirst := fmt.Sprint(1000 + n - maxRecordedProcesses + 1)
	if first, last := restored[0].Epoch, restored[len(restored)-1].Epoch; first != wantFirst || last != "1000" {
		t.Errorf("restored %s … %s, want the latest changed: %s … 1000", first, last, wantFirst)
	}
	if got := restored[len(restored)-1].Status[attribution.ObserveDelay].State; got != attribution.Confirmed {
		t.Errorf("process 1000 restored with observe_delay %s, want its latest state", got)
	}
}

// TestAssumptionRecordForeignRecords: records this version cannot use
// (an assumption it does not know, a value it cannot read) are ignored,
// and the rest is restored; a corrupt file is moved aside
// and counted, a write cut short is dropped and counted.
func TestAssumptionRecordForeignRecords(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "s.state")
	r, _ := openAssumptions(t, stateFile, &stateCounts{})
	r.save([]attribution.ServerAssumptions{statesOf("1",
		attribution.AssumptionStatus{Assumption: attribution.TTFTWithinE2E, State: attribution.Contradicted, Contradiction: &attribution.Contradiction{RequestID: "a"}})})
	r.close()
	rec, _, _, err := state.OpenRecords(stateFile+".assumptions", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Write(map[string]string{
		"1/assumption_of_a_later_version": "1 contradicted 0 0 \"b\" \"\"",
		"1/observe_delay":                 "1 contradicted 0", // no evidence
		"2/observe_delay":                 "x confirmed 10",
		"no slash":                        "1 confirmed 10",
	}); err != nil {
		t.Fatal(err)
	}
	rec.Close()
	_, restored := openAssumptions(t, stateFile, &stateCounts{})
	if len(restored) != 1 || restored[0].Epoch != "1" {
		t.Fatalf("restored %+v, want process 1 alone", restored)
	}
	var contradicted []string
	for _, st := range restored[0].Status {
		if st.State == attribution.Contradicted {
			contradicted = append(contradicted, st.Assumption.Name())
		}
	}
	if strings.Join(contradicted, ",") != "ttft_within_e2e" {
		t.Errorf("contradicted %v, want ttft_within_e2e", contradicted)
	}

	for _, c := range []struct {
		name   string
		damage func(path string)
		reason state.Recovery
		keep   bool // the record before the damage is restored
	}{
		{"corrupt", func(path string) {
			data, _ := os.ReadFile(path)
			lines := strings.SplitAfter(string(data), "\n")
			lines[1] = "deadbeef garbage\n"
			os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644)
		}, state.RecoveredCorrupt, false},
		{"cut short", func(path string) {
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString(`0badc0de "1/ttft_within_e2e" "2 conf`)
			f.Close()
		}, state.RecoveredUnfinished, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			stateFile := filepath.Join(t.TempDir(), "s.state")
			r, _ := openAssumptions(t, stateFile, &stateCounts{})
			r.save([]attribution.ServerAssumptions{statesOf("1",
				attribution.AssumptionStatus{Assumption: attribution.TTFTWithinE2E, State: attribution.Contradicted, Contradiction: &attribution.Contradiction{RequestID: "a"}})})
			r.close()
			c.damage(stateFile + ".assumptions")
			m := &stateCounts{}
			_, restored := openAssumptions(t, stateFile, m)
			if m.recovered[c.reason] != 1 {
				t.Errorf("recoveries %v, want one %s", m.recovered, c.reason)
			}
			if got := len(restored) == 1 && restored[0].Status[attribution.TTFTWithinE2E].State == attribution.Contradicted; got != c.keep {
				t.Errorf("contradiction restored = %v, want %v (%+v)", got, c.keep, restored)
			}
			if c.reason == state.RecoveredCorrupt {
				if m, _ := filepath.Glob(stateFile + ".assumptions.corrupt-*"); len(m) != 1 {
					t.Errorf("corrupt file not moved aside: %v", m)
				}
			}
		})
	}
}

// FuzzAssumptionRecord: a record that decodes encodes back to the same
// value, and nothing panics.
func FuzzAssumptionRecord(f *testing.F) {
	f.Add("1767225600/ttft_within_e2e", `3 contradicted 4 0 "req-7" "TTFT 0.5s > e2e 0.23s"`)
	f.Add("/observe_delay", "1 confirmed 10")
	f.Add("1/capture_time_bounds", "2 unchecked 6")
	f.Add("1/unknown", "2 unchecked 6")
	f.Fuzz(func(t *testing.T, key, value string) {
		epoch, name, seq, as, err := parseAssumptionRecord(key, value)
		if err != nil {
			return
		}
		if epoch+"/"+name != key || as.Assumption.Name() != name {
			t.Fatalf("key %q decoded as %q, %q (%s)", key, epoch, name, as.Assumption.Name())
		}
		// Numbers may be spelled otherwise ("007"): compare decoded.
		back := strconv.FormatUint(seq, 10) + " " + formatAssumption(as)
		_, _, seq2, as2, err := parseAssumptionRecord(key, back)
		if err != nil || seq2 != seq || as2.State != as.State || as2.Agreed != as.Agreed ||
			(as.Contradiction != nil) != (as2.Contradiction != nil) || (as.Contradiction != nil && *as.Contradiction != *as2.Contradiction) {
			t.Fatalf("%q → %q → %+v, %v; want %+v", value, back, as2, err, as)
		}
	})
}

// TestAssumptionRecordKeepsALiveContradiction: a long-lived server
// process whose after_holds_observation was contradicted early (its
// states then stop changing) outlives maxRecordedProcesses later-changing
// processes (a sibling server restarting in a loop): processes without a
// contradiction are evicted first.
func TestAssumptionRecordKeepsALiveContradiction(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "s.state")
	r, _ := openAssumptions(t, stateFile, &stateCounts{})
	live := statesOf("1767225600", attribution.AssumptionStatus{Assumption: attribution.AfterHolds, State: attribution.Contradicted,
		Contradiction: &attribution.Contradiction{RequestID: "req-early", Detail: "no finish observation"}})
	all := []attribution.ServerAssumptions{live}
	r.save(all)
	for i := range 2 * maxRecordedProcesses {
		all = append(all, statesOf(fmt.Sprint(1767300000+i))) // the other server's restarts
		r.save(all)
	}
	r.close()
	_, restored := openAssumptions(t, stateFile, &stateCounts{})
	if len(restored) != maxRecordedProcesses {
		t.Errorf("%d processes restored, want the bound %d", len(restored), maxRecordedProcesses)
	}
	for _, sa := range restored {
		if sa.Epoch == live.Epoch && sa.Status[attribution.AfterHolds].State == attribution.Contradicted {
			return
		}
	}
	t.Errorf("the live process's contradiction was not restored: its A1 would be used again after the exporter restarts")
}

// TestRetentionWaitsOnlyForContradictions: while a write of the
// assumption states fails (a full disk), retention still deletes when no
// unwritten state is a contradiction (on a volume shared with the
// snapshots, retention is what frees the disk), and deletes nothing while
// a contradiction is unwritten (its files may be its only evidence).
func TestRetentionWaitsOnlyForContradictions(t *testing.T) {
	dir, stateFile := t.TempDir(), filepath.Join(t.TempDir(), "s.state")
	writePairs(t, dir, 0, 3, time.Now().Add(-10*24*time.Hour))
	e := newExporter(t, dir, stateFile)
	// Every write of the .assumptions file fails from now on: the append
	// handle is gone, and the rewrite's temp file cannot be created (a
	// directory in its place stands for ENOSPC).
	e.assumed.rec.Close()
	if err := os.Mkdir(stateFile+".assumptions.tmp", 0o755); err != nil {
		t.Fatal(err)
	}
	ret := retention.New(retention.Config{Dir: dir, MaxAge: 7 * 24 * time.Hour})
	if err := e.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	if !e.assumed.failing || e.assumed.pendingContradiction {
		t.Fatalf("premise: a failed write without a contradiction (failing %v, contradiction %v)", e.assumed.failing, e.assumed.pendingContradiction)
	}
	if code, _ := e.scrape(t); code != 200 { // the requests are durable
		t.Fatal(code)
	}
	// A contradiction that cannot be written holds retention back.
	epoch := e.in.Assumptions()[0].Epoch
	e.assumed.save([]attribution.ServerAssumptions{statesOf(epoch, attribution.AssumptionStatus{Assumption: attribution.TTFTWithinE2E,
		State: attribution.Contradicted, Contradiction: &attribution.Contradiction{RequestID: "r1", Detail: "TTFT 2s > e2e 1s"}})})
	maintain(e.in, e.journal, ret, e.assumed, discard())
	if n := countFiles(t, dir); n != 6 {
		t.Fatalf("%d of 6 files left while a contradiction is unwritten", n)
	}
	// Without one, retention runs.
	e.assumed.save(e.in.Assumptions())
	if e.assumed.pendingContradiction {
		t.Fatal("premise: the pending states hold no contradiction")
	}
	maintain(e.in, e.journal, ret, e.assumed, discard())
	if n := countFiles(t, dir); n != 0 {
		t.Errorf("%d files left past retention: a failed write of states without a contradiction stopped deletion", n)
	}
}
