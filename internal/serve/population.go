package serve

import (
	"log/slog"
	"sync"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/internal/state"
)

// journaledSnapshots feeds the population under the journal's lock: a
// scrape gathers and captures the population's record while no
// publication runs (state.Journal.View), so what it records is exactly
// what it shows. The lock is taken once per batch of files (ingest hands
// them on in batches), not once per file. It also tells the population
// which files are gone, and drops from the record the hulls the
// population forgets.
type journaledSnapshots struct {
	pop *population.Population
	j   *state.Journal
	rec *populationRecord // nil: not recorded
}

func (s journaledSnapshots) ObserveSnapshots(seen []ingest.SeenSnapshot, gone []string) {
	var forgotten []string
	s.j.Publish(nil, func() {
		for _, sn := range seen {
			s.pop.ObserveFile(sn.Name, sn.Time, sn.Snapshot)
		}
		s.pop.Gone(gone)
		forgotten = s.pop.Forget()
	})
	s.rec.forget(forgotten)
}

// populationRecord makes the population hulls a scrape showed durable
// (<state file>.population) before the scrape is answered, as the journal
// does for requests.
type populationRecord struct {
	// mu makes Fresh, the write and Durable one step: concurrent scrapes
	// write in any order, and only ever a hull larger than the last one
	// written.
	mu      sync.Mutex
	pop     *population.Population
	rec     *state.Records
	log     *slog.Logger
	metrics state.Metrics
	failing bool // the last write failed: log once per outage
}

// openPopulationRecord opens the records file next to the state file and
// restores the hulls an earlier run showed. Call after state.Open (which
// holds the lock both files share).
func openPopulationRecord(stateFile string, pop *population.Population, log *slog.Logger, metrics state.Metrics) (*populationRecord, error) {
	rec, values, rep, err := state.OpenRecords(stateFile+".population", log, time.Now())
	if err != nil {
		return nil, err
	}
	if rep.CorruptMovedTo != "" {
		metrics.Recovered(state.RecoveredCorrupt)
		log.Error("population records lost: what the population families showed before will be shown again", "file", stateFile+".population")
	}
	if rep.Dropped > 0 {
		metrics.Recovered(state.RecoveredUnfinished)
	}
	vals := make([]string, 0, len(values))
	for _, v := range values {
		vals = append(vals, v)
	}
	if err := pop.Load(vals); err != nil {
		// Valid lines that do not decode: written by another version.
		// Starting empty shows the population on disk again (counted
		// twice by Prometheus); said loudly, as for a corrupt file.
		log.Error("population records do not decode; starting with an empty population record: snapshots still in the directory will be counted again by the population families",
			"file", stateFile+".population", "err", err)
	} else if len(vals) > 0 {
		log.Info("population hulls recorded by an earlier run will not be published again", "records", len(vals))
	}
	return &populationRecord{pop: pop, rec: rec, log: log, metrics: metrics}, nil
}

// capture is called while the scrape's gather holds the journal's view.
func (r *populationRecord) capture() []population.Record {
	if r == nil {
		return nil
	}
	return r.pop.Capture()
}

// sync writes what capture returned; on error the scrape must not show
// the population beyond what was recorded (scrapeHandler.withheld).
func (r *populationRecord) sync(caps []population.Record) error {
	if r == nil || len(caps) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if caps = r.pop.Fresh(caps); len(caps) == 0 {
		return nil
	}
	m := make(map[string]string, len(caps))
	for _, c := range caps {
		m[c.Key] = c.Value
	}
	err := r.rec.Write(m)
	r.metrics.Write(err)
	if err != nil {
		if !r.failing {
			r.log.Error("cannot write the population records; scrapes show the population as last recorded until they can be written", "err", err)
		}
		r.failing = true
		return err
	}
	if r.failing {
		r.log.Info("population records written again")
		r.failing = false
	}
	r.pop.Durable(caps)
	return nil
}

// forget drops the records of hulls the population forgot. A failure
// loses nothing: the file keeps records a restart loads and forgets
// again.
func (r *populationRecord) forget(keys []string) {
	if r == nil || len(keys) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.rec.Delete(keys); err != nil {
		r.log.Warn("cannot compact the population records", "err", err)
	}
}

func (r *populationRecord) close() {
	if r != nil {
		r.rec.Close()
	}
}
