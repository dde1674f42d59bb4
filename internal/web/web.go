// Package web is the HTTP surface every long-running command shares: the
// registry with the build info and the process's own metrics, /-/healthy,
// /-/ready, the landing page, the Go profiler behind a switch, and
// exporter-toolkit's listener (addresses, TLS, basic auth, systemd socket)
// with a graceful shutdown. serve and capture add their own handlers to
// it; neither builds a server of its own.
package web

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	toolkit "github.com/prometheus/exporter-toolkit/web"
)

// Defaults of the Config fields that cannot be off. A zero field means the
// default; a setting that can be off (ReadTimeout, WriteTimeout, pprof)
// is off at zero.
const (
	DefaultTelemetryPath     = "/metrics"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultShutdownGrace     = 30 * time.Second
	// idleTimeout closes keep-alive connections nobody uses: Prometheus
	// scrapes every 15-60s, so two minutes keeps its connection.
	idleTimeout = 2 * time.Minute
)

// Config configures a Server.
type Config struct {
	// Flags are exporter-toolkit's --web.listen-address,
	// --web.config.file and --web.systemd-socket.
	Flags  *toolkit.FlagConfig
	Logger *slog.Logger // nil: discard
	// Registry, when not nil, is used instead of a new one (tests).
	Registry *prometheus.Registry
	// DisableExporterMetrics leaves out the Go runtime and process
	// metrics (delta_exporter_build_info is always there).
	DisableExporterMetrics bool

	// TelemetryPath serves the registry (DefaultTelemetryPath).
	TelemetryPath string
	// Metrics, when not nil, serves TelemetryPath instead of a plain
	// promhttp handler over the registry.
	Metrics http.Handler
	// Healthy and Ready back /-/healthy and /-/ready: an error answers
	// 503 with its text. Nil: always 200.
	Healthy, Ready func() error
	// Landing, when not nil, serves the landing page on "/". Nil leaves
	// "/" to the caller (capture forwards it).
	Landing *Landing
	// EnablePprof serves the Go profiler under /debug/pprof/ and links it
	// from the landing page. Off at zero: profiles expose internals and
	// a CPU profile costs the process while it runs.
	EnablePprof bool

	// ReadHeaderTimeout bounds reading a request's headers (slow
	// clients); zero: DefaultReadHeaderTimeout, it is never off.
	ReadHeaderTimeout time.Duration
	// ReadTimeout and WriteTimeout bound a whole request and a whole
	// answer; zero: no bound (capture's uploads and streams take as long
	// as the upstream takes).
	ReadTimeout, WriteTimeout time.Duration
	// ShutdownGrace is how long running requests may go on once the
	// context is done before their connections are closed
	// (DefaultShutdownGrace).
	ShutdownGrace time.Duration
	// ErrorLog receives net/http's own errors (TLS handshakes, panics);
	// nil: the log package's default logger.
	ErrorLog *log.Logger
}

// Landing describes the landing page.
type Landing struct {
	Name, Description string
	// Links follow the metrics link; the profiler's is added by the
	// toolkit when EnablePprof is set.
	Links []Link
}

// Link is one link of the landing page.
type Link struct{ Address, Text string }

// Server is the HTTP surface: its mux already answers the paths above;
// the caller adds its own with Handle before Run.
type Server struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry
	mux *http.ServeMux
}

// New builds the registry and the shared handlers. It fails only when the
// landing page cannot be built.
func New(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, log: cfg.Logger, reg: cfg.Registry, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	s.reg.MustRegister(versioncollector.NewCollector("delta_exporter"))
	if !cfg.DisableExporterMetrics {
		s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if s.cfg.TelemetryPath == "" {
		s.cfg.TelemetryPath = DefaultTelemetryPath
	}
	metrics := cfg.Metrics
	if metrics == nil {
		metrics = promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
			EnableOpenMetrics: true,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelError),
		})
	}
	s.mux.Handle(s.cfg.TelemetryPath, metrics)
	s.mux.HandleFunc("/-/healthy", check(cfg.Healthy, "Healthy"))
	s.mux.HandleFunc("/-/ready", check(cfg.Ready, "Ready"))
	if cfg.Landing != nil {
		links := append([]toolkit.LandingLinks{{Address: s.cfg.TelemetryPath, Text: "Metrics"}}, toolkitLinks(cfg.Landing.Links)...)
		page, err := toolkit.NewLandingPage(toolkit.LandingConfig{
			Name:        cfg.Landing.Name,
			Description: cfg.Landing.Description,
			Version:     version.Info(),
			Links:       links,
			// The toolkit's page links to /debug/pprof unless told not
			// to; those links must answer.
			Profiling: strconv.FormatBool(cfg.EnablePprof),
		})
		if err != nil {
			return nil, err
		}
		s.mux.Handle("/", page)
	}
	if cfg.EnablePprof {
		s.mux.HandleFunc("/debug/pprof/", pprof.Index)
		s.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		s.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return s, nil
}

func toolkitLinks(links []Link) []toolkit.LandingLinks {
	out := make([]toolkit.LandingLinks, len(links))
	for i, l := range links {
		out[i] = toolkit.LandingLinks{Address: l.Address, Text: l.Text}
	}
	return out
}

// check answers ok, or 503 with the error of f.
func check(f func() error, ok string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if f != nil {
			if err := f(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, ok)
	}
}

// Registry is where the caller registers its metrics.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// TelemetryPath is the path the metrics are served on.
func (s *Server) TelemetryPath() string { return s.cfg.TelemetryPath }

// Handle adds a handler to the mux (http.ServeMux patterns).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// HandleFunc adds a handler function to the mux.
func (s *Server) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	s.mux.HandleFunc(pattern, h)
}

// Handler is the mux, for tests that serve it without a listener.
func (s *Server) Handler() http.Handler { return s.mux }

// Run listens as Flags say and serves until ctx is done, then stops
// accepting, lets running requests finish for ShutdownGrace and closes
// the connections still open. It returns nil after a shutdown, or the
// error that kept it from listening.
func (s *Server) Run(ctx context.Context) error {
	readHeader := s.cfg.ReadHeaderTimeout
	if readHeader <= 0 {
		readHeader = DefaultReadHeaderTimeout
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: readHeader,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          s.cfg.ErrorLog,
	}
	served := make(chan error, 1)
	go func() { served <- toolkit.ListenAndServe(srv, s.cfg.Flags, s.log) }()
	select {
	case err := <-served:
		return err // it never listened, or stopped by itself
	case <-ctx.Done():
	}
	grace := s.cfg.ShutdownGrace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("requests still running at shutdown; closing their connections", "err", err)
		_ = srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
