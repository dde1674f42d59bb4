// Package ingest is the pipeline step between the directory and what
// publishes: it reads snapshot files, pairs each request's before and
// after, feeds every snapshot to the attribution timeline and hands
// decided requests to Config.Results, counting what became of each file
// in Config.Metrics. One goroutine owns an Ingester; it takes file names
// from a directory scan or a watcher and never blocks on anything but the
// file it reads.
package ingest

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/parser"
)

// Metrics receives what the ingester counts: collector.Collector
// implements it for serve, the report for its summary. Each label is a
// typed constant listed with its type (package snapfile), so a consumer
// can pre-create every series the ingester can report.
type Metrics interface {
	// SnapshotRead counts a snapshot file parsed and used.
	SnapshotRead()
	// SnapshotRejected counts an unusable file (snapshot or sidecar). The
	// name and the error are for a listing (the report), never a label.
	SnapshotRejected(name string, reason snapfile.RejectReason, err error)
	// FileIgnored counts a directory entry not used at all.
	FileIgnored(reason snapfile.IgnoreReason)
	// SnapshotFutureDated counts a snapshot file dated ahead of the
	// exporter's clock (skew.go), once per file.
	SnapshotFutureDated()
	// SetPending says how many requests are held: unpaired (a half
	// waits for its partner) and attributing (paired, waiting for the
	// requests that overlap it).
	SetPending(unpaired, attributing int)
	// SetAssumptions shows what the data said about each server
	// process's assumptions (docs/attribution.md): it is given every
	// process's states whenever one changed.
	SetAssumptions([]attribution.ServerAssumptions)
}

// discard is the Metrics of a Config without one.
type discard struct{}

func (discard) SnapshotRead()                                         {}
func (discard) SnapshotRejected(string, snapfile.RejectReason, error) {}
func (discard) FileIgnored(snapfile.IgnoreReason)                     {}
func (discard) SnapshotFutureDated()                                  {}
func (discard) SetPending(int, int)                                   {}
func (discard) SetAssumptions([]attribution.ServerAssumptions)        {}

// Config configures an Ingester. A zero field means the same as 0 in its
// flag: a setting that can be off (Settle, MaxDelay, MaxObserveDelay) is
// off at zero, any other takes its Default* constant. The flags of
// cmd/delta-exporter default to these constants, so the values pass
// through unchanged and a negative value is never needed.
type Config struct {
	// FS is the snapshot directory. It must implement fs.ReadDirFS; when
	// it implements fs.ReadLinkFS (os.DirFS does), symlinks are refused;
	// NewDirFS also opens without following a link or blocking on a FIFO.
	FS     fs.FS
	Logger *slog.Logger
	// Results receives every decided request, in the order decided; nil
	// discards them.
	Results func(attribution.Result)
	// Metrics counts what became of each file and how many requests are
	// held; nil discards the counts.
	Metrics Metrics
	// MaxBytes: larger files are rejected (too_large); zero:
	// DefaultMaxBytes.
	MaxBytes int64
	// Settle: a file modified less than Settle ago is read later, so a
	// writer that writes in place is less likely to be read half-way
	// (one dated ahead of Now: once two looks Settle apart saw no
	// change, skew.go). Zero: read at once (the flag's default is
	// DefaultSettle).
	Settle time.Duration
	// IncompleteGrace: a file that is incomplete (no final newline, a
	// series cut short) is retried until it is this old, then rejected;
	// zero: DefaultIncompleteGrace.
	IncompleteGrace time.Duration
	// PairingTTL: a before without an after (or the reverse) is given up
	// as unpaired after this long; zero: DefaultPairingTTL.
	PairingTTL time.Duration
	// MaxDelay: how long a paired request may wait for overlapping
	// requests before it is decided with what is known. Zero: decided
	// at once (the flag's default is DefaultMaxDelay).
	MaxDelay time.Duration
	// MaxObserveDelay is assumption A6's bound (docs/attribution.md): how
	// long after the end of the interval a value measures the server
	// observes it. It lets the time checks of capture-written directories
	// bound values from below. Zero: no such checks (the flag's default
	// is DefaultMaxObserveDelay).
	MaxObserveDelay time.Duration
	// TrustAfters: the user vouches that every after snapshot was taken
	// once its request's response had ended, as capture's are
	// (--attribution.trust-afters). Without it, the finish windows of
	// pairs that capture did not vouch for are kept out of the
	// attribution and their values withheld as unvouched
	// (docs/attribution.md, "What A1 rests on").
	TrustAfters bool
	// Watched: a watcher also hands files over (File, Ingest), in the
	// order they are written. A Scan without all then leaves the files
	// written while it listed the directory to the watcher
	// (writtenDuring); a caller that only scans leaves it unset.
	Watched bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Snapshots, when not nil, receives every usable snapshot (before,
	// after, first, timeline), in the order files are applied, and the
	// names of files gone from the directory: the population families
	// read the server's histograms from it.
	Snapshots SnapshotObserver
	// Progress, optional, is called after each file is read and applied:
	// serve's liveness signal, so that a long scan is not a stall.
	Progress func()
	// Restore, optional: what an earlier exporter process learned about
	// server processes' assumptions (serve's <state file>.assumptions),
	// preloaded before any file is read (attribution.Timeline.Restore):
	// an assumption contradicted on a server process stays contradicted
	// though retention deleted the files that showed it. report, which
	// decides one directory in one batch, restores nothing.
	Restore []attribution.ServerAssumptions
	// Stop, optional: once closed, a scan reads no further file and
	// returns ErrStopped, and the files it was reading are dropped
	// (report's interrupt: its goroutine ends instead of finishing the
	// directory). An ingester that stopped is not used again.
	Stop <-chan struct{}
}

// ErrStopped is Scan's error once Config.Stop is closed.
var ErrStopped = errors.New("ingest stopped")

// SnapshotObserver receives usable snapshots (serve and report hand them
// to a population.Population). They come in batches, so that an observer
// that takes a lock (serve's takes the state journal's) takes it once per
// batch: the snapshots applied since the last call, in order, and the
// names of files a scan no longer lists. A batch is handed on before
// requests are decided and when it holds snapshotBatch snapshots.
// Neither slice nor the snapshots may be kept after the call.
type SnapshotObserver interface {
	ObserveSnapshots(seen []SeenSnapshot, gone []string)
}

// SeenSnapshot is one usable snapshot file.
type SeenSnapshot struct {
	Name     string
	Time     time.Time // the time in its name
	Snapshot *parser.Snapshot
}

// snapshotBatch bounds the snapshots held for the observer: a parsed
// snapshot is a few kB, and a scrape shows them only once handed on.
const snapshotBatch = 64

// seenSnapshot queues a snapshot for Config.Snapshots.
func (in *Ingester) seenSnapshot(name string, at time.Time, s *parser.Snapshot) {
	in.seen = append(in.seen, SeenSnapshot{name, at, s})
	if len(in.seen) >= snapshotBatch {
		in.flushSnapshots()
	}
}

// flushSnapshots hands the queued snapshots and gone names on.
func (in *Ingester) flushSnapshots() {
	if in.cfg.Snapshots == nil || len(in.seen) == 0 && len(in.gone) == 0 {
		return
	}
	in.cfg.Snapshots.ObserveSnapshots(in.seen, in.gone)
	clear(in.seen) // not kept: the snapshots can be collected
	in.seen, in.gone = in.seen[:0], in.gone[:0]
}

// The defaults of Config. Those of settings that can be off are the
// flags' defaults; the others are also what a zero field means.
const (
	DefaultMaxBytes        = snapfile.DefaultMaxBytes
	DefaultSettle          = 10 * time.Millisecond
	DefaultIncompleteGrace = 5 * time.Second
	DefaultPairingTTL      = 10 * time.Minute
	DefaultMaxDelay        = 5 * time.Second
	// DefaultMaxObserveDelay: vLLM V1 observes in the same synchronous
	// stretch of its output handler that took the timestamp, which
	// yields to other work only for batches of more than 128 outputs;
	// 50 ms leaves a wide margin.
	DefaultMaxObserveDelay = 50 * time.Millisecond
)

// half is what is known of a request before it is paired: a few numbers
// per series (the reduced points), not the files.
type half struct {
	before, after, first  *attribution.Point
	beforeName, afterName string
	beforeTime, afterTime time.Time
	tokens                *attribution.Tokens
	serverQueue           *float64 // the server's own queue time, seconds (info's server_metrics)
	bad                   bool     // one of its snapshots was unusable
	finishUnobserved      bool
	afterObserved         bool      // capture's info: after_observed true
	lastByte              time.Time // capture's info: last_byte_at
	firstByte             time.Time // capture's info: first_byte_at of a stream
	maxTTFT, maxE2E       float64   // capture's timing bounds, seconds; 0: none
	arrivalLo, arrivalHi  time.Time // capture's bounds on the server's arrival
	proxy                 attribution.ProxyTimes
	dupBefore, dupAfter   bool
	// serverID: capture's info names the server's id, which the
	// request's file names carry with a suffix (info.go).
	serverID string
	// abandoned: capture's info says no after will come (after_error).
	abandoned bool
}

type fileState struct {
	size    int64
	modTime time.Time
	done    bool
	// read: a regular file whose whole content was read and accounted for
	// (used, or rejected for what it holds). Only such files are ever
	// offered to retention (Settled).
	read bool
	// changed: it changed after it was read (logged and counted once).
	changed bool
	// seenAt, for a file dated in the future by another clock (skew.go):
	// when this size and modification time were first seen, on ours.
	seenAt time.Time
	// firstSeen: when the ingester first looked at the file, on our clock
	// (Settled dates a file named on a clock ahead of ours by it).
	firstSeen time.Time
	// skewed: counted and logged as dated in the future (once).
	skewed bool
	// deferredAt: when it was first deferred, on our clock (held).
	deferredAt time.Time
}

// Ingester reads, pairs and attributes. Not safe for concurrent use.
type Ingester struct {
	cfg      Config
	log      *slog.Logger
	metrics  Metrics
	tl       *attribution.Timeline
	waiting  *waiting             // unpaired halves
	decided  map[string]time.Time // request ids decided, to reject ids seen again
	decidedQ []decidedAt          // the same, in the order decided (forgetDecided)
	files    map[string]*fileState
	deferred map[string]parser.Name // files to look at again (settling, incomplete)
	// skewLogged: a file dated in the future was logged (once);
	// warnedUnvouched: the unvouched hint was (warnUnvouched).
	skewLogged, warnedUnvouched bool
	// finishing: no more waiting, files are taken as they are (Finish).
	finishing bool
	buf       []byte // read buffer of the sequential path

	// serverIDs: the id to publish for a request handed on (to the
	// timeline or a result) whose names carry capture's suffix; taken
	// back when its result is published.
	serverIDs map[string]string
	// assumed is the timeline's assumption change count last published.
	assumed uint64
	// relistAt: a Scan left files written while it listed
	// (writtenDuring); Tick lists again from then on, in case their
	// watcher events were lost (an overflow, poll mode).
	relistAt time.Time
	// seen and gone are queued for Config.Snapshots (flushSnapshots).
	seen []SeenSnapshot
	gone []string
}

// New returns an Ingester.
func New(cfg Config) *Ingester {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PairingTTL <= 0 {
		cfg.PairingTTL = DefaultPairingTTL
	}
	if cfg.IncompleteGrace <= 0 {
		cfg.IncompleteGrace = DefaultIncompleteGrace
	}
	tl := attribution.NewTimeline()
	tl.MaxObserveDelay = max(0, cfg.MaxObserveDelay)
	tl.TrustAfters = cfg.TrustAfters
	if len(cfg.Restore) > 0 {
		tl.Restore(cfg.Restore)
	}
	if cfg.Results == nil {
		cfg.Results = func(attribution.Result) {}
	}
	in := &Ingester{
		cfg: cfg, log: cfg.Logger.With("component", "ingest"), metrics: cfg.Metrics,
		tl: tl, waiting: newWaiting(tl, cfg.PairingTTL), decided: map[string]time.Time{}, serverIDs: map[string]string{},
		files: map[string]*fileState{}, deferred: map[string]parser.Name{},
	}
	if in.metrics == nil {
		in.metrics = discard{}
	}
	// Once per server process and assumption: the timeline reports each
	// contradiction once.
	tl.OnContradiction = func(c attribution.Contradiction) {
		// Which families move together differs between servers (vLLM V1
		// observes queue at finish, not at the first token): learning it
		// is routine. A value assumption that fails is worth a warning.
		level := slog.LevelWarn
		if c.Assumption.IsMoment() {
			level = slog.LevelInfo
		}
		in.log.Log(context.Background(), level, "attribution assumption contradicted by the data; no longer used for this server process",
			"assumption", c.Assumption.Name(), "server_start", c.Epoch, "request_id", c.RequestID, "evidence", c.Detail,
			"published_before", c.PublishedBefore)
	}
	return in
}

// Assumptions returns what the data said so far about each server
// process's assumptions.
func (in *Ingester) Assumptions() []attribution.ServerAssumptions { return in.tl.Assumptions() }

// Scan lists the directory and ingests every file not seen before, in
// the order of the times in their names. With all set (the initial scan,
// a report) it then decides every paired request the files it deferred
// may not change: the scan saw everything on disk. Otherwise requests are decided as in Tick, and with
// Config.Watched, files written while the directory was listed are left
// to the watcher (writtenDuring).
func (in *Ingester) Scan(all bool) error {
	start := in.cfg.Now()
	entries, err := fs.ReadDir(in.cfg.FS, ".")
	if err != nil {
		return err
	}
	end := in.cfg.Now()
	var items []named
	present := make(map[string]bool, len(entries))
	in.relistAt = time.Time{}
	for _, e := range entries {
		present[e.Name()] = true
		if fsState := in.files[e.Name()]; (fsState != nil && fsState.done) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		n, err := parser.ParseName(e.Name())
		if err != nil {
			if _, seen := in.files[e.Name()]; !seen {
				in.files[e.Name()] = &fileState{done: true}
				in.metrics.FileIgnored(snapfile.IgnoredName)
				in.log.Debug("ignoring file", "file", e.Name(), "err", err)
			}
			continue
		}
		if !all && in.cfg.Watched && in.files[e.Name()] == nil && writtenDuring(e, start, end) {
			// Listed again once written before a listing begins.
			in.relistAt = in.cfg.Now().Add(listingMargin)
			continue
		}
		items = append(items, in.named(e.Name(), n))
	}
	// Forget files that are gone, so the map follows the directory.
	for name := range in.files {
		if !present[name] {
			delete(in.files, name)
			delete(in.deferred, name)
			if in.cfg.Snapshots != nil {
				in.gone = append(in.gone, name)
			}
		}
	}
	sortByTime(items)
	// In chunks, deciding between them what no open request overlaps any
	// more: memory then follows the requests in flight, not the size of
	// the directory. Files are in time order, so a later file cannot open
	// a request that overlaps what is decided (if name times lie, the
	// request is decided with less known: sound, maybe less exact).
	in.loadAll(len(items), func(i int) named { return items[i] },
		func(i int) {
			if all && i%512 == 511 && !in.stopped() {
				in.decide(attribution.ResolveOptions{Now: in.cfg.Now(), MaxDelay: math.MaxInt64, Held: in.held()})
			}
		})
	if in.stopped() {
		return ErrStopped
	}
	if all {
		// But what the files deferred may change (settling, or
		// incomplete while fresh): those wait for them, as in Decide.
		in.decide(attribution.ResolveOptions{All: true, Now: in.cfg.Now(), MaxDelay: in.cfg.MaxDelay, Held: in.held()})
	} else {
		in.Decide()
	}
	return nil
}

// listingMargin covers the lag of a filesystem's coarse timestamps (a
// kernel tick) behind the clock Scan reads before listing.
const listingMargin = 100 * time.Millisecond

// writtenDuring: a file new to the ingester that was written while the
// directory was being listed, or just before. A listing is not a snapshot
// of the directory: it is read in several calls, in the filesystem's
// order (hash order on ext4), and a file renamed in between two calls is
// listed or not depending on where it falls. So a later file can be listed
// while an earlier one is missed: the after of a request listed, the
// before of a request that overlaps it missed, and the request decided
// without knowing the other was open (withheld where report, which sees
// both, publishes it exact). Such files are left to their watcher event,
// which comes in the order they were written (or, if it was lost, to the
// next listing).
// A file written before the listing began was complete before it, and so
// was every file written before it: those are all listed. A time past
// the end of the listing is another clock's (a network volume's), not a
// write during it: such a file is taken as without this check (and
// settled on our clock, skew.go), not listed again and again.
func writtenDuring(e fs.DirEntry, start, end time.Time) bool {
	info, err := e.Info()
	if err != nil {
		return false // gone again, or unreadable: the read says which
	}
	t := info.ModTime()
	return !t.Before(start.Add(-listingMargin)) && !t.After(end.Add(listingMargin))
}

// stageOrder sorts files with equal timestamps in the order they are
// written: info before after (capture writes it first), before first.
func stageOrder(s parser.Stage) int {
	return strings.Index("btfia", string(s[0]))
}

// File ingests one file by name (a watcher event) and decides what is
// ready. Names that are not snapshots are counted once and ignored.
func (in *Ingester) File(name string) {
	in.Ingest(name)
	in.Decide()
}

// Decide decides the paired requests that are ready (see
// attribution.ResolveOptions). While files are deferred (settling or
// incomplete), the requests they may change are decided only past
// --attribution.max-delay (held): a deferred file may be a before that
// overlaps them.
func (in *Ingester) Decide() {
	in.decide(attribution.ResolveOptions{Now: in.cfg.Now(), MaxDelay: in.cfg.MaxDelay, Held: in.held()})
}

// Ingest ingests one file by name without deciding anything: a caller
// with a batch of events ingests them all, then calls Decide once, so
// that requests are decided with every file of the batch known.
func (in *Ingester) Ingest(name string) {
	if strings.HasPrefix(name, ".") {
		// Writers' temporary files and folders (".name.tmp",
		// ".capture-tmp") by convention: not snapshots, not worth a count.
		return
	}
	if st := in.files[name]; st != nil && st.done {
		in.checkModified(name, st)
		return
	}
	n, err := parser.ParseName(name)
	if err != nil {
		if _, seen := in.files[name]; !seen {
			in.files[name] = &fileState{done: true}
			in.metrics.FileIgnored(snapfile.IgnoredName)
		}
		return
	}
	in.file(name, n)
}

// checkModified warns, once per file, when a file changes after it was
// ingested: its writer does not write to a temporary name and rename.
func (in *Ingester) checkModified(name string, st *fileState) {
	if st.modTime.IsZero() {
		return
	}
	info, err := lstat(in.cfg.FS, name)
	if err != nil || (info.Size() == st.size && info.ModTime().Equal(st.modTime)) {
		return
	}
	st.size, st.modTime = info.Size(), info.ModTime()
	if st.changed {
		return
	}
	// Once per file: a file still being written changes on every write.
	st.changed = true
	in.metrics.FileIgnored(snapfile.IgnoredChange)
	in.log.Warn("snapshot file changed after it was ingested; the change is ignored: write snapshots to a temporary name and rename them", "file", name)
}

// Tick retries deferred files, expires unpaired halves and decides
// requests whose wait is over. Call it periodically.
func (in *Ingester) Tick() {
	now := in.cfg.Now()
	if len(in.deferred) > 0 {
		names := make([]string, 0, len(in.deferred))
		for name := range in.deferred {
			names = append(names, name)
		}
		in.retry(names)
	}
	in.waiting.expire(now, in.givenUp)
	in.forgetDecided(now)
	if !in.relistAt.IsZero() && !now.Before(in.relistAt) {
		// Once: a listing that fails is the next rescan's to report.
		in.relistAt = time.Time{}
		err := in.Scan(false) // decides
		if err == nil {
			return
		}
		in.log.Debug("cannot list the snapshot directory again", "err", err)
	}
	in.Decide()
}

// Finish decides everything still held, as at the end of a report: paired
// requests are attributed, halves without a partner are unpaired.
func (in *Ingester) Finish() {
	in.finishing = true
	defer func() { in.finishing = false }()
	names := make([]string, 0, len(in.deferred))
	for name := range in.deferred {
		names = append(names, name)
	}
	in.retry(names)
	in.decide(attribution.ResolveOptions{All: true})
	in.waiting.drain(in.givenUp)
	in.updatePending()
}

// givenUp publishes as unpaired a half whose partner will not come
// (expired, abandoned, or at the end of a report). A half with an info
// sidecar only (capture abandoned the pair) leaves no result.
func (in *Ingester) givenUp(id string, h *half) {
	if h.hasSnapshot() {
		in.publish(attribution.NewUnpaired(h.request(id)))
	}
}

func (in *Ingester) decide(opt attribution.ResolveOptions) {
	in.flushSnapshots()
	results := in.tl.Resolve(opt)
	sort.Slice(results, func(i, j int) bool {
		if !results[i].BeforeTime.Equal(results[j].BeforeTime) {
			return results[i].BeforeTime.Before(results[j].BeforeTime)
		}
		return results[i].RequestID < results[j].RequestID
	})
	// The states first: a contradiction reaches Metrics (serve makes it
	// durable there) before any value decided with it is published.
	if in.tl.AssumptionChanges() != in.assumed {
		in.assumed = in.tl.AssumptionChanges()
		in.metrics.SetAssumptions(in.tl.Assumptions())
	}
	for _, r := range results {
		in.publish(r)
	}
	if len(results) > 0 {
		in.tl.Prune()
	}
	in.updatePending()
}

func (in *Ingester) publish(r attribution.Result) {
	if r.RequestID != "" && r.Outcome != attribution.Unpaired {
		now := in.cfg.Now()
		in.decided[r.RequestID] = now
		in.decidedQ = append(in.decidedQ, decidedAt{r.RequestID, now})
	}
	// Files are keyed by the id in their names, which is unique; the
	// server's id is what its logs and the client know.
	if sid, ok := in.serverIDs[r.RequestID]; ok {
		delete(in.serverIDs, r.RequestID)
		r.RequestID = sid
	}
	in.warnUnvouched(r)
	in.cfg.Results(r)
}

// warnUnvouched logs once, at the first request whose values were
// withheld because nobody vouched for its snapshots, what the user can do
// about it: a directory of pairs from another tool otherwise publishes no
// per-request value, and the reason alone does not say why.
func (in *Ingester) warnUnvouched(r attribution.Result) {
	if in.warnedUnvouched {
		return
	}
	for _, v := range r.Values {
		if v.Reason == attribution.ReasonUnvouched {
			in.warnedUnvouched = true
			in.log.Warn("per-request values withheld: no snapshot tool vouched that the after snapshots follow the response (capture's info sidecars do); if yours takes each after once the response has ended, pass --attribution.trust-afters",
				"request_id", r.RequestID, "reason", attribution.ReasonUnvouched)
			return
		}
	}
}

// request is h's request once paired, handed on to the timeline or a
// result; the server's id, if the names carry a suffix, is kept for its
// publication. (An unpaired half is published under its name's id: it
// has no value, hence no exemplar, and the id finds its files.)
func (in *Ingester) request(id string, h *half) *attribution.Request {
	if h.serverID != "" {
		in.serverIDs[id] = h.serverID
	}
	return h.request(id)
}

func (in *Ingester) updatePending() {
	in.metrics.SetPending(in.waiting.len(), in.tl.Pending())
}

// hasSnapshot: a before or after was seen. A half with an info sidecar
// only (capture abandoned the pair) is dropped without a result.
func (h *half) hasSnapshot() bool { return h.beforeName != "" || h.afterName != "" }

func (h *half) request(id string) *attribution.Request {
	return &attribution.Request{ID: id, Before: h.before, After: h.after, First: h.first, Tokens: h.tokens, ServerQueue: h.serverQueue,
		FinishUnobserved: h.finishUnobserved, AfterObserved: h.afterObserved, LastByte: h.lastByte, FirstByte: h.firstByte, MaxTTFT: h.maxTTFT, MaxE2E: h.maxE2E,
		ArrivalLo: h.arrivalLo, ArrivalHi: h.arrivalHi, Proxy: h.proxy,
		BeforeTime: h.beforeTime, AfterTime: h.afterTime, BeforeFile: h.beforeName, AfterFile: h.afterName}
}

// retry loads deferred files again, in the order they were written.
func (in *Ingester) retry(names []string) {
	var items []named
	for _, name := range names {
		delete(in.deferred, name)
		if st := in.files[name]; st != nil && st.done {
			continue
		}
		if n, err := parser.ParseName(name); err == nil {
			items = append(items, in.named(name, n))
		}
	}
	sortByTime(items)
	in.loadAll(len(items), func(i int) named { return items[i] }, nil)
}

// named is a file name, what it says, and what the ingester knew of the
// file before this look (load runs off the ingester's goroutine, so it
// is given what it needs).
type named struct {
	name string
	n    parser.Name
	prev fileState
}

// named returns the file's name with what is known of it.
func (in *Ingester) named(name string, n parser.Name) named {
	it := named{name: name, n: n}
	if st := in.files[name]; st != nil {
		it.prev = *st
	}
	return it
}

// sortByTime orders files as they were written: by the time in their
// names, then by stage.
func sortByTime(items []named) {
	sort.SliceStable(items, func(i, j int) bool {
		if !items[i].n.Time.Equal(items[j].n.Time) {
			return items[i].n.Time.Before(items[j].n.Time)
		}
		return stageOrder(items[i].n.Stage) < stageOrder(items[j].n.Stage)
	})
}

// stopped reports whether Config.Stop is closed; safe from any goroutine.
func (in *Ingester) stopped() bool {
	select {
	case <-in.cfg.Stop:
		return true
	default:
		return false
	}
}

// loadAll loads files 0..count-1 on all cores and applies them in order.
// Reading and parsing dominate ingest cost and are independent per file;
// applying is cheap and must be sequential. At most a small window of
// loaded files is held at once, so memory does not grow with the
// directory (a loaded file is a few numbers per series, not its bytes).
//
// applied, when not nil, is called after file i is applied.
func (in *Ingester) loadAll(count int, item func(int) named, applied func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > count {
		workers = count
	}
	if workers <= 1 {
		for i := 0; i < count && !in.stopped(); i++ {
			in.apply(in.load(item(i), in.cfg.Now(), in.finishing, &in.buf))
			if applied != nil {
				applied(i)
			}
		}
		return
	}
	// One read buffer per worker: allocating and zeroing a fresh buffer
	// per file costs about as much as parsing it. Nothing loaded keeps a
	// reference into the buffer (the parser copies what it keeps; info
	// sidecars are copied).
	now, finishing := in.cfg.Now(), in.finishing
	window := 8 * workers
	slots := make([]chan loaded, window)
	for i := range slots {
		slots[i] = make(chan loaded, 1)
	}
	next := make(chan int)
	drained := make(chan struct{}, window)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for i := range next {
				if in.stopped() {
					// Every handed-out index still fills its slot, so
					// the loop below drains without reading the file.
					slots[i%window] <- loaded{}
					continue
				}
				slots[i%window] <- in.load(item(i), now, finishing, &buf)
			}
		}()
	}
	go func() {
		// Hand out index i only once slot i%window has been drained, so
		// a slot never holds two results.
		for i := 0; i < count; i++ {
			if i >= window {
				<-drained
			}
			next <- i
		}
		close(next)
	}()
	for i := 0; i < count; i++ {
		if l := <-slots[i%window]; !in.stopped() {
			in.apply(l)
		}
		drained <- struct{}{}
		if applied != nil {
			applied(i)
		}
	}
	wg.Wait()
}
