package ingest

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestArrivalOrderNeverMakesAValueWrong: files that arrive in any order
// (a burst copied in directory order, a resync, a slow network volume)
// are decided as they come, so some requests are decided before their
// neighbours arrive: fewer values are exact than in time order, but every
// published value still equals the simulator's truth, and every request is
// decided exactly once.
func TestArrivalOrderNeverMakesAValueWrong(t *testing.T) {
	dir := t.TempDir()
	truths, err := simulate.Run(simulate.Config{Seed: 11, Requests: 150, MeanInFlight: 3, Engines: 2,
		TimelineInterval: 500 * time.Millisecond, FirstSnapshots: true}, simulate.DirSink(dir))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]simulate.Truth{}
	for _, tr := range truths {
		byID[tr.RequestID] = tr
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for seed := uint64(0); seed < 2; seed++ {
		rng := rand.New(rand.NewPCG(seed, 3))
		rng.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
		rec := record.Once(t)
		in := New(Config{TrustAfters: true, FS: os.DirFS(dir), Results: rec.Publish, Metrics: rec, MaxDelay: time.Hour})
		for i, e := range entries {
			in.File(e.Name())
			if i%50 == 0 {
				in.Tick()
			}
		}
		in.Finish()
		exact := 0
		for _, tr := range truths {
			res, ok := rec.ByID[tr.RequestID]
			if !ok {
				t.Fatalf("seed %d: %s not decided", seed, tr.RequestID)
			}
			for m := parser.Metric(0); m < parser.NumMetrics; m++ {
				if got, v := res.Values[m], tr.Value(m); got.Exact && math.Abs(got.V-v) > 1e-9 {
					t.Fatalf("seed %d: %s %s = %v, truth %v", seed, tr.RequestID, m.Name(), got.V, v)
				}
			}
			if res.Outcome == attribution.Exact {
				exact++
			}
		}
		if len(rec.Results) != len(truths) {
			t.Fatalf("seed %d: %d publications for %d requests", seed, len(rec.Results), len(truths))
		}
		t.Logf("random arrival order %d: %d of %d requests exact", seed, exact, len(truths))
	}
}
