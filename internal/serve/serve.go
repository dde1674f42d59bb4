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
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/delta-exporter/delta-exporter/collector"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/internal/recent"
	"github.com/delta-exporter/delta-exporter/internal/retention"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/internal/state"
	"github.com/delta-exporter/delta-exporter/internal/watch"
)

// Config configures Run.
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
	// population.Config.ForgetAfter); 0 means the default.
	StateForgetAfter time.Duration

	// SLOFile holds the latency objectives (package slo); "" means none.
	// It is read again on every value of Reload and on POST /-/reload.
	SLOFile string
	Reload  <-chan os.Signal
	// RecentRequests is how many decided requests /requests shows; 0
	// means recent.DefaultSize.
	RecentRequests int

	MaxModels              int
	MaxExemplars           int // per native histogram series (collector.Config)
	TelemetryPath          string
	DisableExporterMetrics bool
	MaxRequests            int           // concurrent scrapes
	ScrapeTimeout          time.Duration // per scrape
	TickInterval           time.Duration // how often held requests are reconsidered; default 10ms
	// ReadHeaderTimeout bounds reading a request's headers (slow clients);
	// 0 means 10s.
	ReadHeaderTimeout time.Duration
	// EnablePprof serves the Go profiler under /debug/pprof/ and links it
	// from the landing page. Off by default: profiles expose internals and
	// a CPU profile costs the process while it runs.
	EnablePprof bool
	// StallAfter: /-/healthy answers 503 once the ingest loop has made no
	// progress for this long (it beats every tick while idle, and after
	// every file it reads); 0 means DefaultStallAfter.
	StallAfter time.Duration

	Web    *web.FlagConfig
	Logger *slog.Logger
	// Registry, when not nil, is used instead of a new one (tests).
	Registry *prometheus.Registry
	// Ready, when not nil, is closed once the initial scan is done (tests).
	Ready chan<- struct{}
}

// DefaultStallAfter is the default of Config.StallAfter: far above any
// single step of the loop (reading one file of --snapshot.max-bytes, a
// state file rewrite), far below the time a stuck exporter would go
// unnoticed without it.
const DefaultStallAfter = time.Minute

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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	coll, err := collector.New(collector.Config{Registerer: reg, MaxModels: cfg.MaxModels, MaxExemplars: cfg.MaxExemplars})
	if err != nil {
		return err
	}
	// The SLO families exist only with objectives: without them a reload
	// gauge at 0 would read as a refused file.
	var objectives *slo.Reloader
	var sloMetrics *collector.SLOMetrics
	if cfg.SLOFile != "" {
		if sloMetrics, err = collector.NewSLOMetrics(reg, coll); err != nil {
			return err
		}
		if objectives, err = slo.NewReloader(cfg.SLOFile, log, sloMetrics.Loaded); err != nil {
			return fmt.Errorf("--slo.config: %w", err)
		}
	}
	stateMetrics, err := collector.NewStateMetrics(reg)
	if err != nil {
		return err
	}
	retentionMetrics, err := collector.NewRetentionMetrics(reg)
	if err != nil {
		return err
	}
	reg.MustRegister(versioncollector.NewCollector("delta_exporter"))
	if !cfg.DisableExporterMetrics {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}

	live := newLiveness(time.Now)
	if err := collector.RegisterIngestHeartbeat(reg, live.lastBeat); err != nil {
		return err
	}
	stallAfter := cfg.StallAfter
	if stallAfter <= 0 {
		stallAfter = DefaultStallAfter
	}

	stateFile := cfg.StateFile
	if cfg.Dir == "" {
		stateFile = "" // the embedded demo is read once: nothing to remember
	}
	journal, rep, err := state.OpenJournal(state.Config{Path: stateFile, Logger: log, Metrics: stateMetrics, ForgetAfter: cfg.StateForgetAfter})
	if err != nil {
		return err
	}
	defer journal.Close()
	if stateFile != "" && rep.Records > 0 {
		log.Info("requests recorded as published by an earlier run will not be published again", "records", rep.Records)
	}
	pop := population.New(population.Config{Label: coll.PopulationLabel, ForgetAfter: cfg.StateForgetAfter})
	if _, err := collector.NewPopulationMetrics(reg, pop); err != nil {
		return err
	}
	var popRecord *populationRecord
	if stateFile != "" {
		if popRecord, err = openPopulationRecord(stateFile, pop, log, stateMetrics); err != nil {
			return err
		}
		defer popRecord.close()
	}
	var ret *retention.Retention
	if cfg.Dir != "" {
		rc := cfg.Retention
		rc.Dir, rc.Logger, rc.Metrics = cfg.Dir, log, retentionMetrics
		ret = retention.New(rc)
	}

	size := cfg.RecentRequests
	if size <= 0 {
		size = recent.DefaultSize
	}
	ring := recent.NewRing(size)

	ic := cfg.Ingest
	ic.Logger, ic.Progress = log, live.beat
	ic.Results = journaled{publish: judged{publish: coll.Publish, slo: objectives, sloMetrics: sloMetrics, ring: ring}.Publish, j: journal}.Publish
	ic.Metrics = coll
	ic.Snapshots = journaledSnapshots{pop: pop, j: journal, rec: popRecord}
	if cfg.Dir != "" {
		st, err := os.Stat(cfg.Dir)
		if err != nil {
			return fmt.Errorf("snapshot directory: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("snapshot directory: %s is not a directory", cfg.Dir)
		}
		ic.FS = ingest.NewDirFS(cfg.Dir)
		ic.Watched = true // watch.Run hands files over in the order written
	} else {
		ic.FS = cfg.FS
	}
	in := ingest.New(ic)

	var ready atomic.Bool
	mux := http.NewServeMux()
	path := cfg.TelemetryPath
	if path == "" {
		path = "/metrics"
	}
	scrape := newScrapeHandler(reg, journal, log, cfg.MaxRequests, cfg.ScrapeTimeout)
	scrape.population = popRecord
	mux.Handle(path, scrape)
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		// Nothing else shows a loop stuck on a file: /metrics keeps
		// answering from the registry.
		if d, stuck := live.stalled(stallAfter); stuck {
			http.Error(w, fmt.Sprintf("ingest loop stalled: no progress for %s", d.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "initial scan in progress", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready")
	})
	pages := recent.NewHandlers(ring, log)
	mux.HandleFunc("GET /requests", pages.Page)
	mux.HandleFunc("GET /requests.json", pages.JSON)
	if objectives != nil {
		mux.HandleFunc("/-/reload", reloadHandler(objectives))
	}
	source := cfg.Dir
	if source == "" {
		source = "embedded demo snapshots"
	}
	landing, err := web.NewLandingPage(web.LandingConfig{
		Name:        "delta-exporter",
		Description: "Exact per-request latency histograms from /metrics snapshots of " + source,
		Version:     version.Info(),
		Links:       []web.LandingLinks{{Address: path, Text: "Metrics"}, {Address: "/requests", Text: "Recent requests"}, {Address: "/-/ready", Text: "Readiness"}},
		// The toolkit's page links to /debug/pprof unless told not to;
		// those links must answer.
		Profiling: strconv.FormatBool(cfg.EnablePprof),
	})
	if err != nil {
		return err
	}
	mux.Handle("/", landing)
	if cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	readHeader := cfg.ReadHeaderTimeout
	if readHeader <= 0 {
		readHeader = 10 * time.Second
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeader,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loopDone := make(chan error, 1)
	go func() {
		loopDone <- loop(ctx, cfg, in, coll, journal, ret, log, live.beat, func() {
			ready.Store(true)
			if cfg.Ready != nil {
				close(cfg.Ready)
			}
		})
	}()
	if objectives != nil && cfg.Reload != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-cfg.Reload:
					objectives.Reload() // logs and counts a refused file
				}
			}
		}()
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- web.ListenAndServe(srv, cfg.Web, log) }()

	select {
	case err = <-srvErr:
		cancel()
		<-loopDone
		return err
	case err = <-loopDone:
		cancel()
	case <-ctx.Done():
		err = <-loopDone
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if serr := srv.Shutdown(shutdownCtx); serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		log.Warn("shutdown", "err", serr)
	}
	if err != nil {
		return err
	}
	return nil
}

// loop is the single goroutine that owns the ingester.
// beat is called at every turn of the loop (liveness).
func loop(ctx context.Context, cfg Config, in *ingest.Ingester, coll *collector.Collector, journal *state.Journal, ret *retention.Retention, log *slog.Logger, beat, markReady func()) error {
	tickEvery := cfg.TickInterval
	if tickEvery <= 0 {
		// Short: a file that is still settling is looked at again on
		// the next tick, and must show up on /metrics within ~50 ms.
		tickEvery = 10 * time.Millisecond
	}
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	if cfg.Dir == "" {
		coll.Rescan("initial")
		if err := in.Scan(true); err != nil {
			return fmt.Errorf("reading snapshots: %w", err)
		}
		markReady()
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
				markReady()
			}
			if err == nil {
				maintain(in, journal, ret, log)
			}
		case <-tick.C:
			in.Tick()
		}
		beat()
	}
}

// maintain runs after a successful directory scan: retention deletes the
// settled files beyond its limits (only requests the record has made
// durable), then the record forgets requests whose files are gone.
func maintain(in *ingest.Ingester, journal *state.Journal, ret *retention.Retention, log *slog.Logger) {
	if ret != nil {
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
