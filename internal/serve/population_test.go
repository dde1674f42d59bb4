package serve

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

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
