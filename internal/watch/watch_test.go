package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// fakeWatcher stands for fsnotify: it can fail to start, fail to add the
// directory, or never report anything (a network filesystem).
type fakeWatcher struct {
	newErr, addErr error
	ev             chan fsnotify.Event
	errs           chan error
}

func newFake() *fakeWatcher {
	return &fakeWatcher{ev: make(chan fsnotify.Event), errs: make(chan error)}
}

func (f *fakeWatcher) Add(string) error              { return f.addErr }
func (f *fakeWatcher) Close() error                  { return nil }
func (f *fakeWatcher) events() <-chan fsnotify.Event { return f.ev }
func (f *fakeWatcher) errors() <-chan error          { return f.errs }
func (f *fakeWatcher) factory() func() (fsWatcher, error) {
	return func() (fsWatcher, error) {
		if f.newErr != nil {
			return nil, f.newErr
		}
		return f, nil
	}
}

// counter counts events; safe for concurrent use.
type counter struct {
	mu sync.Mutex
	n  map[Notice]int
}

func (c *counter) WatchEvent(e Notice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[Notice]int{}
	}
	c.n[e]++
}

func (c *counter) snapshot() map[Notice]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := map[Notice]int{}
	for k, v := range c.n {
		m[k] = v
	}
	return m
}

func (c *counter) get(e Notice) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[e]
}

// collect reads events for d of (virtual) time.
func collect(out <-chan Event, d time.Duration) []Event {
	var evs []Event
	timeout := time.After(d)
	for {
		select {
		case ev := <-out:
			evs = append(evs, ev)
		case <-timeout:
			return evs
		}
	}
}

func triggers(evs []Event) []string {
	var ts []string
	for _, e := range evs {
		if e.Rescan {
			ts = append(ts, string(e.Trigger))
		} else {
			ts = append(ts, "file:"+e.Name)
		}
	}
	return ts
}

// TestWatcherStartFailure: in auto mode a watcher that cannot start (or
// cannot watch the directory) means polling, counted as an error; in
// inotify mode it is a startup error.
func TestWatcherStartFailure(t *testing.T) {
	tests := []struct {
		name    string
		mode    Mode
		fake    *fakeWatcher
		wantErr bool
	}{
		{"auto, no inotify instance", Auto, &fakeWatcher{newErr: errors.New("too many open files")}, false},
		{"auto, cannot watch the directory", Auto, &fakeWatcher{addErr: errors.New("no space left on device")}, false},
		{"inotify, cannot start", Inotify, &fakeWatcher{newErr: errors.New("too many open files")}, true},
		{"poll", Poll, &fakeWatcher{newErr: errors.New("never called")}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				c := &counter{}
				out := make(chan Event)
				errc := make(chan error, 1)
				go func() {
					errc <- Run(ctx, Config{Dir: t.TempDir(), Mode: tc.mode, PollInterval: time.Second,
						RescanInterval: time.Hour, Counter: c, newWatcher: tc.fake.factory()}, out)
				}()
				evs := collect(out, 3500*time.Millisecond)
				if tc.wantErr {
					if err := <-errc; err == nil || len(evs) != 0 {
						t.Fatalf("err %v, events %v", err, evs)
					}
					return
				}
				want := "initial timer timer timer"
				if got := strings.Join(triggers(evs), " "); got != want {
					t.Fatalf("events %q, want %q (polling every second)", got, want)
				}
				wantErrors := 1
				if tc.mode == Poll {
					wantErrors = 0
				}
				if c.get("error") != wantErrors {
					t.Fatalf("error count %d, want %d", c.get("error"), wantErrors)
				}
			})
		})
	}
}

// TestWatcherFaultsRescan: a queue overflow or any watcher error asks for
// a full rescan at once and is counted; a watcher that reports nothing at
// all (a network filesystem) still gets the periodic rescan; file events
// are hints by name.
func TestWatcherFaultsRescan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		dir := t.TempDir()
		c := &counter{}
		f := newFake()
		out := make(chan Event)
		go Run(ctx, Config{Dir: dir, Mode: Auto, RescanInterval: 10 * time.Second, PollInterval: time.Second,
			Counter: c, newWatcher: f.factory()}, out)
		if ev := <-out; ev.Trigger != "initial" {
			t.Fatalf("first event %+v", ev)
		}
		f.errs <- fsnotify.ErrEventOverflow
		if ev := <-out; !ev.Rescan || ev.Trigger != "overflow" {
			t.Fatalf("after overflow: %+v", ev)
		}
		f.errs <- errors.New("read error")
		if ev := <-out; !ev.Rescan || ev.Trigger != "error" {
			t.Fatalf("after error: %+v", ev)
		}
		f.ev <- fsnotify.Event{Name: filepath.Join(dir, "a_before_20260101_000000_000000.txt"), Op: fsnotify.Create}
		if ev := <-out; ev.Rescan || ev.Name != "a_before_20260101_000000_000000.txt" {
			t.Fatalf("create: %+v", ev)
		}
		// Neither is a hint: chmod is noise, a removed name is gone.
		f.ev <- fsnotify.Event{Name: filepath.Join(dir, "a_before_20260101_000000_000000.txt"), Op: fsnotify.Chmod}
		f.ev <- fsnotify.Event{Name: filepath.Join(dir, "b"), Op: fsnotify.Remove}
		// Nothing more is reported: only the timer rescans, every 10s.
		evs := collect(out, 35*time.Second)
		if got := strings.Join(triggers(evs), " "); got != "timer timer timer" {
			t.Fatalf("silent watcher: %q", got)
		}
		for e, n := range map[Notice]int{"overflow": 1, "error": 1, "create": 1, "remove": 1} {
			if c.get(e) != n {
				t.Errorf("%s counted %d, want %d", e, c.get(e), n)
			}
		}
	})
}

// pairWriter writes sequential request pairs req-1, req-2, … of a
// simulated server into dir.
type pairWriter struct {
	*testutil.Snapshots
	n int
}

func newPairWriter(t *testing.T, dir string) *pairWriter {
	w := testutil.NewSnapshots(t, dir, "m")
	w.Now = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	return &pairWriter{Snapshots: w}
}

func (p *pairWriter) pairs(n int) {
	for i := 0; i < n; i++ {
		p.n++
		p.Request("req-"+strconv.Itoa(p.n), "m", 0.03,
			simulate.Finish{Queue: 0.01, Prefill: 0.02, Decode: 0.1, Inference: 0.12, E2E: 0.13 + float64(p.n)*1e-3, PromptTokens: 9, GenerationTokens: 4})
	}
}

// consume is the serve loop in small: it feeds events to an ingester
// until want requests are exact or the deadline passes, and returns the
// ids of the exact requests (pairs, read with --attribution.trust-afters).
// The test fails if one is decided twice.
func consume(t *testing.T, dir string, out <-chan Event, want int, deadline time.Duration) map[string]bool {
	t.Helper()
	rec := record.Once(t)
	in := ingest.New(ingest.Config{FS: os.DirFS(dir), TrustAfters: true, Results: rec.Publish, MaxDelay: 10 * time.Millisecond})
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	end := time.After(deadline)
	for len(exact(rec)) < want {
		select {
		case ev := <-out:
			if ev.Rescan {
				in.Scan(ev.Trigger == Initial)
			} else {
				in.File(ev.Name)
			}
		case <-tick.C:
			in.Tick()
		case <-end:
			t.Fatalf("%d of %d requests ingested after %v", len(exact(rec)), want, deadline)
		}
	}
	return exact(rec)
}

// exact returns the ids of the requests rec holds whose e2e was published
// exact: the pair was found, read and attributed. (The first few requests
// of a server are partial: they cannot confirm the other families'
// moments.)
func exact(rec *record.Recorder) map[string]bool {
	ids := map[string]bool{}
	for _, r := range rec.Results {
		if r.Values[parser.E2E].Exact {
			ids[r.RequestID] = true
		}
	}
	return ids
}

// TestInotifyOverflowConverges: a real inotify queue overflow (more
// events than fs.inotify.max_queued_events while the consumer is stuck)
// loses events; the rescan it triggers finds every pair.
func TestInotifyOverflowConverges(t *testing.T) {
	limit := 16384
	if b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events"); err == nil {
		limit, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if limit <= 0 || limit > 1<<17 {
		t.Skipf("max_queued_events = %d: too many files to overflow in a test", limit)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c := &counter{}
	out := make(chan Event)
	go Run(ctx, Config{Dir: dir, Mode: Inotify, RescanInterval: time.Hour, Counter: c}, out)
	if ev := <-out; ev.Trigger != "initial" {
		t.Fatalf("first event %+v", ev)
	}
	// Nobody reads: the kernel queue fills up with the pairs' events and
	// with empty files that are not snapshots.
	p := newPairWriter(t, dir)
	p.pairs(50)
	for i := 0; i <= limit; i++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("filler-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	p.pairs(50)
	start := time.Now()
	consume(t, dir, out, 100, 60*time.Second)
	if c.get("overflow") == 0 {
		t.Fatalf("no overflow counted (events: %v)", c.snapshot())
	}
	t.Logf("%d files created while the consumer was stuck; events counted %v; all 100 pairs ingested %v after it resumed",
		limit+1+200, c.snapshot(), time.Since(start).Round(time.Millisecond))
}

// TestDirectoryRemovedAndRecreated: the snapshot directory disappears and
// comes back (a volume remounted, a cleanup script); pairs written to the
// new directory are all ingested, with inotify and with polling.
func TestDirectoryRemovedAndRecreated(t *testing.T) {
	for _, mode := range []Mode{Inotify, Poll} {
		t.Run(string(mode), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "snapshots")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := newPairWriter(t, dir)
			p.pairs(5)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			c := &counter{}
			out := make(chan Event, 64)
			go Run(ctx, Config{Dir: dir, Mode: mode, RescanInterval: time.Hour, PollInterval: 20 * time.Millisecond, Counter: c}, out)
			res := consume(t, dir, out, 5, 30*time.Second)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			time.Sleep(60 * time.Millisecond) // let the watcher see it gone (not required for correctness)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p.pairs(5)
			more := consume(t, dir, out, 5, 30*time.Second)
			for id := range more {
				if res[id] {
					t.Errorf("%s ingested before and after the directory came back", id)
				}
			}
			if mode == Inotify && c.get("remove") == 0 {
				t.Errorf("directory removal not counted: %v", c.snapshot())
			}
		})
	}
}
