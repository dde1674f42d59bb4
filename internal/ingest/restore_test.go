package ingest

import (
	"fmt"
	"os"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// orderedRecorder notes whether the assumption states reached Metrics
// before the first result was published.
type orderedRecorder struct {
	*record.Recorder
	events []string
}

func (o *orderedRecorder) SetAssumptions(a []attribution.ServerAssumptions) {
	o.events = append(o.events, "assumptions")
	o.Recorder.SetAssumptions(a)
}

func (o *orderedRecorder) publish(r attribution.Result) {
	o.events = append(o.events, "result")
	o.Recorder.Publish(r)
}

// TestRestoredContradiction: states given in Config.Restore (serve's
// record of an earlier exporter process) are in force before the first
// file is read: with after_holds_observation restored as contradicted
// for the directory's server process, the finish values of pairs that
// would otherwise be exact are withheld, the states reach Metrics before any result, and
// the restored evidence is what Assumptions shows.
func TestRestoredContradiction(t *testing.T) {
	w := newDirWriter(t)
	for i := range 12 {
		w.request(fmt.Sprintf("req-%02d", i), i)
	}
	first := record.Once(t)
	if err := newTestIngester(w.Dir, first).Scan(true); err != nil {
		t.Fatal(err)
	}
	if exactCount(first) != 12 || len(first.Assumptions) != 1 {
		t.Fatalf("without a restore: %d exact e2e, %d processes; want 12 and 1", exactCount(first), len(first.Assumptions))
	}
	epoch := first.Assumptions[0].Epoch

	why := &attribution.Contradiction{RequestID: "gone", Detail: "no finish observation"}
	rec := &orderedRecorder{Recorder: record.Once(t)}
	in := New(Config{TrustAfters: true, FS: os.DirFS(w.Dir), MaxObserveDelay: DefaultMaxObserveDelay, Results: rec.publish, Metrics: rec,
		Restore: []attribution.ServerAssumptions{{Epoch: epoch, Status: []attribution.AssumptionStatus{
			{Assumption: attribution.AfterHolds, State: attribution.Contradicted, Contradiction: why}}}}})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	if n := exactCount(rec.Recorder); n != 0 {
		t.Errorf("%d e2e values exact under a restored contradiction of A1, want 0", n)
	}
	if len(rec.events) == 0 || rec.events[0] != "assumptions" {
		t.Errorf("events %v: the states did not come first", rec.events)
	}
	got := in.Assumptions()
	if len(got) != 1 || got[0].Epoch != epoch {
		t.Fatalf("processes %+v, want %s alone", got, epoch)
	}
	if st := got[0].Status[attribution.AfterHolds]; st.State != attribution.Contradicted || st.Contradiction == nil || st.Contradiction.RequestID != "gone" {
		t.Errorf("after_holds_observation %s %+v, want the restored contradiction", st.State, st.Contradiction)
	}
}

// exactCount counts the results with an exact e2e: a finish value, which
// rests on after_holds_observation.
func exactCount(r *record.Recorder) int {
	n := 0
	for _, res := range r.Results {
		if res.Values[parser.E2E].Exact {
			n++
		}
	}
	return n
}

// TestRestoredAgreementsNotCountedTwice: an exporter that restarts reads
// the same files again (retention deleted none), so an unchecked
// assumption's agreements are not restored: six requests read twice must
// not confirm ttft_within_e2e, which needs ten.
func TestRestoredAgreementsNotCountedTwice(t *testing.T) {
	w := newDirWriter(t)
	for i := range 6 {
		w.request(fmt.Sprintf("req-%02d", i), i)
	}
	run := func(restore []attribution.ServerAssumptions) []attribution.ServerAssumptions {
		rec := record.Once(t)
		in := New(Config{TrustAfters: true, FS: os.DirFS(w.Dir), MaxObserveDelay: DefaultMaxObserveDelay, Results: rec.Publish, Metrics: rec, Restore: restore})
		if err := in.Scan(true); err != nil {
			t.Fatal(err)
		}
		in.Finish()
		return in.Assumptions()
	}
	first := run(nil)
	if len(first) != 1 || first[0].Epoch == "" {
		t.Fatalf("premise: one server process with a start time, got %+v", first)
	}
	if st := first[0].Status[attribution.TTFTWithinE2E]; st.State != attribution.Unchecked || st.Agreed == 0 {
		t.Fatalf("premise: six requests leave ttft_within_e2e unchecked with agreements, got %s %d", st.State, st.Agreed)
	}
	second := run(first) // the exporter restarted; every file still there
	if st, was := second[0].Status[attribution.TTFTWithinE2E], first[0].Status[attribution.TTFTWithinE2E]; st.State != attribution.Unchecked || st.Agreed != was.Agreed {
		t.Errorf("after a restart ttft_within_e2e is %s with %d agreements; the same files gave %d", st.State, st.Agreed, was.Agreed)
	}
}
