package serve

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/collector"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/state"
	"github.com/delta-exporter/delta-exporter/parser"
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

// TestPopulationRecordFollowsTheDirectory: a server that restarts often,
// a new model each time, retention keeping the newest files: the hulls
// held and the records file follow the directory, not every server
// process ever seen, and a restart of the exporter loads no more than
// that. (Before hulls were forgotten, 200 restarts left 200 processes'
// hulls in memory and in the file.)
func TestPopulationRecordFollowsTheDirectory(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "delta-exporter.state")
	now := time.Now()
	clock := func() time.Time { return now }
	open := func() (*state.Journal, *population.Population, *populationRecord) {
		t.Helper()
		sm, err := collector.NewStateMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		j, _, err := state.OpenJournal(state.Config{Path: stateFile, Metrics: sm})
		if err != nil {
			t.Fatal(err)
		}
		pop := population.New(population.Config{ForgetAfter: 5 * time.Minute, Now: clock})
		rec, err := openPopulationRecord(stateFile, pop, discard(), sm)
		if err != nil {
			t.Fatal(err)
		}
		return j, pop, rec
	}
	j, pop, rec := open()
	obs := journaledSnapshots{pop: pop, j: j, rec: rec}
	scrape := func() {
		var caps []population.Record
		j.View(func() { caps = rec.capture() })
		if err := rec.sync(caps); err != nil {
			t.Fatal(err)
		}
	}
	const processes, perProcess, kept = 200, 4, 12
	var dir []string
	perProcessHulls, maxHeld := 0, 0
	for proc := range processes {
		srv := simulate.NewServer(simulate.ServerConfig{Models: []string{fmt.Sprintf("org/model-%d", proc)},
			StartTime: simulate.DefaultStartTime().Add(time.Duration(proc) * time.Hour)})
		for i := range perProcess {
			now = now.Add(time.Minute)
			srv.ObserveFirstToken(fmt.Sprintf("org/model-%d", proc), 0, 0.05)
			var b bytes.Buffer
			srv.WriteTo(&b)
			snap, err := parser.Scan(b.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			name := parser.FormatName(fmt.Sprintf("r%d-%d", proc, i), parser.Before, now)
			dir = append(dir, name)
			var gone []string
			if len(dir) > kept {
				gone, dir = dir[:len(dir)-kept], dir[len(dir)-kept:]
			}
			obs.ObserveSnapshots([]ingest.SeenSnapshot{{Name: name, Time: now, Snapshot: snap}}, gone)
			scrape()
			held, _ := pop.Hulls()
			if proc == 0 {
				perProcessHulls = held
			}
			maxHeld = max(maxHeld, held)
		}
	}
	// The directory holds 3 processes' files; a process is forgotten 5
	// files after its last one went: 2 more at most.
	bound := 5 * perProcessHulls
	if perProcessHulls == 0 || maxHeld > bound {
		t.Errorf("held up to %d hulls, want ≤ %d (%d a process)", maxHeld, bound, perProcessHulls)
	}
	rec.close()
	j.Close()
	st, err := os.Stat(stateFile + ".population")
	if err != nil {
		t.Fatal(err)
	}
	// Compacted at twice the live records plus 64 KiB.
	if st.Size() > 256<<10 {
		t.Errorf("records file %d bytes for at most %d live hulls", st.Size(), bound)
	}
	j2, pop2, rec2 := open()
	defer j2.Close()
	defer rec2.close()
	held, _ := pop2.Hulls()
	t.Logf("%d hulls a process; held at most %d; records file %d bytes; %d loaded after a restart", perProcessHulls, maxHeld, st.Size(), held)
	if held == 0 || held > processes*perProcessHulls/10 {
		t.Errorf("a restart loaded %d hulls: want the live ones and at most what the last compaction left, not every process's (%d)", held, processes*perProcessHulls)
	}
}

// BenchmarkPopulationObserve: the cost of handing 1,000 snapshots (500
// requests' before and after) to the population under the journal's
// lock, one file a lock (batch=1, as before ingest batched) against
// ingest's batches (batch=64); alone, and while scrapes gather the
// population in a loop (each holds the journal's view: a publication
// waits for it); with model names bounded by the collector (label=true,
// as serve does) or not; and, for scale, parsing the same 1,000 files
// (parse), the bulk of what ingest does with a file. Compare the
// sub-benchmarks' ns/op in one run.
func BenchmarkPopulationObserve(b *testing.B) {
	const n = 1000
	srv := simulate.NewServer(simulate.ServerConfig{Models: []string{"org/model"}})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := make([]ingest.SeenSnapshot, 0, n)
	var bodies [][]byte
	for i := range n {
		if i%2 == 1 {
			srv.ObserveFirstToken("org/model", 0, 0.05)
			srv.ObserveFinish("org/model", 0, simulate.Finish{Queue: 0.01, Prefill: 0.02, Decode: 0.2, Inference: 0.22, E2E: 0.23, PromptTokens: 10, GenerationTokens: 3})
		}
		var buf bytes.Buffer
		srv.WriteTo(&buf)
		bodies = append(bodies, bytes.Clone(buf.Bytes()))
		snap, err := parser.Scan(buf.Bytes())
		if err != nil {
			b.Fatal(err)
		}
		at := start.Add(time.Duration(i) * time.Second)
		seen = append(seen, ingest.SeenSnapshot{Name: parser.FormatName(fmt.Sprintf("r%d", i/2), parser.Before, at), Time: at, Snapshot: snap})
	}
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			for _, body := range bodies {
				if _, err := parser.Scan(body); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	type run struct {
		scraping bool
		batch    int
		label    bool // model names bounded by the collector, as serve does
	}
	for _, r := range []run{{false, 1, true}, {false, 64, true}, {false, 64, false}, {true, 1, true}, {true, 64, true}} {
		b.Run(fmt.Sprintf("scraping=%v/batch=%d/label=%v", r.scraping, r.batch, r.label), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				j, _, err := state.OpenJournal(state.Config{})
				if err != nil {
					b.Fatal(err)
				}
				reg := prometheus.NewRegistry()
				coll, err := collector.New(collector.Config{Registerer: reg})
				if err != nil {
					b.Fatal(err)
				}
				cfg := population.Config{}
				if r.label {
					cfg.Label = coll.PopulationLabel
				}
				pop := population.New(cfg)
				if _, err := collector.NewPopulationMetrics(reg, pop); err != nil {
					b.Fatal(err)
				}
				obs := journaledSnapshots{pop: pop, j: j}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				if r.scraping {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							j.View(func() { reg.Gather() })
						}
					})
				}
				b.StartTimer()
				for i := 0; i < n; i += r.batch {
					obs.ObserveSnapshots(seen[i:min(i+r.batch, n)], nil)
				}
				b.StopTimer()
				close(stop)
				wg.Wait()
				b.StartTimer()
			}
		})
	}
}
