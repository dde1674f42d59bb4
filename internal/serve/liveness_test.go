package serve

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// blockingFS lists one snapshot whose open blocks until release is closed:
// an ingest loop stuck on a file, whatever the cause.
type blockingFS struct {
	fstest.MapFS
	release chan struct{}
}

func (b blockingFS) Open(name string) (fs.File, error) {
	if name != "." {
		<-b.release
	}
	return b.MapFS.Open(name)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestStalledIngestLoopShowsOnHealthy: while the ingest loop is stuck,
// /-/healthy answers 503 and the heartbeat gauge stops moving (an alert
// on time() minus it fires); once the loop moves again, both recover.
// Before, /-/healthy answered 200 for good.
func TestStalledIngestLoopShowsOnHealthy(t *testing.T) {
	addr, flags := listenFlags(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	fsys := blockingFS{MapFS: fstest.MapFS{"r_before_20260101_000000_000000.txt": {Data: []byte("x 1\n")}}, release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(fsys.release)
		}
	}()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{FS: fsys, StallAfter: 300 * time.Millisecond, Ready: ready, Web: flags})
	}()
	base := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	var code int
	var body string
	for time.Now().Before(deadline) {
		if code, body = get(t, base+"/-/healthy"); code == http.StatusServiceUnavailable {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "stalled") {
		t.Fatalf("/-/healthy with the loop stuck: %d %q", code, body)
	}
	code, metrics := get(t, base+"/metrics")
	beat, err := strconv.ParseFloat(value(metrics, "delta_exporter_ingest_heartbeat_timestamp_seconds"), 64)
	if code != 200 || err != nil {
		t.Fatalf("/metrics: %d, heartbeat %v", code, err)
	}
	if age := time.Since(time.Unix(0, int64(beat*1e9))); age < 300*time.Millisecond {
		t.Fatalf("heartbeat %v old while the loop is stuck", age)
	}
	close(fsys.release)
	released = true
	<-ready
	for time.Now().Before(deadline) {
		if code, _ = get(t, base+"/-/healthy"); code == 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code != 200 {
		t.Fatalf("/-/healthy after the loop moved again: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
