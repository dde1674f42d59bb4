package capture

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"

	"github.com/delta-exporter/delta-exporter/fakeupstream"
	"github.com/delta-exporter/delta-exporter/parser"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServe: the HTTP surface of `delta-exporter capture` and its
// shutdown.
func TestServe(t *testing.T) {
	fake := fakeupstream.New(fakeupstream.Config{})
	up := httptest.NewServer(fake)
	defer up.Close()
	u, _ := url.Parse(up.URL)
	dir := t.TempDir() + "/made-by-serve"
	addr := freeAddr(t)
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, ServeConfig{
			Proxy: Config{Upstream: u, Dir: dir},
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
