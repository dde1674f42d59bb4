package capture

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestUpstreamDown: a clear 502 in the OpenAI error format, and no files.
// The client is not told where the upstream is (its address, the dial
// error): the log has the detail, once per outage.
func TestUpstreamDown(t *testing.T) {
	up := httptest.NewServer(http.NotFoundHandler())
	up.Close() // nothing listens on its address now
	upAddr := strings.TrimPrefix(up.URL, "http://")
	var logs syncBuffer
	h := startProxy(t, up, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	for _, stream := range []bool{false, true} {
		r := h.chat(stream, 2, nil)
		var e struct {
			Error struct {
				Message string
				Code    int
			}
		}
		if r.status != http.StatusBadGateway || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") ||
			json.Unmarshal(r.body, &e) != nil || e.Error.Code != 502 || !strings.Contains(e.Error.Message, "could not be reached") {
			t.Fatalf("status %d, %s", r.status, r.body)
		}
		host, port, _ := strings.Cut(upAddr, ":")
		if strings.Contains(string(r.body), port) || strings.Contains(string(r.body), host) || strings.Contains(string(r.body), "dial") {
			t.Errorf("the 502 tells the client about the upstream (%s): %s", upAddr, r.body)
		}
	}
	if l := logs.String(); strings.Count(l, "upstream request failed") != 1 || !strings.Contains(l, upAddr) || !strings.Contains(l, "level=WARN") {
		t.Errorf("want one warning with the upstream's address %s in the log, got:\n%s", upAddr, l)
	}
	h.p.Wait()
	if ents, _ := os.ReadDir(h.dir); len(ents) != 0 {
		t.Errorf("files written while the upstream is down: %v", ents)
	}
	if n := h.counter("delta_exporter_capture_requests_total", "outcome", "upstream_unavailable"); n != 2 {
		t.Errorf("upstream_unavailable counted %v", n)
	}
}

// checkSnapshotFiles fails if any .txt file in dir is not a complete
// exposition: capture never writes an empty or error-text snapshot.
func checkSnapshotFiles(t *testing.T, dir string) (n int) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".txt") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := checkExposition(b); err != nil {
			t.Errorf("%s is not a complete exposition: %v", e.Name(), err)
		}
		n++
	}
	return n
}

// TestMetricsFailing: with the metrics endpoint failing in each way, the
// request is still served whole, no snapshot file is written from a bad
// scrape, the info says why the pair is missing, and the failure is
// counted by reason.
func TestMetricsFailing(t *testing.T) {
	for name, tc := range map[string]struct {
		fault  fakeupstream.MetricsFault
		reason string
	}{
		"status":   {fakeupstream.MetricsFault{Status: 500}, reasonStatus},
		"garbage":  {fakeupstream.MetricsFault{Garbage: true}, reasonInvalid},
		"truncate": {fakeupstream.MetricsFault{Truncate: true}, reasonError},
		"slow":     {fakeupstream.MetricsFault{Delay: 5 * time.Second}, reasonTimeout},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, fakeupstream.Config{}, func(c *Config) {
				c.ScrapeTimeout = 40 * time.Millisecond
				c.AfterTimeout = 100 * time.Millisecond
			})
			h.waitReady()
			// A stream whose before is taken while the endpoint works, and
			// which ends after it broke.
			h.fake.SetMetricsFault(tc.fault)
			r := h.chat(true, 3, nil)
			if r.status != 200 || !strings.HasSuffix(string(r.body), "data: [DONE]\n\n") {
				t.Fatalf("status %d body %q", r.status, r.body)
			}
			h.p.Wait()
			d := h.files()
			info := h.info(d.one(t, r.id, parser.Info))
			if info.After != nil || info.AfterError == "" || len(d.byID[r.id][parser.After]) != 0 || len(d.byID[r.id][parser.First]) != 0 {
				t.Errorf("stream: info %+v, files %v", info, d.byID[r.id])
			}
			// Non-streaming: no before is written when no after can be.
			r = h.chat(false, 3, nil)
			if r.status != 200 || r.id == "" {
				t.Fatalf("status %d body %q", r.status, r.body)
			}
			h.p.Wait()
			d = h.files()
			info = h.info(d.one(t, r.id, parser.Info))
			if info.Before != nil || info.After != nil || info.AfterError == "" || len(d.byID[r.id]) != 1 {
				t.Errorf("non-stream: info %+v, files %v", info, d.byID[r.id])
			}
			if n := checkSnapshotFiles(t, h.dir); n != 1 {
				t.Errorf("%d snapshot files, want only the stream's before", n)
			}
			if n := h.counter("delta_exporter_capture_scrape_failures_total", "reason", tc.reason); n < 2 {
				t.Errorf("scrape failures (%s) counted %v", tc.reason, n)
			}
			if n := h.counter("delta_exporter_capture_snapshots_failed_total", "stage", "after"); n < 2 {
				t.Errorf("after failures counted %v", n)
			}
		})
	}
}

// TestMetricsNeverWorked: no before exists, so nothing but the info is
// written, and requests are served.
func TestMetricsNeverWorked(t *testing.T) {
	fake := fakeupstream.New(fakeupstream.Config{})
	fake.SetMetricsFault(fakeupstream.MetricsFault{Status: 503})
	h := startProxy(t, httptest.NewServer(fake), func(c *Config) { c.AfterTimeout = 50 * time.Millisecond })
	r := h.chat(false, 2, nil)
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	h.p.Wait()
	if h.p.Ready() {
		t.Error("ready without a successful scrape")
	}
	if n := checkSnapshotFiles(t, h.dir); n != 0 {
		t.Errorf("%d snapshot files", n)
	}
	if n := h.counter("delta_exporter_capture_snapshots_failed_total", "stage", "before", "reason", reasonNoScrape); n != 1 {
		t.Errorf("before no_scrape counted %v", n)
	}
}

// TestClientDisconnectMidStream: the upstream request is cancelled (the
// fake aborts, as vLLM does), and the after is still written, marked.
func TestClientDisconnectMidStream(t *testing.T) {
	done := make(chan fakeupstream.Observation, 1)
	h := newHarness(t, fakeupstream.Config{
		Plan: func(*fakeupstream.Request) fakeupstream.Plan {
			return fakeupstream.Plan{Decode: time.Hour, GenerationTokens: 9}
		},
		OnDone: func(o fakeupstream.Observation) { done <- o },
	}, func(c *Config) { c.AfterTimeout = 50 * time.Millisecond })
	h.waitReady()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+"/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	id := bodyID([]byte(line))
	cancel()
	resp.Body.Close()
	o := <-done
	if !o.Aborted || o.ID != id {
		t.Fatalf("the upstream did not see the cancellation: %+v", o)
	}
	h.p.Wait()
	d := h.files()
	d.one(t, id, parser.Before)
	d.one(t, id, parser.First)
	d.one(t, id, parser.After)
	info := h.info(d.one(t, id, parser.Info))
	if !info.ClientDisconnected || info.AfterObserved || info.After == nil {
		t.Errorf("info %+v", info)
	}
	if n := h.counter("delta_exporter_capture_requests_total", "outcome", "client_disconnected"); n != 1 {
		t.Errorf("client_disconnected counted %v", n)
	}
}

// TestClientDisconnectBeforeHeaders: a non-streaming client that leaves
// while the server works; the response never comes, so the id is a
// generated one.
func TestClientDisconnectBeforeHeaders(t *testing.T) {
	arrived := make(chan struct{})
	done := make(chan fakeupstream.Observation, 1)
	h := newHarness(t, fakeupstream.Config{
		Plan: func(*fakeupstream.Request) fakeupstream.Plan {
			close(arrived)
			return fakeupstream.Plan{Prefill: time.Hour}
		},
		OnDone: func(o fakeupstream.Observation) { done <- o },
	}, func(c *Config) { c.AfterTimeout = 50 * time.Millisecond })
	h.waitReady()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+"/v1/chat/completions", strings.NewReader(`{}`))
	go func() {
		<-arrived
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request succeeded")
	}
	if o := <-done; !o.Aborted {
		t.Fatalf("upstream not cancelled: %+v", o)
	}
	h.p.Wait()
	d := h.files()
	if len(d.byID) != 1 {
		t.Fatalf("files %v", d.byID)
	}
	for id := range d.byID {
		info := h.info(d.one(t, id, parser.Info))
		if info.IDSource != "generated" || !strings.HasPrefix(id, "capture-") || !info.ClientDisconnected || info.Status != 0 {
			t.Errorf("info %+v", info)
		}
		d.one(t, id, parser.After)
	}
}

// TestUnwritableDir: with the directory gone, requests are served and
// failures counted; when it is back, writing resumes.
func TestUnwritableDir(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{}, nil)
	h.waitReady()
	if err := os.RemoveAll(h.dir); err != nil {
		t.Fatal(err)
	}
	r := h.chat(true, 2, nil)
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	h.p.Wait()
	if n := h.counter("delta_exporter_capture_snapshots_failed_total", "reason", reasonWrite); n < 2 {
		t.Errorf("write failures counted %v", n)
	}
	if err := os.Mkdir(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r = h.chat(false, 2, nil)
	h.p.Wait()
	d := h.files()
	d.one(t, r.id, parser.Before)
	d.one(t, r.id, parser.After)
	d.one(t, r.id, parser.Info)
}

// errDiskFull fails injected writes.
var errDiskFull = syscall.ENOSPC

// TestFullDiskCleansUp: while every write fails as on a full disk, with
// requests and timeline snapshots writing at once, requests are served,
// failures counted, no file appears and no temporary file is left behind
// (they used to stay until a restart an hour later). Once the disk has
// room again, writing resumes.
func TestFullDiskCleansUp(t *testing.T) {
	var full atomic.Bool
	full.Store(true)
	h := newHarness(t, fakeupstream.Config{Plan: concurrentPlan}, func(c *Config) {
		c.TimelineInterval = 2 * time.Millisecond
		c.fault = func(string) error {
			if full.Load() {
				return errDiskFull
			}
			return nil
		}
	})
	h.waitReady()
	h.burstThenStop(16, 4)
	if left, _ := os.ReadDir(filepath.Join(h.dir, TempDir)); len(left) != 0 {
		t.Errorf("%d temporary files left after failed writes: %v", len(left), left)
	}
	if d := h.files(); len(d.byID)+len(d.timeline)+len(d.other) != 0 {
		t.Errorf("files written on a full disk: %+v", d)
	}
	if n := h.counter("delta_exporter_capture_snapshots_failed_total", "reason", reasonWrite); n < 64 {
		t.Errorf("write failures counted %v, want one per request at least", n)
	}
	full.Store(false)
	r := h.chat(true, 2, nil)
	h.p.Wait()
	d := h.files()
	d.one(t, r.id, parser.Before)
	d.one(t, r.id, parser.After)
	d.one(t, r.id, parser.Info)
}

// TestInfoFailureWithholdsAfter: when the info cannot be written, the
// after is not either ("info before after": a reader that sees an after
// can read its info), and its temporary file is removed.
func TestInfoFailureWithholdsAfter(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{}, func(c *Config) {
		c.TimelineInterval = 0 // off
		c.fault = func(name string) error {
			if n, err := parser.ParseName(name); err == nil && n.Stage == parser.Info {
				return errDiskFull
			}
			return nil
		}
	})
	h.waitReady()
	for _, stream := range []bool{false, true} {
		r := h.chat(stream, 2, nil)
		if r.status != 200 || r.id == "" {
			t.Fatalf("status %d id %q", r.status, r.id)
		}
		h.p.Wait()
		d := h.files()
		if len(d.byID[r.id][parser.Info]) != 0 || len(d.byID[r.id][parser.After]) != 0 {
			t.Errorf("stream=%v: files %v: an after without its info", stream, d.byID[r.id])
		}
		if left, _ := os.ReadDir(filepath.Join(h.dir, TempDir)); len(left) != 0 {
			t.Errorf("stream=%v: temporary files left: %v", stream, left)
		}
	}
	if n := h.counter("delta_exporter_capture_snapshots_failed_total", "stage", "info", "reason", reasonWrite); n != 2 {
		t.Errorf("info write failures counted %v, want 2", n)
	}
	if n := h.counter("delta_exporter_capture_snapshots_failed_total", "stage", "after"); n != 2 {
		t.Errorf("after failures counted %v, want 2", n)
	}
	if n := h.counter("delta_exporter_capture_snapshots_written_total", "stage", "after"); n != 0 {
		t.Errorf("afters written: %v", n)
	}
}

// TestRealFullDisk: the snapshot directory on a 1 MiB tmpfs, filled by
// concurrent requests. Writes fail with the kernel's ENOSPC; requests are
// served, no temporary file is left, and every after that was written
// has its info. Needs the right to mount (root): skipped otherwise, and
// with -short (the everyday command mounts nothing); CI runs it.
func TestRealFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("mounts a tmpfs: not with -short")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	h := newHarness(t, fakeupstream.Config{Plan: concurrentPlan}, func(c *Config) {
		c.Dir = dir
		c.TimelineInterval = 2 * time.Millisecond
		c.AfterTimeout = 100 * time.Millisecond
		// The disk fills with distinct scrapes (a shared one is a hard
		// link): under load a budget spent on a slow /metrics made too
		// few of them to fill it.
		c.ScrapeBudget = -1
	})
	h.waitReady()
	// What fills the disk is mostly timeline scrapes, and a loaded
	// machine scrapes less often (and shares more scrapes between
	// requests, as hard links): one burst filled 1 MiB on a quiet
	// machine but not always under load. So burst until a write fails;
	// each burst adds at least its 96 info sidecars (a tmpfs page each),
	// so three bursts fill it whatever the timing.
	bursts := 1
	for ; ; bursts++ {
		h.burst(16, 6)
		if h.counter("delta_exporter_capture_snapshots_failed_total", "reason", reasonWrite) > 0 {
			break
		}
		if bursts == 5 {
			t.Fatal("the disk never filled up")
		}
	}
	h.p.Wait()
	h.stop()
	<-h.runDone
	if left, _ := os.ReadDir(filepath.Join(h.dir, TempDir)); len(left) != 0 {
		t.Errorf("%d temporary files left on a full disk: %v", len(left), left)
	}
	d := h.files()
	afters := 0
	for id, stages := range d.byID {
		if len(stages[parser.After]) != 0 {
			afters++
			if len(stages[parser.Info]) == 0 {
				t.Errorf("%s: an after without its info", id)
			}
		}
	}
	if afters == 0 {
		t.Error("no after was written before the disk filled: nothing checked its info")
	}
	t.Logf("%d burst(s): %d requests with files, %d afters, %v write failures", bursts, len(d.byID), afters,
		h.counter("delta_exporter_capture_snapshots_failed_total", "reason", reasonWrite))
}

// burstThenStop runs workers clients sending each chats, half of them
// streams, waits for their files and stops the background loop, so that
// nothing writes any more.
func (h *harness) burstThenStop(workers, each int) {
	h.burst(workers, each)
	h.p.Wait()
	h.stop()
	<-h.runDone
}

// burst runs workers clients sending each chats, half of them streams,
// and returns once every answer came.
func (h *harness) burst(workers, each int) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if r := h.chat((w+i)%2 == 0, 3, nil); r.status != 200 {
					h.t.Errorf("status %d", r.status)
				}
			}
		})
	}
	wg.Wait()
}
