package demo_test

import (
	"math"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/demo"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestDemoMatchesTruth: the embedded demo, served by the README's first
// command (with --attribution.trust-afters, as serve does for the demo),
// publishes only values equal to the simulator's ground truth.
func TestDemoMatchesTruth(t *testing.T) {
	truths := testutil.ReadTruth(t, "truth.json")
	r := record.New()
	in := ingest.New(ingest.Config{FS: demo.FS(), TrustAfters: true, Results: r.Publish, Metrics: r})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	r.NoRejections(t)
	exact := 0
	for _, tr := range truths {
		res, ok := r.ByID[tr.RequestID]
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
	if len(r.ByID) != len(truths) {
		t.Errorf("%d results for %d requests", len(r.ByID), len(truths))
	}
	if exact < len(truths)*3/4 {
		t.Errorf("only %d of %d demo requests exact", exact, len(truths))
	}
}
