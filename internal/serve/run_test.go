package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
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

// TestLandingPageLinksAnswer: every link on the landing page answers 200.
// The toolkit's page links to /debug/pprof unless told not to, so pprof
// is linked exactly when --web.enable-pprof serves it.
func TestLandingPageLinksAnswer(t *testing.T) {
	for _, pprofOn := range []bool{false, true} {
		t.Run(fmt.Sprintf("pprof=%v", pprofOn), func(t *testing.T) {
			addr, flags := listenFlags(t)
			ctx, cancel := context.WithCancel(t.Context())
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Config{FS: fstest.MapFS{}, Ready: ready, EnablePprof: pprofOn, DisableExporterMetrics: true, Web: flags})
			}()
			defer func() { cancel(); <-done }()
			<-ready
			var page []byte
			for i := 0; ; i++ {
				resp, err := http.Get("http://" + addr + "/")
				if err == nil {
					page, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatal(err)
					}
					break
				}
				if i == 100 {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond) // the listener starts right after the loop
			}
			links := regexp.MustCompile(`href="([^"#]+)"`).FindAllStringSubmatch(string(page), -1)
			sawPprof := false
			for _, m := range links {
				link := m[1]
				if strings.HasPrefix(link, "http") {
					continue // external (the toolkit's pprof.me hint)
				}
				if strings.Contains(link, "pprof") {
					sawPprof = true
					if strings.Contains(link, "profile") {
						continue // a 60 s CPU profile; the handler is checked below
					}
				}
				if !strings.HasPrefix(link, "/") {
					link = "/" + link
				}
				resp, err := http.Get("http://" + addr + link)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("link %s answers %d", link, resp.StatusCode)
				}
			}
			if sawPprof != pprofOn {
				t.Errorf("landing page links pprof: %v, pprof served: %v", sawPprof, pprofOn)
			}
			resp, err := http.Get("http://" + addr + "/debug/pprof/profile?seconds=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.StatusCode == http.StatusOK; got != pprofOn {
				t.Errorf("/debug/pprof/profile answers %d with pprof %v", resp.StatusCode, pprofOn)
			}
		})
	}
}
