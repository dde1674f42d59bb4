package serve

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRestartShowsThePopulationOnce: what a scrape showed of the
// population families is not shown again by the next process, whatever
// it reads again; what was published but never scraped is. Over both
// processes every observation between the first and the last snapshot is
// counted once.
func TestRestartShowsThePopulationOnce(t *testing.T) {
	dir, stateFile := t.TempDir(), filepath.Join(t.TempDir(), "delta-exporter.state")
	start := time.Now().Add(-time.Hour)
	writePairs(t, dir, 3, 6, start) // the server had 3 requests before the first snapshot
	e1 := newExporter(t, dir, stateFile)
	if err := e1.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	const pop = `llm_population_e2e_seconds_count{model_name="org/model"}`
	code, body := e1.scrape(t)
	if code != 200 || value(body, pop) != "6" {
		t.Fatalf("first scrape %d: population %s, want the 6 observations between the snapshots:\n%s", code, value(body, pop), body)
	}
	if got := value(body, `llm_population_e2e_seconds_bucket{model_name="org/model",le="0.3"}`); got != "6" {
		t.Fatalf("bucket le=0.3 (the server's own bound) = %s, want 6", got)
	}
	// Four more are published, but the process dies before a scrape.
	writePairs(t, dir, 9, 4, start)
	if err := e1.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	e1.journal.Close()

	e2 := newExporter(t, dir, stateFile)
	if err := e2.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	_, body = e2.scrape(t)
	if got := value(body, pop); got != "4" {
		t.Fatalf("after restart: population %s, want the 4 never scraped", got)
	}
	// Coverage: every request exact, so the exact count equals the
	// population's in each process.
	if got := value(body, `llm_request_e2e_seconds_count{model_name="org/model"}`); got != "4" {
		t.Fatalf("after restart: exact %s, want 4", got)
	}
	e2.journal.Close()

	// A third process, nothing new: nothing at all is shown again.
	e3 := newExporter(t, dir, stateFile)
	if err := e3.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	if _, body = e3.scrape(t); value(body, pop) != "-1" {
		t.Fatalf("third process shows population %s, want none", value(body, pop))
	}
}

// TestPopulationRecordCutShort: a records file whose last write a crash
// cut short loads what came before it.
func TestPopulationRecordCutShort(t *testing.T) {
	dir, stateFile := t.TempDir(), filepath.Join(t.TempDir(), "delta-exporter.state")
	writePairs(t, dir, 0, 3, time.Now().Add(-time.Hour))
	e1 := newExporter(t, dir, stateFile)
	if err := e1.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	if code, _ := e1.scrape(t); code != 200 {
		t.Fatal(code)
	}
	e1.journal.Close()
	f, err := os.OpenFile(stateFile+".population", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`0badc0de "half a rec`)
	f.Close()
	e2 := newExporter(t, dir, stateFile)
	if err := e2.in.Scan(true); err != nil {
		t.Fatal(err)
	}
	_, body := e2.scrape(t)
	if got := value(body, `llm_population_e2e_seconds_count{model_name="org/model"}`); got != "-1" {
		t.Fatalf("population shown again after a cut-short record: %s", got)
	}
	if got := value(body, `delta_exporter_state_recoveries_total{reason="unfinished_write"}`); got != "1" {
		t.Fatalf("unfinished_write = %s, want 1", got)
	}
}
