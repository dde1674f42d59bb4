package serve

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"testing/fstest"
	"time"
)

// TestSlowClientIsCut: a client that opens a connection and never
// finishes its request headers (slowloris) is disconnected after the
// read-header timeout instead of holding the connection.
func TestSlowClientIsCut(t *testing.T) {
	addr, flags := listenFlags(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{FS: fstest.MapFS{}, ReadHeaderTimeout: 200 * time.Millisecond, Ready: ready, Web: flags})
	}()
	var err error
	<-ready
	var conn net.Conn
	for i := 0; ; i++ {
		if conn, err = net.Dial("tcp", addr); err == nil {
			break
		}
		if i == 100 {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the listener starts right after the loop
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	b, err := io.ReadAll(conn)
	if took := time.Since(start); took > 3*time.Second || (err != nil && !errors.Is(err, net.ErrClosed)) {
		t.Fatalf("connection held for %v (read %q, %v)", took, b, err)
	}
	// A well-behaved scrape still works.
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
