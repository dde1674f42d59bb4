package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	toolkit "github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v3"

	"github.com/delta-exporter/delta-exporter/internal/web"
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
	// done before their connections are closed (web.DefaultShutdownGrace).
	ShutdownGrace time.Duration
	// UpstreamBearerTokenFile, when set, names a file holding the token
	// sent as "Authorization: Bearer <token>" with every forwarded request
	// (the server's API key), in place of the client's header.
	UpstreamBearerTokenFile string
	Web                     *toolkit.FlagConfig
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
	path := cfg.TelemetryPath
	if path == "" {
		path = DefaultTelemetryPath
	}
	var p *Proxy // set before the site listens
	site, err := web.New(web.Config{
		Flags: cfg.Web, Logger: log, Registry: cfg.Registry, DisableExporterMetrics: cfg.DisableExporterMetrics,
		TelemetryPath: path,
		Ready: func() error {
			if !p.Ready() {
				return errors.New("no successful scrape of the upstream metrics yet")
			}
			return nil
		},
		// No read or write timeout: uploads and streams take as long as
		// the upstream takes.
		ShutdownGrace: cfg.ShutdownGrace,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	})
	if err != nil {
		return err
	}
	if cfg.Proxy.Dir != "" {
		if err := os.MkdirAll(cfg.Proxy.Dir, 0o755); err != nil {
			return fmt.Errorf("snapshot directory: %w", err)
		}
	}
	pc := cfg.Proxy
	pc.Logger, pc.Registerer = log, site.Registry()
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
	if p, err = New(pc); err != nil {
		return err
	}
	site.Handle("/", p)

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
	err = site.Run(ctx)
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
