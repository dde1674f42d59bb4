package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/delta-exporter/delta-exporter/internal/capture"
	"github.com/delta-exporter/delta-exporter/internal/web"
)

// captureCommand runs the reverse proxy that writes snapshots around each
// inference request (docs/capture.md).
func captureCommand(app *kingpin.Application, e *env) (string, func(context.Context) int) {
	c := app.Command("capture", "Reverse proxy in front of an OpenAI-compatible server that writes the before/first/after and timeline snapshots of every inference request.")
	var cfg capture.ServeConfig
	upstream := c.Flag("upstream.url", "Base URL of the inference server, e.g. http://127.0.0.1:8000.").Required().URL()
	c.Flag("upstream.metrics-path", "The server's metrics endpoint: a path on --upstream.url, or an absolute URL.").
		Default(capture.DefaultMetricsPath).StringVar(&cfg.Proxy.MetricsPath)
	c.Flag("upstream.bearer-token-file", "File holding the server's API key (vLLM's --api-key), sent as \"Authorization: Bearer <key>\" with every forwarded request in place of the client's header. Needed when --web.config.file asks clients for basic auth: the proxy's own credentials are never forwarded.").
		StringVar(&cfg.UpstreamBearerTokenFile)
	c.Flag("upstream.scrape-timeout", "Maximum time for one scrape of the metrics endpoint.").
		Default(durationDefault(capture.DefaultScrapeTimeout)).DurationVar(&cfg.Proxy.ScrapeTimeout)
	c.Flag("snapshots.dir", "Directory to write snapshots into (created if missing).").Required().StringVar(&cfg.Proxy.Dir)
	c.Flag("upstream.scrape-budget", "Share of one core's time the upstream may spend answering capture's scrapes (0.02: 2 %), measured from each scrape's duration; scrapes wait for it and are shared, timeline scrapes are skipped. 0 disables the bound.").
		Default(strconv.FormatFloat(capture.DefaultScrapeBudget, 'g', -1, 64)).Float64Var(&cfg.Proxy.ScrapeBudget)
	c.Flag("timeline.interval", "Period of timeline snapshots while requests are in flight; 0 (the default) disables them: within the scrape budget a request's own scrapes buy more.").
		Default("0s").DurationVar(&cfg.Proxy.TimelineInterval)
	c.Flag("capture.idle-interval", "Period of the background scrape that keeps a recent before snapshot ready while idle.").
		Default(durationDefault(capture.DefaultIdleInterval)).DurationVar(&cfg.Proxy.IdleInterval)
	c.Flag("capture.after-timeout", "How long to wait after a response for its finish observation to show in a scrape; the after is then written marked after_observed=false.").
		Default(durationDefault(capture.DefaultAfterTimeout)).DurationVar(&cfg.Proxy.AfterTimeout)
	c.Flag("capture.body-timeout", "How long a request body of up to 1 MiB with a Content-Length, read whole before it is forwarded, may take to arrive; a slower client gets 408.").
		Default(durationDefault(capture.DefaultBodyTimeout)).DurationVar(&cfg.Proxy.BodyTimeout)
	bodyMemory := c.Flag("capture.body-memory", "Most memory held at once by request bodies being received or waiting to be forwarded; a request whose body does not fit gets 503.").
		Default(bytesDefault(capture.DefaultMaxBodyMemory)).Bytes()
	c.Flag("capture.path", "POST path that is an inference request (repeatable; default: the OpenAI-compatible generation and pooling endpoints).").
		StringsVar(&cfg.Proxy.Paths)
	c.Flag("web.telemetry-path", "Path of the proxy's own metrics; every other path is forwarded.").
		Default(capture.DefaultTelemetryPath).StringVar(&cfg.TelemetryPath)
	c.Flag("web.disable-exporter-metrics", "Exclude the Go runtime and process metrics of the proxy itself.").BoolVar(&cfg.DisableExporterMetrics)
	c.Flag("web.shutdown-grace", "On shutdown, how long running requests may continue before their connections are closed.").
		Default(durationDefault(web.DefaultShutdownGrace)).DurationVar(&cfg.ShutdownGrace)
	cfg.Web = kingpinflag.AddFlags(c, ":11434")

	return c.FullCommand(), func(ctx context.Context) int {
		cfg.Proxy.MaxBodyMemory = int64(*bodyMemory)
		logger := e.logger()
		cfg.Logger = logger
		cfg.Proxy.Upstream = (*url.URL)(*upstream)
		logger.Info("starting delta-exporter capture", "version", version.Info(),
			"upstream", cfg.Proxy.Upstream.String(), "snapshots_dir", cfg.Proxy.Dir)
		if err := capture.Serve(ctx, cfg); err != nil {
			fmt.Fprintf(e.stderr, "delta-exporter: %v\n", err)
			return 1
		}
		logger.Info("stopped")
		return 0
	}
}
