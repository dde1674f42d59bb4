package demo_test

import (
	"math"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/demo"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/parser"
)

type results struct{ byID map[string]attribution.Result }

func (r *results) Publish(res attribution.Result)                  { r.byID[res.RequestID] = res }
func (r *results) SnapshotRead()                                   {}
func (r *results) SnapshotRejected(file, reason string, err error) { panic(file + ": " + reason) }
func (r *results) FileIgnored(string)                              {}
func (r *results) SetPending(string, int)                          {}

// TestDemoMatchesTruth: the embedded demo, served by the README's first
// command, publishes only values equal to the simulator's ground truth.
func TestDemoMatchesTruth(t *testing.T) {
	truths := testutil.ReadTruth(t, "truth.json")
	r := &results{byID: map[string]attribution.Result{}}
	in := ingest.New(ingest.Config{FS: demo.FS(), Publisher: r})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	exact := 0
	for _, tr := range truths {
		res, ok := r.byID[tr.RequestID]
		if !ok {
			t.Fatalf("%s: no result", tr.RequestID)
		}
		for m := parser.Metric(0); m < parser.NumMetrics; m++ {
			if v, w := res.Values[m], tr.Value(m); v.Exact && math.Abs(v.V-w) > 1e-9 {
				t.Errorf("%s %s = %v, truth %v", tr.RequestID, m.Name(), v.V, w)
			}
		}
		if res.Model != "" && res.Model != tr.Model {
			t.Errorf("%s model %q, truth %q", tr.RequestID, res.Model, tr.Model)
		}
		if res.Outcome == attribution.Exact {
			exact++
		}
	}
	if len(r.byID) != len(truths) {
		t.Errorf("%d results for %d requests", len(r.byID), len(truths))
	}
	if exact < len(truths)*3/4 {
		t.Errorf("only %d of %d demo requests exact", exact, len(truths))
	}
}
