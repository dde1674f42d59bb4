package serve

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/state"
)

// failingRecorder is the state record with a disk that fills up: while
// full is set, every write fails as a full disk does.
type failingRecorder struct {
	*state.Journal
	full  atomic.Bool
	fails int
}

func (f *failingRecorder) Sync(seq uint64) error {
	if f.full.Load() {
		f.fails++
		return errors.New("write delta-exporter.state: no space left on device")
	}
	return f.Journal.Sync(seq)
}

// TestFullDiskKeepsServingSelfMetrics: while the state record cannot be
// written, /metrics still answers 200 with the exporter's own metrics as
// they are, and the per-request families as the last recorded scrape
// showed them (no request is shown unrecorded). Once the disk has room,
// the withheld requests are recorded and shown, each once. Before, every
// scrape answered 500 and the failure showed only as up == 0.
func TestFullDiskKeepsServingSelfMetrics(t *testing.T) {
	dir, stateFile := t.TempDir(), filepath.Join(t.TempDir(), "s.state")
	start := time.Now().Add(-time.Hour)
	writePairs(t, dir, 0, 2, start)
	e := newExporter(t, dir, stateFile)
	rec := &failingRecorder{Journal: e.journal}
	h := newScrapeHandler(e.reg, rec, discard(), 0, 0)
	e.h = h
	if err := e.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	const e2e = `llm_request_e2e_seconds_count{model_name="org/model"}`
	if code, body := e.scrape(t); code != 200 || value(body, e2e) != "2" {
		t.Fatalf("first scrape %d:\n%s", code, body)
	}

	rec.full.Store(true)
	writePairs(t, dir, 2, 3, start)
	if err := e.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		code, body := e.scrape(t)
		if code != 200 {
			t.Fatalf("scrape with a full disk: %d", code)
		}
		if got := value(body, e2e); got != "2" {
			t.Fatalf("scrape with a full disk shows %s requests, want the 2 recorded", got)
		}
		// Partial: two requests cannot confirm that the server observes
		// the other families with the finish (docs/attribution.md).
		if got := value(body, `delta_exporter_requests_total{outcome="partial"}`); got != "2" {
			t.Fatalf("requests_total partial = %s with a full disk, want 2", got)
		}
		if got := value(body, "delta_exporter_snapshots_read_total"); got != "10" {
			t.Fatalf("self-metric snapshots_read_total = %s, want the current 10", got)
		}
	}
	if rec.fails != 2 {
		t.Fatalf("writes tried: %d", rec.fails)
	}

	rec.full.Store(false)
	if code, body := e.scrape(t); code != 200 || value(body, e2e) != "5" {
		t.Fatalf("after the disk has room: %d, %s requests", code, value(body, e2e))
	}
	data, err := os.ReadFile(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if entries, _, err := state.Parse(data); err != nil || len(entries) != 5 {
		t.Fatalf("state file holds %d requests (%v), want 5", len(entries), err)
	}
}
