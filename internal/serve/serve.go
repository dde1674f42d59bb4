// Package serve runs the exporter: it wires the watcher, the ingester and
// the collector together and serves /metrics. The ingest loop is one
// goroutine that owns the ingester; the HTTP side only reads the registry.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	toolkit "github.com/prometheus/exporter-toolkit/web"

	"github.com/delta-exporter/delta-exporter/collector"
	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/internal/recent"
	"github.com/delta-exporter/delta-exporter/internal/retention"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/internal/state"
	"github.com/delta-exporter/delta-exporter/internal/watch"
	"github.com/delta-exporter/delta-exporter/internal/web"
)

// Config configures Run. A zero field means the same as 0 in its flag: a
// setting that can be off (MaxRequests, ScrapeTimeout) is off at zero, any
// other takes its default (the Default* constants here and in the packages
// named). The flags of cmd/delta-exporter default to the same constants,
// so the values pass through unchanged.
type Config struct {
	// Dir is the snapshot directory, watched for new files. When empty,
	// FS is read once instead (the embedded demo snapshots).
	Dir string
	FS  fs.FS

	Ingest ingest.Config // FS, Logger, Results, Metrics and Now are filled in by Run
	Watch  watch.Config  // Dir, Logger and Counter are filled in by Run
	// Retention deletes settled snapshot files (MaxAge, MaxBytes); Dir,
	// Logger and Metrics are filled in by Run. Only with Dir.
	Retention retention.Config

	// StateFile is the durable record of the requests Prometheus may have
	// seen (package state); "" means none. Only with Dir.
	StateFile string
	// StateForgetAfter: how long an entry of the record, or a population
	// hull, outlives its files (state.Config.ForgetAfter,
	// population.Config.ForgetAfter); zero: their default.
	StateForgetAfter time.Duration

	// SLOFile holds the latency objectives (package slo); "" means none.
	// It is read again on every value of Reload and on POST /-/reload.
	SLOFile string
	Reload  <-chan os.Signal
	// RecentRequests is how many decided requests /requests shows; zero:
	// recent.DefaultSize.
	RecentRequests int

	MaxModels    int // collector.Config: zero means collector.DefaultMaxModels
	MaxExemplars int // per native histogram series; zero: collector.DefaultMaxExemplars
	// TelemetryPath serves /metrics; zero: web.DefaultTelemetryPath.
	TelemetryPath          string
	DisableExporterMetrics bool
	// MaxRequests bounds concurrent scrapes and ScrapeTimeout one scrape;
	// zero: no bound (the flags' defaults are DefaultMaxRequests and
	// DefaultScrapeTimeout).
	MaxRequests   int
	ScrapeTimeout time.Duration
	// TickInterval is how often held requests are reconsidered; zero:
	// DefaultTickInterval.
	TickInterval time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (slow clients);
	// zero: web.DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// EnablePprof serves the Go profiler under /debug/pprof/ and links it
	// from the landing page. Off by default: profiles expose internals and
	// a CPU profile costs the process while it runs.
	EnablePprof bool
	// StallAfter: /-/healthy answers 503 once the ingest loop has made no
	// progress for this long (it beats every tick while idle, and after
	// every file it reads); 0 means DefaultStallAfter.
	StallAfter time.Duration

	Web    *toolkit.FlagConfig
	Logger *slog.Logger
	// Registry, when not nil, is used instead of a new one (tests).
	Registry *prometheus.Registry
	// Ready, when not nil, is closed once the initial scan is done (tests).
	Ready chan<- struct{}
}

// The defaults of Config.
const (
	// DefaultStallAfter: far above any single step of the loop (reading
	// one file of --snapshot.max-bytes, a state file rewrite), far below
	// the time a stuck exporter would go unnoticed without it.
	DefaultStallAfter = time.Minute
	// DefaultTickInterval is short: a file that is still settling is
	// looked at again on the next tick, and must show up on /metrics
	// within ~50 ms.
	DefaultTickInterval  = 10 * time.Millisecond
	DefaultMaxRequests   = 40
	DefaultScrapeTimeout = 10 * time.Second
)

// liveness is the ingest loop's heartbeat, read by /-/healthy and by
// delta_exporter_ingest_heartbeat_timestamp_seconds.
type liveness struct {
	now  func() time.Time
	last atomic.Int64 // unix nanoseconds of the last beat
}

func newLiveness(now func() time.Time) *liveness {
	l := &liveness{now: now}
	l.beat()
	return l
}

func (l *liveness) beat()               { l.last.Store(l.now().UnixNano()) }
func (l *liveness) lastBeat() time.Time { return time.Unix(0, l.last.Load()) }

// stalled reports how long the loop has made no progress, when that is
// more than after.
func (l *liveness) stalled(after time.Duration) (time.Duration, bool) {
	d := l.now().Sub(l.lastBeat())
	return d, d > after
}

// Run serves until ctx is done. It returns an error only when it cannot
// start (bad directory, address in use).
func Run(ctx context.Context, cfg Config) error {
	x, err := build(cfg)
	if err != nil {
		return err
	}
	defer x.close()
	site, err := x.site()
	if err != nil {
		return err
	}
	return x.run(ctx, site)
}

// exporter is what Run wires together before it serves: the collector and
// the other metric families, the state record, retention and the
// ingester. The HTTP side only reads the registry and the record.
type exporter struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry

	coll       *collector.Collector
	objectives *slo.Reloader // nil: no objectives
	journal    *state.Journal
	popRecord  *populationRecord    // nil: no state file
	assumed    *assumptionRecord    // nil: no state file
	ret        *retention.Retention // nil: the snapshots are read once
	ring       *recent.Ring
	in         *ingest.Ingester
	// source says where the snapshots come from (landing page).
	source string

	live  *liveness
	ready atomic.Bool // the initial scan is done
}

// build wires the exporter. What it opened is closed again when it fails.
func build(cfg Config) (_ *exporter, err error) {
	x := &exporter{cfg: cfg, log: cfg.Logger, reg: cfg.Registry, live: newLiveness(time.Now)}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	if x.reg == nil {
		x.reg = prometheus.NewRegistry()
	}
	defer func() {
		if err != nil {
			x.close()
		}
	}()
	log, reg := x.log, x.reg
	if x.coll, err = collector.New(collector.Config{Registerer: reg, MaxModels: cfg.MaxModels, MaxExemplars: cfg.MaxExemplars}); err != nil {
		return nil, err
	}
	// The SLO families exist only with objectives: without them a reload
	// gauge at 0 would read as a refused file.
	var sloMetrics *collector.SLOMetrics
	if cfg.SLOFile != "" {
		if sloMetrics, err = collector.NewSLOMetrics(reg, x.coll); err != nil {
			return nil, err
		}
		if x.objectives, err = slo.NewReloader(cfg.SLOFile, log, sloMetrics.Loaded); err != nil {
			return nil, fmt.Errorf("--slo.config: %w", err)
		}
	}
	stateMetrics, err := collector.NewStateMetrics(reg)
	if err != nil {
		return nil, err
	}
	retentionMetrics, err := collector.NewRetentionMetrics(reg)
	if err != nil {
		return nil, err
	}
	if err := collector.RegisterIngestHeartbeat(reg, x.live.lastBeat); err != nil {
		return nil, err
	}

	// A watched directory has a state record and retention; an fs.FS
	// (the embedded demo) is read once: nothing to remember, nothing to
	// delete.
	var fsys fs.FS
	stateFile := cfg.StateFile
	if cfg.Dir != "" {
		st, err := os.Stat(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("snapshot directory: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("snapshot directory: %s is not a directory", cfg.Dir)
		}
		fsys, x.source = ingest.NewDirFS(cfg.Dir), cfg.Dir
		rc := cfg.Retention
		rc.Dir, rc.Logger, rc.Metrics = cfg.Dir, log, retentionMetrics
		x.ret = retention.New(rc)
	} else {
		fsys, x.source, stateFile = cfg.FS, "embedded demo snapshots", ""
	}

	journal, rep, err := state.OpenJournal(state.Config{Path: stateFile, Logger: log, Metrics: stateMetrics, ForgetAfter: cfg.StateForgetAfter})
	if err != nil {
		return nil, err
	}
	x.journal = journal
	if stateFile != "" && rep.Records > 0 {
		log.Info("requests recorded as published by an earlier run will not be published again", "records", rep.Records)
	}
	pop := population.New(population.Config{Label: x.coll.PopulationLabel, ForgetAfter: cfg.StateForgetAfter})
	if _, err := collector.NewPopulationMetrics(reg, pop); err != nil {
		return nil, err
	}
	var restore []attribution.ServerAssumptions
	if stateFile != "" {
		if x.popRecord, err = openPopulationRecord(stateFile, pop, log, stateMetrics); err != nil {
			return nil, err
		}
		if x.assumed, restore, err = openAssumptionRecord(stateFile, log, stateMetrics); err != nil {
			return nil, err
		}
	}

	size := cfg.RecentRequests
	if size <= 0 {
		size = recent.DefaultSize
	}
	x.ring = recent.NewRing(size)

	ic := cfg.Ingest
	ic.FS, ic.Logger, ic.Progress = fsys, log, x.live.beat
	// watch.Run hands a directory's files over in the order written.
	ic.Watched = cfg.Dir != ""
	ic.Results = journaled{publish: judged{publish: x.coll.Publish, slo: x.objectives, sloMetrics: sloMetrics, ring: x.ring}.Publish, j: journal}.Publish
	ic.Metrics = x.coll
	if x.assumed != nil {
		ic.Metrics, ic.Restore = recordedAssumptions{Metrics: x.coll, rec: x.assumed}, restore
	}
	ic.Snapshots = journaledSnapshots{pop: pop, j: journal, rec: x.popRecord}
	x.in = ingest.New(ic)
	return x, nil
}

// close closes the state record.
func (x *exporter) close() {
	if x.popRecord != nil {
		x.popRecord.close()
	}
	x.assumed.close()
	if x.journal != nil {
		x.journal.Close()
	}
}

// site is the exporter's HTTP surface: /metrics through the state record,
// the recent requests pages and, with objectives, /-/reload.
func (x *exporter) site() (*web.Server, error) {
	stallAfter := x.cfg.StallAfter
	if stallAfter <= 0 {
		stallAfter = DefaultStallAfter
	}
	site, err := web.New(web.Config{
		Flags: x.cfg.Web, Logger: x.log, Registry: x.reg, DisableExporterMetrics: x.cfg.DisableExporterMetrics,
		TelemetryPath: x.cfg.TelemetryPath, Metrics: x.scrapeHandler(),
		// Nothing else shows a loop stuck on a file: /metrics keeps
		// answering from the registry.
		Healthy: func() error {
			if d, stuck := x.live.stalled(stallAfter); stuck {
				return fmt.Errorf("ingest loop stalled: no progress for %s", d.Round(time.Second))
			}
			return nil
		},
		Ready: func() error {
			if !x.ready.Load() {
				return errors.New("initial scan in progress")
			}
			return nil
		},
		Landing: &web.Landing{
			Name:        "delta-exporter",
			Description: "Exact per-request latency histograms from /metrics snapshots of " + x.source,
			Links:       []web.Link{{Address: "/requests", Text: "Recent requests"}, {Address: "/-/ready", Text: "Readiness"}},
		},
		EnablePprof:       x.cfg.EnablePprof,
		ReadHeaderTimeout: x.cfg.ReadHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		ShutdownGrace:     5 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	pages := recent.NewHandlers(x.ring, x.log)
	site.HandleFunc("GET /requests", pages.Page)
	site.HandleFunc("GET /requests.json", pages.JSON)
	if x.objectives != nil {
		site.HandleFunc("/-/reload", reloadHandler(x.objectives))
	}
	return site, nil
}

// scrapeHandler serves the registry through the state record.
func (x *exporter) scrapeHandler() *scrapeHandler {
	h := newScrapeHandler(x.reg, x.journal, x.log, x.cfg.MaxRequests, x.cfg.ScrapeTimeout)
	h.population = x.popRecord
	return h
}

// run serves until ctx is done or either side fails: the ingest loop, the
// objectives' reloads on signal, the HTTP server.
func (x *exporter) run(ctx context.Context, site *web.Server) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loopDone := make(chan error, 1)
	go func() {
		loopDone <- x.loop(ctx)
	}()
	if x.objectives != nil && x.cfg.Reload != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-x.cfg.Reload:
					x.objectives.Reload() // logs and counts a refused file
				}
			}
		}()
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- site.Run(ctx) }()

	// Whichever ends first ends the other; the first error is returned.
	var err error
	select {
	case err = <-srvDone:
		cancel()
		if lerr := <-loopDone; err == nil {
			err = lerr
		}
	case err = <-loopDone:
		cancel()
		if serr := <-srvDone; err == nil {
			err = serr
		}
	}
	return err
}

// markReady is called once the initial scan is done.
func (x *exporter) markReady() {
	x.ready.Store(true)
	if x.cfg.Ready != nil {
		close(x.cfg.Ready)
	}
}

// loop is the single goroutine that owns the ingester. It beats at every
// turn (liveness). A watched directory is scanned on every rescan the
// watcher asks for; an fs.FS is read once.
func (x *exporter) loop(ctx context.Context) error {
	cfg, in, coll, log, beat := x.cfg, x.in, x.coll, x.log, x.live.beat
	tickEvery := cfg.TickInterval
	if tickEvery <= 0 {
		tickEvery = DefaultTickInterval
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	if cfg.Dir == "" {
		coll.Rescan("initial")
		if err := in.Scan(true); err != nil {
			return fmt.Errorf("reading snapshots: %w", err)
		}
		x.markReady()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				in.Tick()
				beat()
			}
		}
	}
	wc := cfg.Watch
	wc.Dir, wc.Logger, wc.Counter = cfg.Dir, log, coll
	events := make(chan watch.Event, 1024)
	watchErr := make(chan error, 1)
	go func() { watchErr <- watch.Run(ctx, wc, events) }()
	scanFailing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-watchErr:
			if err != nil {
				return err
			}
			return nil
		case ev := <-events:
			if !ev.Rescan {
				var more bool
				if ev, more = ingestBatch(in, ev, events); !more {
					continue
				}
			}
			coll.Rescan(ev.Trigger)
			initial := ev.Trigger == "initial"
			err := in.Scan(initial)
			switch {
			case err != nil && !scanFailing:
				// Once per outage, not once per rescan.
				log.Warn("cannot list the snapshot directory; retrying on every rescan", "dir", cfg.Dir, "err", err)
			case err == nil && scanFailing:
				log.Info("snapshot directory readable again", "dir", cfg.Dir)
			}
			scanFailing = err != nil
			if initial {
				x.markReady()
			}
			if err == nil {
				maintain(in, x.journal, x.ret, x.assumed, log)
			}
		case <-tick.C:
			in.Tick()
		}
		beat()
	}
}

// maintain runs after a successful directory scan: retention deletes the
// settled files beyond its limits (only requests the record has made
// durable, and only once the assumption states are: the files may be the
// evidence of a contradiction), then the record forgets requests whose
// files are gone.
func maintain(in *ingest.Ingester, journal *state.Journal, ret *retention.Retention, assumed *assumptionRecord, log *slog.Logger) {
	if ret != nil && assumed.durable() {
		ret.Apply(in.Settled(), in.RetainableBytes(), journal.Queued)
	}
	if err := journal.Compact(in.Known); err != nil {
		log.Warn("cannot compact the state file", "err", err)
	}
}

// ingestBatch ingests ev and every file event already queued behind it,
// then decides once: a burst of files is decided with all of them known,
// whatever order they arrive in. It stops at a rescan event and returns
// it (more=true) for the caller to run.
func ingestBatch(in *ingest.Ingester, ev watch.Event, events <-chan watch.Event) (watch.Event, bool) {
	defer in.Decide()
	in.Ingest(ev.Name)
	for {
		select {
		case next := <-events:
			if next.Rescan {
				return next, true
			}
			in.Ingest(next.Name)
		default:
			return watch.Event{}, false
		}
	}
}
