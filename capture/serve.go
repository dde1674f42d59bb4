package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// DefaultTelemetryPath is where the proxy serves its own metrics. Every
// other path is forwarded, /metrics included: clients and Prometheus keep
// scraping the server's own metrics through the proxy.
const DefaultTelemetryPath = "/-/capture/metrics"

// ServeConfig configures Serve.
type ServeConfig struct {
	Proxy Config // Logger and Registerer are filled in by Serve
	// TelemetryPath serves the proxy's own metrics (DefaultTelemetryPath).
	TelemetryPath          string
	DisableExporterMetrics bool
	// ShutdownGrace is how long in-flight requests may run on after ctx is
	// done before their connections are closed (default 30s).
	ShutdownGrace time.Duration
	Web           *web.FlagConfig
	Logger        *slog.Logger
	// Registry, when not nil, is used instead of a new one (tests).
	Registry *prometheus.Registry
	// Ready, when not nil, is closed once a scrape of the upstream has
	// succeeded (tests).
	Ready chan<- struct{}
}

// Serve runs the capturing proxy until ctx is done: it listens as Web
// says, forwards every request to the upstream and writes the snapshots.
// /-/healthy answers 200, /-/ready 200 once a scrape of the upstream's
// metrics has succeeded (503 before). On shutdown it stops accepting,
// lets running requests finish for ShutdownGrace, then waits for their
// snapshot files. It returns an error only when it cannot start.
func Serve(ctx context.Context, cfg ServeConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(versioncollector.NewCollector("delta_exporter"))
	if !cfg.DisableExporterMetrics {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if cfg.Proxy.Dir != "" {
		if err := os.MkdirAll(cfg.Proxy.Dir, 0o755); err != nil {
			return fmt.Errorf("snapshot directory: %w", err)
		}
	}
	pc := cfg.Proxy
	pc.Logger, pc.Registerer = log, reg
	p, err := New(pc)
	if err != nil {
		return err
	}
	path := cfg.TelemetryPath
	if path == "" {
		path = DefaultTelemetryPath
	}
	mux := http.NewServeMux()
	mux.Handle(path, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelError),
	}))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Healthy")
	})
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !p.Ready() {
			http.Error(w, "no successful scrape of the upstream metrics yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Ready")
	})
	mux.Handle("/", p)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		// No read or write timeout: uploads and streams take as long as
		// the upstream takes.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}

	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		_ = p.Run(runCtx)
		close(runDone)
	}()
	if cfg.Ready != nil {
		go func() {
			if p.WaitReady(runCtx) == nil {
				close(cfg.Ready)
			}
		}()
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- web.ListenAndServe(srv, cfg.Web, log) }()

	select {
	case err = <-srvErr:
	case <-ctx.Done():
		grace := cfg.ShutdownGrace
		if grace <= 0 {
			grace = 30 * time.Second
		}
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		if serr := srv.Shutdown(sctx); serr != nil {
			log.Warn("requests still running at shutdown; closing their connections", "err", serr)
			_ = srv.Close()
		}
		cancel()
		if err = <-srvErr; errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	}
	// The Run loop keeps scraping while the last requests wait for their
	// after snapshots.
	if cerr := p.Close(); cerr != nil {
		log.Warn("closing the snapshot directory", "err", cerr)
	}
	stopRun()
	<-runDone
	return err
}
