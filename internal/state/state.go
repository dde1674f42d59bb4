// Package state keeps the exporter's durable record of what Prometheus may
// have seen, so that a restart neither publishes a request twice nor loses
// one.
//
// A decided request is published into the exporter's counters, but
// Prometheus only sees it when a scrape is answered. The record therefore
// holds the requests that went into an answered scrape, not merely those
// published: the /metrics handler gathers while no publication runs
// (View), makes everything it gathered durable (Sync: append, fsync) and
// only then writes its answer. After a crash, a request in the record is
// not published again (Prometheus has it); a request published but not in
// the record is published again (Prometheus never saw it). The new
// process's counters start from zero, Prometheus sees a counter reset,
// and increase() counts every request once.
//
// A request is identified by its snapshot file names: a name carries the
// request id and a microsecond timestamp, and the ingester never publishes
// a file twice in one run. A publication is skipped when any of its files
// is recorded. Entries whose files have all been gone from the directory
// for ForgetAfter are dropped when the file is rewritten, so the record
// follows the directory (and its retention) instead of growing forever.
//
// File format, text: a header line, then one record per line, each
// prefixed with its own CRC-32C (file.go):
//
//	delta-exporter state 2
//	1b5c9e0f + "r1_before_20260101_120000_000001.txt" "r1_after_20260101_120000_500000.txt"
//
// A line a crash cut short (unterminated, or a hole of zero bytes at the
// end of the file) was never acknowledged (the scrape it belonged to was
// not answered), so it is dropped. A complete line that fails its
// checksum is damage: the file is moved aside (.corrupt-<time>), logged at
// error level, and every record that verifies is kept, so only the
// damaged records' requests can be published again (docs/guarantees.md).
// Files of version 1 (batches of entries closed by a commit line with
// the batch's checksum) are still read, and rewritten as version 2.
package state

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// batchSize bounds the entries encoded at once when the file is rewritten.
const batchSize = 4096

// Metrics receives the journal's events (collector.StateMetrics implements it).
type Metrics interface {
	SetRecords(n int)
	Write(err error)
	AlreadyPublished()
	Recovered(reason Recovery)
}

// Recovery is a problem found in the file at startup, passed to
// Metrics.Recovered. The values are the label values of
// delta_exporter_state_recoveries_total (docs/metrics.md).
type Recovery string

const (
	// RecoveredCorrupt: the file did not parse; it was moved aside and the
	// record started empty.
	RecoveredCorrupt Recovery = "corrupt"
	// RecoveredUnfinished: the file ended with a write a crash cut short;
	// it was dropped.
	RecoveredUnfinished Recovery = "unfinished_write"
)

// Recoveries lists every Recovery, for pre-creating series.
var Recoveries = []Recovery{RecoveredCorrupt, RecoveredUnfinished}

// Config configures OpenJournal.
type Config struct {
	// Path is the state file. Its directory is created if missing. Empty
	// means no file: publications are never skipped and nothing is
	// written (the embedded demo, --state.file=none).
	Path   string
	Logger *slog.Logger
	// Metrics, optional, counts what the journal does.
	Metrics Metrics
	// ForgetAfter: an entry whose files have all been absent from the
	// directory for this long is dropped. 0 means one hour. The delay
	// protects against a directory that is briefly empty (a remount, a
	// move away and back): its files must not be published again.
	ForgetAfter time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// entry is one published request: its file names.
type entry struct {
	files []string
	seq   uint64
	// durable: written and fsynced (Sync), or loaded from the file.
	durable bool
	// missingSince is when Compact first found all files absent.
	missingSince time.Time
}

// Journal is the record. Publish and Compact are called by the goroutine
// that owns the ingester; View and Sync by the HTTP handlers, concurrently.
type Journal struct {
	cfg Config
	log *slog.Logger

	// mu: Publish holds it exclusively and View shared, so a gather never
	// runs during a publication.
	mu      sync.RWMutex
	byFile  map[string]*entry
	entries []*entry
	queue   []*entry // published, not durable yet, in seq order
	seq     uint64   // the last publication's sequence number

	// fileMu serialises everything that touches the file, and guards
	// entry.durable.
	fileMu     sync.Mutex
	file       appendFile
	durableSeq uint64
	failing    bool // the last write failed: logged once per outage
	lock       *os.File
}

// LoadReport says what OpenJournal found.
type LoadReport struct {
	// Records is the number of entries loaded.
	Records int
	// Created: there was no state file.
	Created bool
	// Dropped is the number of lines of a cut-short write that were dropped.
	Dropped int
	// CorruptMovedTo is where a damaged file was moved ("" if none was);
	// Records are then the records of it that verified.
	CorruptMovedTo string
	// CorruptErr says what was wrong with it.
	CorruptErr error
	// rewrite: the file cannot be appended to as it is (anything dropped
	// or damaged, an older format, a last line without its newline).
	rewrite bool
}

// OpenJournal loads the state file (creating it if missing) and takes an
// exclusive lock next to it, so that two exporters cannot share a record.
// It fails only when the file cannot be locked, read or written: a record
// that cannot be kept must stop the exporter at startup rather than let it
// double count later. A corrupt file is not an error: it is moved aside
// and explained in the log and in the report.
func OpenJournal(cfg Config) (*Journal, LoadReport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ForgetAfter <= 0 {
		cfg.ForgetAfter = time.Hour
	}
	j := &Journal{cfg: cfg, log: cfg.Logger.With("component", "state"), byFile: map[string]*entry{}, file: appendFile{path: cfg.Path}}
	var rep LoadReport
	if cfg.Path == "" {
		return j, rep, nil
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o755); err != nil {
		return nil, rep, fmt.Errorf("state file: %w", err)
	}
	lock, err := lockFile(cfg.Path + ".lock")
	if err != nil {
		return nil, rep, fmt.Errorf("state file %s: %w", cfg.Path, err)
	}
	j.lock = lock
	data, err := os.ReadFile(cfg.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		rep.Created = true
		j.log.Info("no state file; starting with an empty record", "file", cfg.Path)
	case err != nil:
		j.Close()
		return nil, rep, fmt.Errorf("reading state file: %w", err)
	default:
		p, perr := parse(data)
		if perr != nil {
			moved := cfg.Path + ".corrupt-" + cfg.Now().UTC().Format("20060102T150405.000000000Z")
			if err := os.Rename(cfg.Path, moved); err != nil {
				j.Close()
				return nil, rep, fmt.Errorf("moving corrupt state file aside: %w", err)
			}
			rep.CorruptMovedTo, rep.CorruptErr = moved, perr
			j.count(func(m Metrics) { m.Recovered(RecoveredCorrupt) })
			j.log.Error("state file is damaged; moved it aside and kept every record that verifies: the requests of the damaged records will be published again if their snapshots are still in the directory, and Prometheus will count them twice",
				"file", cfg.Path, "moved_to", moved, "kept", len(p.entries), "err", perr)
		}
		for _, files := range p.entries {
			j.add(&entry{files: files, durable: true})
		}
		rep.Records, rep.Dropped = len(p.entries), p.dropped
		rep.rewrite = !p.clean
		if p.dropped > 0 {
			j.count(func(m Metrics) { m.Recovered(RecoveredUnfinished) })
			j.log.Warn("state file ends with a write cut short by a crash; dropped it (those requests were never shown to a scrape)",
				"file", cfg.Path, "lines", p.dropped)
		}
		j.log.Info("loaded state file", "file", cfg.Path, "records", len(p.entries))
	}
	// An intact file is appended to; anything else is rewritten at once,
	// so that appends never follow a cut-short tail. Either way, a file
	// that cannot be written stops the exporter here.
	j.fileMu.Lock()
	if rep.Created || rep.CorruptMovedTo != "" || rep.rewrite {
		err = j.rewrite()
	} else {
		err = j.file.openAppend()
	}
	j.fileMu.Unlock()
	if err != nil {
		j.Close()
		return nil, rep, err
	}
	j.setRecords()
	return j, rep, nil
}

// Close releases the file and its lock. Publications not synced are not
// written: Prometheus never saw them, so the next run publishes them.
func (j *Journal) Close() error {
	j.fileMu.Lock()
	defer j.fileMu.Unlock()
	err := j.file.close()
	if j.lock != nil {
		j.lock.Close()
		j.lock = nil
	}
	return err
}

func (j *Journal) count(f func(Metrics)) {
	if j.cfg.Metrics != nil {
		f(j.cfg.Metrics)
	}
}

func (j *Journal) setRecords() {
	j.mu.RLock()
	n := len(j.entries)
	j.mu.RUnlock()
	j.count(func(m Metrics) { m.SetRecords(n) })
}

// add indexes an entry. Called with mu held, or before the journal is shared.
func (j *Journal) add(e *entry) {
	j.entries = append(j.entries, e)
	for _, f := range e.files {
		j.byFile[f] = e
	}
}

// Publish runs publish unless one of files is recorded (an earlier run
// published the request and a scrape showed it). It reports whether
// publish ran. files are the request's snapshot names; empty names are
// ignored, and a publication without any name is never skipped.
func (j *Journal) Publish(files []string, publish func()) bool {
	j.mu.Lock()
	var names []string
	for _, f := range files {
		if f == "" {
			continue
		}
		if _, ok := j.byFile[f]; ok {
			j.mu.Unlock()
			j.count(func(m Metrics) { m.AlreadyPublished() })
			return false
		}
		names = append(names, f)
	}
	publish()
	if j.cfg.Path == "" || len(names) == 0 {
		j.mu.Unlock()
		return true
	}
	j.seq++
	e := &entry{files: names, seq: j.seq}
	j.add(e)
	j.queue = append(j.queue, e)
	n := len(j.entries)
	j.mu.Unlock()
	j.count(func(m Metrics) { m.SetRecords(n) })
	return true
}

// View runs f while no publication runs and returns the sequence number
// that Sync must make durable before what f saw is shown to anyone.
func (j *Journal) View(f func()) uint64 {
	j.mu.RLock()
	defer j.mu.RUnlock()
	f()
	return j.seq
}

// Sync makes every publication up to seq durable: appended to the file and
// fsynced. Concurrent callers are serialised; one whose publications
// another Sync already wrote returns at once. On error, what was gathered
// up to seq must not be shown: the caller shows what an earlier
// successful Sync covered instead. A failure is logged once per outage.
func (j *Journal) Sync(seq uint64) error {
	if j.cfg.Path == "" {
		return nil
	}
	j.fileMu.Lock()
	defer j.fileMu.Unlock()
	if seq <= j.durableSeq {
		return nil
	}
	j.mu.RLock()
	n := 0
	for n < len(j.queue) && j.queue[n].seq <= seq {
		n++
	}
	batch := append([]*entry(nil), j.queue[:n]...)
	j.mu.RUnlock()

	var err error
	if !j.file.canAppend() {
		for _, e := range batch {
			e.durable = true
		}
		if err = j.rewrite(); err != nil {
			for _, e := range batch {
				e.durable = false
			}
		}
	} else {
		err = j.append(batch)
	}
	j.count(func(m Metrics) { m.Write(err) })
	switch {
	case err != nil && !j.failing:
		// Once per outage: a full disk fails every scrape.
		j.log.Error("cannot write the state file; scrapes show no new request until it can be written, so that no request is shown without being recorded", "file", j.cfg.Path, "err", err)
	case err == nil && j.failing:
		j.log.Info("state file writable again; the requests withheld meanwhile are recorded and shown", "file", j.cfg.Path)
	}
	j.failing = err != nil
	if err != nil {
		return err
	}
	for _, e := range batch {
		e.durable = true
	}
	j.mu.Lock()
	j.queue = j.queue[len(batch):]
	j.mu.Unlock()
	j.durableSeq = seq
	return nil
}

// append writes one batch and fsyncs. After a failure the file's tail is
// unknown, so the next write rewrites the whole file instead.
func (j *Journal) append(batch []*entry) error {
	var buf bytes.Buffer
	writeBatch(&buf, batch)
	return j.file.append(buf.Bytes())
}

// Compact forgets entries whose files have all been absent for
// ForgetAfter (present tells whether a file is in the directory) and
// rewrites the file when it holds much more than the live entries. Call it
// from the goroutine that publishes, after a directory scan.
func (j *Journal) Compact(present func(name string) bool) error {
	if j.cfg.Path == "" {
		return nil
	}
	now := j.cfg.Now()
	j.fileMu.Lock()
	defer j.fileMu.Unlock()
	j.mu.Lock()
	kept := j.entries[:0]
	var live int64
	for _, e := range j.entries {
		gone := true
		for _, f := range e.files {
			if present(f) {
				gone = false
				break
			}
		}
		switch {
		case !gone:
			e.missingSince = time.Time{}
		case e.missingSince.IsZero():
			e.missingSince = now
		}
		// Only durable entries are forgotten: a queued one is on its way
		// to a scrape and must be written first.
		if gone && e.durable && now.Sub(e.missingSince) >= j.cfg.ForgetAfter {
			for _, f := range e.files {
				if j.byFile[f] == e {
					delete(j.byFile, f)
				}
			}
			continue
		}
		kept = append(kept, e)
		if e.durable {
			live += entrySize(e)
		}
	}
	clear(j.entries[len(kept):])
	j.entries = kept
	n := len(kept)
	j.mu.Unlock()
	j.count(func(m Metrics) { m.SetRecords(n) })
	if j.file.canAppend() && j.file.size <= 2*live+64<<10 {
		return nil
	}
	return j.rewrite()
}

// Queued reports whether name belongs to a publication that is not
// durable yet. Retention keeps such files: deleting them before a scrape
// records their request would lose it if the exporter crashed then.
func (j *Journal) Queued(name string) bool {
	j.mu.RLock()
	e := j.byFile[name]
	j.mu.RUnlock()
	if e == nil {
		return false
	}
	j.fileMu.Lock()
	defer j.fileMu.Unlock()
	return !e.durable
}

// Records returns the number of entries held (tests, reports).
func (j *Journal) Records() int {
	j.mu.RLock()
	defer j.mu.RUnlock()
	return len(j.entries)
}

// rewrite writes every durable entry to a new file and renames it over
// the old one: temp file, fsync, rename, fsync of the directory. Called
// with fileMu held.
func (j *Journal) rewrite() error {
	j.mu.RLock()
	var durable []*entry
	for _, e := range j.entries {
		if e.durable {
			durable = append(durable, e)
		}
	}
	j.mu.RUnlock()

	return j.file.rewrite(func(w *bufio.Writer) {
		w.WriteString(header + "\n")
		var buf bytes.Buffer
		for i := 0; i < len(durable); i += batchSize {
			buf.Reset()
			writeBatch(&buf, durable[i:min(i+batchSize, len(durable))])
			w.Write(buf.Bytes())
		}
	})
}
