package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v3"
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
	// UpstreamBearerTokenFile, when set, names a file holding the token
	// sent as "Authorization: Bearer <token>" with every forwarded request
	// (the server's API key), in place of the client's header.
	UpstreamBearerTokenFile string
	Web                     *web.FlagConfig
	Logger                  *slog.Logger
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
	if cfg.UpstreamBearerTokenFile != "" {
		b, err := os.ReadFile(cfg.UpstreamBearerTokenFile)
		if err != nil {
			return fmt.Errorf("upstream bearer token: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return fmt.Errorf("upstream bearer token: %s is empty", cfg.UpstreamBearerTokenFile)
		}
		pc.UpstreamAuthorization = "Bearer " + token
	}
	if cfg.Web != nil && cfg.Web.WebConfigFile != nil && *cfg.Web.WebConfigFile != "" {
		pc.OwnAuth = (&webAuth{path: *cfg.Web.WebConfigFile}).enabled
	}
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

// webAuth tells whether the web configuration file asks clients for basic
// auth. exporter-toolkit reads the file for every request, so a change
// applies at once; webAuth reads it again whenever its size or
// modification time changes.
type webAuth struct {
	path string

	mu        sync.Mutex
	known     bool // size, mod and users describe the file
	size      int64
	mod       time.Time
	basicAuth bool
}

func (a *webAuth) enabled() bool {
	fi, err := os.Stat(a.path)
	if err != nil {
		// exporter-toolkit refuses every request then; a credential that
		// cannot be told apart is not forwarded.
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.known && fi.Size() == a.size && fi.ModTime().Equal(a.mod) {
		return a.basicAuth
	}
	var c struct {
		Users map[string]string `yaml:"basic_auth_users"`
	}
	b, err := os.ReadFile(a.path)
	if err == nil {
		err = yaml.Unmarshal(b, &c)
	}
	if err != nil {
		a.known = false
		return true
	}
	a.known, a.size, a.mod, a.basicAuth = true, fi.Size(), fi.ModTime(), len(c.Users) > 0
	return a.basicAuth
}
