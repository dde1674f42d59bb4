package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/delta-exporter/delta-exporter/collector"
	"github.com/delta-exporter/delta-exporter/internal/demo"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/recent"
	"github.com/delta-exporter/delta-exporter/internal/serve"
	"github.com/delta-exporter/delta-exporter/internal/watch"
	"github.com/delta-exporter/delta-exporter/internal/web"
)

// serveCommand is the default command: watch a snapshot directory and
// serve per-request histograms.
func serveCommand(app *kingpin.Application, e *env) (string, func(context.Context) int) {
	c := app.Command("serve", "Watch a snapshot directory and serve exact per-request histograms on /metrics (the default command).").Default()
	var cfg serve.Config
	c.Flag("snapshots.dir", "Directory of {request_id}_{before|after}_{YYYYMMDD_HHMMSS_micro}.txt snapshots. Empty: serve the embedded demo snapshots.").
		StringVar(&cfg.Dir)
	c.Flag("web.telemetry-path", "Path under which to expose metrics.").Default(web.DefaultTelemetryPath).StringVar(&cfg.TelemetryPath)
	c.Flag("web.disable-exporter-metrics", "Exclude the Go runtime and process metrics of the exporter itself.").BoolVar(&cfg.DisableExporterMetrics)
	c.Flag("web.max-requests", "Maximum number of concurrent scrapes (0: no limit).").Default(strconv.Itoa(serve.DefaultMaxRequests)).IntVar(&cfg.MaxRequests)
	c.Flag("web.scrape-timeout", "Maximum time to answer one scrape (0: no limit).").Default(durationDefault(serve.DefaultScrapeTimeout)).DurationVar(&cfg.ScrapeTimeout)
	maxBytes := maxBytesFlag(c)
	c.Flag("snapshot.settle", "Read a file only once it has not changed for this long (writers should write a temporary name and rename).").
		Default(durationDefault(ingest.DefaultSettle)).DurationVar(&cfg.Ingest.Settle)
	c.Flag("snapshot.incomplete-grace", "Retry an incomplete file (no final newline, a series cut short) until it is this old, then reject it.").
		Default(durationDefault(ingest.DefaultIncompleteGrace)).DurationVar(&cfg.Ingest.IncompleteGrace)
	c.Flag("pairing.ttl", "Give up on a before without an after (or the reverse) after this long.").
		Default(durationDefault(ingest.DefaultPairingTTL)).DurationVar(&cfg.Ingest.PairingTTL)
	c.Flag("attribution.max-delay", "How long a paired request may wait at most for overlapping requests to finish before it is decided with what is known (a busy server's group is cut then: members younger than half of it wait on).").
		Default(durationDefault(ingest.DefaultMaxDelay)).DurationVar(&cfg.Ingest.MaxDelay)
	observeDelayFlag(c, &cfg.Ingest.MaxObserveDelay)
	trustAftersFlag(c, &cfg.Ingest.TrustAfters)
	c.Flag("labels.max-models", "Maximum distinct model_name values; further models are published as model_name=\"other\".").
		Default(strconv.Itoa(collector.DefaultMaxModels)).IntVar(&cfg.MaxModels)
	c.Flag("exemplars.max-per-series", "Exemplars (request ids) each native histogram series keeps between scrapes, newest first: set it to the peak number of requests decided per model in one scrape interval. Each costs about 80 bytes of every protobuf scrape, per family.").
		Default(strconv.Itoa(collector.DefaultMaxExemplars)).IntVar(&cfg.MaxExemplars)
	dataDir := c.Flag("data.dir", "Directory for the exporter's own files (the state file). It must survive restarts as long as the snapshots do; it may be outside a read-only snapshot directory.").
		Default("data").String()
	stateFile := c.Flag("state.file", "Durable record of the requests Prometheus may have seen, so that a restart neither counts a request twice nor loses one (default: <data.dir>/delta-exporter.state). \"none\": no record; a restart publishes every pair still on disk again.").
		String()
	var retentionAge model.Duration
	c.Flag("snapshots.retention", "Delete ingested snapshot files older than this (e.g. 7d); only files of decided requests, never other files. 0: keep everything.").
		Default("0s").SetValue(&retentionAge)
	retentionSize := c.Flag("snapshots.retention-size", "Delete the oldest ingested requests' files while the snapshot files total more than this (e.g. 20GiB). 0: no limit.").
		Default("0").Bytes()
	mode := c.Flag("watch.mode", "How to notice new files: auto (inotify, else polling), inotify, poll.").Default("auto").Enum("auto", "inotify", "poll")
	c.Flag("watch.rescan-interval", "Full directory rescan interval with inotify (events are only hints).").Default(durationDefault(watch.DefaultRescanInterval)).DurationVar(&cfg.Watch.RescanInterval)
	c.Flag("watch.poll-interval", "Rescan interval in poll mode and while the directory is missing.").Default(durationDefault(watch.DefaultPollInterval)).DurationVar(&cfg.Watch.PollInterval)
	c.Flag("web.enable-pprof", "Serve the Go profiler under /debug/pprof/ (off: profiles expose internals and cost CPU while they run).").
		BoolVar(&cfg.EnablePprof)
	c.Flag("slo.config", "YAML file of latency objectives (docs/slo.md): each request is judged met, missed or unknown per objective in llm_request_slo_total. Reloaded on SIGHUP and POST /-/reload.").
		PlaceHolder("FILE").StringVar(&cfg.SLOFile)
	c.Flag("web.requests-page.size", fmt.Sprintf("How many of the last decided requests /requests and /requests.json show (at most %d).", recent.MaxSize)).
		Default(strconv.Itoa(recent.DefaultSize)).IntVar(&cfg.RecentRequests)
	cfg.Web = kingpinflag.AddFlags(c, ":9464")

	return c.FullCommand(), func(ctx context.Context) int {
		logger := e.logger()
		if cfg.MaxExemplars < 1 {
			fmt.Fprintf(e.stderr, "delta-exporter: --exemplars.max-per-series must be at least 1, got %d\n", cfg.MaxExemplars)
			return 1
		}
		cfg.Logger = logger
		if cfg.RecentRequests < 1 || cfg.RecentRequests > recent.MaxSize {
			fmt.Fprintf(e.stderr, "delta-exporter: --web.requests-page.size=%d: want 1 to %d\n", cfg.RecentRequests, recent.MaxSize)
			return 2
		}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		cfg.Reload = hup
		cfg.Ingest.MaxBytes = maxBytes()
		cfg.Watch.Mode = watch.Mode(*mode)
		cfg.Retention.MaxAge, cfg.Retention.MaxBytes = time.Duration(retentionAge), int64(*retentionSize)
		switch {
		case *stateFile == "none":
		case *stateFile != "":
			cfg.StateFile = *stateFile
		default:
			cfg.StateFile = filepath.Join(*dataDir, "delta-exporter.state")
		}
		if cfg.Dir == "" {
			cfg.FS = demo.FS()
			cfg.StateFile = ""
			// The demo's pairs come from the simulator, which takes each
			// after once the request's finish is recorded
			// (internal/demo/README.md).
			cfg.Ingest.TrustAfters = true
		}
		logger.Info("starting delta-exporter", "version", version.Info(), "snapshots_dir", cfg.Dir, "state_file", cfg.StateFile)
		start := time.Now()
		if err := serve.Run(ctx, cfg); err != nil {
			fmt.Fprintf(e.stderr, "delta-exporter: %v\n", err)
			return 1
		}
		logger.Info("stopped", "uptime", time.Since(start).Round(time.Second).String())
		return 0
	}
}
