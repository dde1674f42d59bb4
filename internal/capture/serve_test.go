package capture

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/crypto/bcrypt"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestServe: the HTTP surface of `delta-exporter capture` and its
// shutdown.
func TestServe(t *testing.T) {
	fake := fakeupstream.New(fakeupstream.Config{})
	up := httptest.NewServer(fake)
	defer up.Close()
	u, _ := url.Parse(up.URL)
	dir := t.TempDir() + "/made-by-serve"
	addr := testutil.FreeAddr(t)
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, ServeConfig{
			Proxy: Config{Upstream: u, Dir: dir, ScrapeBudget: DefaultScrapeBudget},
			Web:   &web.FlagConfig{WebListenAddresses: &[]string{addr}, WebSystemdSocket: new(bool), WebConfigFile: new(string)},
			Ready: ready,
		})
	}()
	<-ready
	// Ready says the upstream was scraped, not that the listener is up.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	base := "http://" + addr
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/-/healthy"); code != 200 {
		t.Errorf("healthy: %d", code)
	}
	if code, _ := get("/-/ready"); code != 200 {
		t.Errorf("ready: %d", code)
	}
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(`{"prompt":"x","max_tokens":2}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := bodyID(body)
	// /metrics is the upstream's, seen through the proxy.
	if code, m := get("/metrics"); code != 200 || !strings.Contains(m, "vllm:e2e_request_latency_seconds_count") {
		t.Errorf("/metrics through the proxy: %d", code)
	}
	if _, m := get(DefaultTelemetryPath); !strings.Contains(m, `delta_exporter_capture_requests_total{kind="inference",outcome="ok"} 1`) ||
		!strings.Contains(m, "delta_exporter_build_info") {
		t.Errorf("own metrics:\n%s", m)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	// Shutdown waited for the request's files.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	stages := map[parser.Stage]bool{}
	for _, e := range ents {
		if n, err := parser.ParseName(e.Name()); err == nil && n.RequestID == id {
			stages[n.Stage] = true
		}
	}
	if !stages[parser.Before] || !stages[parser.After] || !stages[parser.Info] {
		t.Errorf("files of %s after shutdown: %v", id, ents)
	}
}

// serveFor runs Serve with cfg on a free address until the test ends and
// returns its base URL once it answers.
func serveFor(t *testing.T, cfg ServeConfig) string {
	t.Helper()
	addr := testutil.FreeAddr(t)
	if cfg.Web == nil {
		cfg.Web = &web.FlagConfig{WebConfigFile: new(string)}
	}
	cfg.Web.WebListenAddresses = &[]string{addr}
	cfg.Web.WebSystemdSocket = new(bool)
	ready := make(chan struct{})
	cfg.Ready = ready
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-ready:
	case err := <-served:
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return "http://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAuthorizationForwarding: with basic auth in --web.config.file, the
// client's Authorization is the proxy's credential and never reaches the
// upstream (its password would land in the server's logs, and it clashes
// with vLLM's --api-key); the upstream's key, when it needs one, comes
// from --upstream.bearer-token-file. Without auth of its own, the proxy
// forwards the client's Authorization (a client's vLLM API key). The web
// configuration is read again when it changes, as exporter-toolkit does.
func TestAuthorizationForwarding(t *testing.T) {
	sim := simulate.NewServer(simulate.ServerConfig{})
	seen := make(chan []string, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			_, _ = sim.WriteTo(w)
			return
		}
		seen <- r.Header.Values("Authorization")
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	withUsers := "basic_auth_users:\n  alice: " + string(hash) + "\n"
	noUsers := "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("sk-upstream-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ask := func(base string, header http.Header) (int, []string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/models", nil)
		req.Header = header
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, nil
		}
		return resp.StatusCode, <-seen
	}
	basic := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))}}
	bearer := http.Header{"Authorization": {"Bearer sk-client"}}
	for _, tc := range []struct {
		name, webConfig, tokenFile string
		header                     http.Header
		want                       []string
	}{
		{"proxy auth", withUsers, "", basic, nil},
		{"proxy auth and upstream key", withUsers, tokenFile, basic, []string{"Bearer sk-upstream-key"}},
		{"no proxy auth", noUsers, "", bearer, []string{"Bearer sk-client"}},
		{"no web config", "", "", bearer, []string{"Bearer sk-client"}},
		{"no proxy auth, upstream key", "", tokenFile, bearer, []string{"Bearer sk-upstream-key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			webFile := ""
			if tc.webConfig != "" {
				webFile = filepath.Join(t.TempDir(), "web.yml")
				if err := os.WriteFile(webFile, []byte(tc.webConfig), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			base := serveFor(t, ServeConfig{
				Proxy:                   Config{Upstream: u, Dir: t.TempDir(), ScrapeBudget: DefaultScrapeBudget},
				UpstreamBearerTokenFile: tc.tokenFile,
				Web:                     &web.FlagConfig{WebConfigFile: &webFile},
			})
			if code, got := ask(base, tc.header); code != 200 || !slices.Equal(got, tc.want) {
				t.Errorf("status %d, the upstream got Authorization %q, want %q", code, got, tc.want)
			}
			if tc.webConfig == withUsers {
				if code, _ := ask(base, nil); code != http.StatusUnauthorized {
					t.Errorf("without credentials: status %d", code)
				}
			}
			if tc.webConfig != noUsers {
				return
			}
			// Auth turned on while running: the credential is the proxy's
			// from the next request on.
			time.Sleep(10 * time.Millisecond) // a modification time of its own
			if err := os.WriteFile(webFile, []byte(withUsers), 0o600); err != nil {
				t.Fatal(err)
			}
			if code, got := ask(base, basic); code != 200 || got != nil {
				t.Errorf("after auth was configured: status %d, the upstream got Authorization %q", code, got)
			}
		})
	}
}
