package web

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	toolkit "github.com/prometheus/exporter-toolkit/web"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// TestChecks: /-/healthy and /-/ready answer 200 without a check, and 503
// with the check's error while it fails.
func TestChecks(t *testing.T) {
	var notReady error = errors.New("initial scan in progress")
	s, err := New(Config{DisableExporterMetrics: true, Ready: func() error { return notReady }})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, fix string
		code      int
		body      string
	}{
		{path: "/-/healthy", code: 200, body: "Healthy\n"},
		{path: "/-/ready", code: 503, body: "initial scan in progress\n"},
		{path: "/-/ready", fix: "ready", code: 200, body: "Ready\n"},
	} {
		if c.fix == "ready" {
			notReady = nil
		}
		if code, body := get(t, s.Handler(), c.path); code != c.code || body != c.body {
			t.Errorf("%s (%s): %d %q, want %d %q", c.path, c.fix, code, body, c.code, c.body)
		}
	}
}

// TestMetrics: the registry is served on the telemetry path with the build
// info; the exporter's own metrics unless disabled; a handler of the
// caller's replaces the plain one.
func TestMetrics(t *testing.T) {
	for _, c := range []struct {
		name     string
		cfg      Config
		path     string
		want     []string
		wantNone []string
	}{
		{name: "default", path: DefaultTelemetryPath,
			want: []string{"delta_exporter_build_info{", "go_goroutines ", "process_"}},
		{name: "no exporter metrics", cfg: Config{DisableExporterMetrics: true, TelemetryPath: "/m"}, path: "/m",
			want: []string{"delta_exporter_build_info{"}, wantNone: []string{"go_goroutines ", "process_"}},
		{name: "own handler", cfg: Config{Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "own\n") })},
			path: DefaultTelemetryPath, want: []string{"own\n"}, wantNone: []string{"delta_exporter_build_info"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.Registry = prometheus.NewRegistry()
			s, err := New(c.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s.Registry() != c.cfg.Registry {
				t.Error("the given registry is not used")
			}
			code, body := get(t, s.Handler(), c.path)
			if code != 200 {
				t.Fatalf("%s: %d", c.path, code)
			}
			for _, w := range c.want {
				if !strings.Contains(body, w) {
					t.Errorf("%s lacks %q", c.path, w)
				}
			}
			for _, w := range c.wantNone {
				if strings.Contains(body, w) {
					t.Errorf("%s has %q", c.path, w)
				}
			}
		})
	}
}

// TestLandingAndPprof: the landing page is served only when asked for
// ("/" is then free for the caller), links the telemetry path and the
// caller's links, and links pprof exactly when pprof is served.
func TestLandingAndPprof(t *testing.T) {
	for _, c := range []struct {
		name    string
		landing bool
		pprof   bool
	}{{"bare", false, false}, {"landing", true, false}, {"landing+pprof", true, true}, {"pprof", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := Config{DisableExporterMetrics: true, EnablePprof: c.pprof, TelemetryPath: "/m"}
			if c.landing {
				cfg.Landing = &Landing{Name: "x", Description: "d", Links: []Link{{Address: "/extra", Text: "Extra"}}}
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			code, page := get(t, s.Handler(), "/")
			if got := code == 200; got != c.landing {
				t.Fatalf("/ answers %d with landing %v", code, c.landing)
			}
			if c.landing {
				for _, link := range []string{`href="/m"`, `href="/extra"`} {
					if !strings.Contains(page, link) {
						t.Errorf("landing page lacks %s", link)
					}
				}
				if got := strings.Contains(page, "debug/pprof"); got != c.pprof {
					t.Errorf("landing page links pprof: %v, pprof served: %v", got, c.pprof)
				}
			}
			if code, _ := get(t, s.Handler(), "/debug/pprof/"); (code == 200) != c.pprof {
				t.Errorf("/debug/pprof/ answers %d with pprof %v", code, c.pprof)
			}
		})
	}
}

func flags(addr string) *toolkit.FlagConfig {
	return &toolkit.FlagConfig{WebListenAddresses: &[]string{addr}, WebSystemdSocket: new(bool), WebConfigFile: new(string)}
}

// TestRunCannotListen: an address in use is Run's error, at once.
func TestRunCannotListen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := New(Config{DisableExporterMetrics: true, Flags: flags(l.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(t.Context()); err == nil {
		t.Fatal("Run on an address in use: no error")
	}
}

// TestRunShutdownGrace: once ctx is done, a running request may finish
// within the grace; one that runs longer has its connection closed, and
// Run returns nil either way.
func TestRunShutdownGrace(t *testing.T) {
	for _, c := range []struct {
		name     string
		hold     time.Duration // how long the handler runs after shutdown starts
		finished bool          // the client gets the whole answer
	}{{"within grace", 0, true}, {"beyond grace", time.Hour, false}} {
		t.Run(c.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			s, err := New(Config{DisableExporterMetrics: true, Flags: flags(addr), ShutdownGrace: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			entered, release := make(chan struct{}), make(chan struct{})
			s.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				select {
				case <-release:
				case <-time.After(c.hold):
				case <-r.Context().Done():
					return
				}
				io.WriteString(w, "done")
			})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ran := make(chan error, 1)
			go func() { ran <- s.Run(ctx) }()
			answered := make(chan string, 1)
			go func() {
				for i := 0; i < 250; i++ {
					resp, err := http.Get("http://" + addr + "/slow")
					if err != nil {
						var op *net.OpError
						if errors.As(err, &op) && op.Op == "dial" {
							time.Sleep(20 * time.Millisecond) // not listening yet
							continue
						}
						answered <- "error"
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						answered <- "error"
						return
					}
					answered <- string(b)
					return
				}
				answered <- "never listened"
			}()
			<-entered
			cancel()
			if c.finished {
				time.Sleep(50 * time.Millisecond) // shutdown has begun
				close(release)
			}
			if err := <-ran; err != nil {
				t.Fatalf("Run: %v", err)
			}
			got := <-answered
			if (got == "done") != c.finished {
				t.Errorf("client got %q; finished within the grace: %v", got, c.finished)
			}
		})
	}
}
