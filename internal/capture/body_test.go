package capture

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
)

// countingUpstream answers every request 200 and counts the requests that
// are not scrapes, with the bytes of their bodies.
func countingUpstream(requests, bodyBytes *atomic.Int64) *httptest.Server {
	sim := simulate.NewServer(simulate.ServerConfig{})
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			_, _ = sim.WriteTo(w)
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		requests.Add(1)
		bodyBytes.Add(n)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"cmpl-1","object":"text_completion","choices":[]}`))
	}))
}

// slowClient opens a connection to the proxy and sends a POST declaring
// declared body bytes, of which it sends only sent.
func slowClient(t *testing.T, h *harness, declared, sent int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	head := fmt.Sprintf("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", declared)
	if _, err := io.WriteString(c, head+strings.Repeat(" ", sent)); err != nil {
		t.Fatal(err)
	}
	return c
}

// answer reads the proxy's answer on c, waiting at most d.
func answer(c net.Conn, d time.Duration) (*http.Response, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// TestSlowBodyTimesOut: a client that declares a body and does not send
// it is answered 408 after --capture.body-timeout (it used to be held
// forever), and nothing reaches the upstream.
func TestSlowBodyTimesOut(t *testing.T) {
	var requests, bodyBytes atomic.Int64
	h := startProxy(t, countingUpstream(&requests, &bodyBytes), func(c *Config) {
		c.BodyTimeout = 200 * time.Millisecond
		c.AfterTimeout = 50 * time.Millisecond
	})
	h.waitReady()
	c := slowClient(t, h, 1000, 10)
	start := time.Now()
	resp, err := answer(c, 10*time.Second)
	if err != nil || resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("answer to a body that does not come: %v, %v", resp, err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("answered after %v, before the timeout", waited)
	}
	// A body that arrives in time is forwarded whole.
	if r := h.post("/v1/completions", `{"prompt":"x"}`, nil); r.status != 200 {
		t.Errorf("status %d", r.status)
	}
	h.srv.Close() // waits for the handlers
	if requests.Load() != 1 || bodyBytes.Load() != int64(len(`{"prompt":"x"}`)) {
		t.Errorf("the upstream got %d requests, %d body bytes", requests.Load(), bodyBytes.Load())
	}
	if n := h.counter("delta_exporter_capture_requests_total", "outcome", outcomeBodyTimeout); n != 1 {
		t.Errorf("body_timeout counted %v", n)
	}
	if n := h.counter("delta_exporter_capture_request_body_bytes"); n != 0 {
		t.Errorf("%v body bytes still held", n)
	}
}

// TestBodyBufferGrowsAsBytesArrive: 64 clients declaring 1 MiB bodies and
// sending 1 KiB make the proxy hold kilobytes, not 64 MiB (a
// Content-Length used to be allocated in full before any byte came).
func TestBodyBufferGrowsAsBytesArrive(t *testing.T) {
	var requests, bodyBytes atomic.Int64
	h := startProxy(t, countingUpstream(&requests, &bodyBytes), nil)
	h.waitReady()
	const clients = 64
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for range clients {
		slowClient(t, h, maxReadWhole, 1<<10)
	}
	// Wait until every handler has read its kilobyte (the gauge counts
	// buffers; without it, give them time).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if h.counter("delta_exporter_capture_request_body_bytes") >= clients*minBodyBuffer {
			break
		}
	}
	time.Sleep(100 * time.Millisecond)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap grew by %d KiB for %d clients declaring 1 MiB", grew>>10, clients)
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MiB for %d clients that sent 1 KiB each", grew>>20, clients)
	}
	if held := h.counter("delta_exporter_capture_request_body_bytes"); held != clients*minBodyBuffer {
		t.Errorf("body bytes held %v, want %d", held, clients*minBodyBuffer)
	}
}

// TestBodyMemoryBound: bodies being received may hold at most
// --capture.body-memory; a request whose body does not fit is answered
// 503 (with Retry-After) and not forwarded, and the others are served.
func TestBodyMemoryBound(t *testing.T) {
	var requests, bodyBytes atomic.Int64
	h := startProxy(t, countingUpstream(&requests, &bodyBytes), func(c *Config) {
		c.MaxBodyMemory = 256 << 10
		c.AfterTimeout = 50 * time.Millisecond
	})
	h.waitReady()
	const size = 200 << 10
	a := slowClient(t, h, size, 150<<10)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if h.counter("delta_exporter_capture_request_body_bytes") == size {
			break
		}
	}
	b := slowClient(t, h, size, 150<<10)
	resp, err := answer(b, 10*time.Second)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("answer over the bound: %v, %v", resp, err)
	}
	// The first body, completed, is forwarded whole.
	if _, err := io.WriteString(a, strings.Repeat(" ", size-150<<10)); err != nil {
		t.Fatal(err)
	}
	if resp, err := answer(a, 10*time.Second); err != nil || resp.StatusCode != 200 {
		t.Fatalf("answer within the bound: %v, %v", resp, err)
	}
	h.srv.Close()
	if requests.Load() != 1 || bodyBytes.Load() != size {
		t.Errorf("the upstream got %d requests, %d body bytes", requests.Load(), bodyBytes.Load())
	}
	if n := h.counter("delta_exporter_capture_requests_total", "outcome", outcomeBodyMemory); n != 1 {
		t.Errorf("body_memory_full counted %v", n)
	}
	if n := h.counter("delta_exporter_capture_request_body_bytes"); n != 0 {
		t.Errorf("%v body bytes still held", n)
	}
}
