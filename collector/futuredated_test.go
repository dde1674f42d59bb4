package collector

import (
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/delta-exporter/delta-exporter/internal/ingest"
	internaltestutil "github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestFutureDatedCounted: delta_exporter_snapshots_future_dated_total is
// exposed at 0 before any file, and counts a file dated ahead of the
// exporter's clock once, however often it is looked at.
func TestFutureDatedCounted(t *testing.T) {
	c, reg := newCollector(t, 0)
	const name = "delta_exporter_snapshots_future_dated_total"
	count := func() float64 {
		t.Helper()
		n, err := testutil.GatherAndCount(reg, name)
		if err != nil || n != 1 {
			t.Fatalf("%s: %d series (%v), want 1", name, n, err)
		}
		return testutil.ToFloat64(c.snapshotsFuture)
	}
	if v := count(); v != 0 {
		t.Fatalf("%s = %v before any file, want 0", name, v)
	}
	w := internaltestutil.NewSnapshots(t, t.TempDir(), "m")
	b := w.Snap("r", parser.Before)
	w.Touch(b, time.Now().Add(time.Hour))
	in := ingest.New(ingest.Config{FS: os.DirFS(w.Dir), Metrics: c, Settle: time.Hour})
	for range 3 {
		if err := in.Scan(false); err != nil {
			t.Fatal(err)
		}
	}
	if v := count(); v != 1 {
		t.Fatalf("%s = %v after three looks at one file, want 1", name, v)
	}
}
