package ingest

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/parser"
)

// clock is an injected clock; files get mtimes on it with touch.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func touch(t *testing.T, dir, name string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(filepath.Join(dir, name), at, at); err != nil {
		t.Fatal(err)
	}
}

// clockedIngester reads w.dir on the clock c, with short timings.
func clockedIngester(w *dirWriter, rec *recorder, c *clock, fsys fs.FS) *Ingester {
	if fsys == nil {
		fsys = os.DirFS(w.dir)
	}
	return New(Config{FS: fsys, Publisher: rec, Now: c.Now, Settle: time.Second,
		IncompleteGrace: 5 * time.Second, PairingTTL: time.Minute, MaxDelay: time.Second, MaxObserveDelay: DefaultMaxObserveDelay})
}

// TestFileWrittenInPlace: a writer that writes the file under its final
// name (no rename) is not read while the file is fresh (--snapshot.settle),
// nor rejected while it is still incomplete and young
// (--snapshot.incomplete-grace); once complete and settled it counts.
func TestFileWrittenInPlace(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Truncate(time.Second)}
	rec := newRecorder()
	in := clockedIngester(w, rec, c, nil)

	before := w.snap("inplace", parser.Before)
	touch(t, w.dir, before, c.now.Add(-time.Minute))
	w.srv.ObserveFirstToken(model, 0, 0.1)
	f := finish(3)
	w.srv.ObserveFinish(model, 0, f)
	full := w.scrape()
	after := parser.FormatName("inplace", parser.After, w.now.Add(time.Millisecond))
	// First half written just now.
	w.put(after, full[:len(full)/3])
	touch(t, w.dir, after, c.now)
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	if rec.read != 1 || len(rec.rejected) != 0 || len(rec.results) != 0 {
		t.Fatalf("a fresh file was read: read %d, rejected %v, results %d", rec.read, rec.rejected, len(rec.results))
	}
	// Settled but still incomplete (the writer paused): retried, not rejected.
	c.now = c.now.Add(2 * time.Second)
	in.Tick()
	if len(rec.rejected) != 0 || len(rec.results) != 0 {
		t.Fatalf("an incomplete young file was rejected: %v", rec.rejected)
	}
	// The writer finishes; the file settles.
	w.put(after, full)
	touch(t, w.dir, after, c.now)
	in.Tick()
	if len(rec.results) != 0 {
		t.Fatal("read before it settled")
	}
	c.now = c.now.Add(2 * time.Second)
	in.Tick()
	c.now = c.now.Add(2 * time.Second)
	in.Tick()
	res, ok := rec.results["inplace"]
	if !ok || res.Outcome != attribution.Exact || res.Values[parser.E2E].V != f.E2E {
		t.Fatalf("in-place file: %+v (ok=%v)", res, ok)
	}
	if len(rec.rejected) != 0 || rec.read != 2 {
		t.Fatalf("read %d, rejected %v", rec.read, rec.rejected)
	}
}

// TestIncompleteFileRejectedAfterGrace: a file that stays truncated is
// rejected as incomplete once it is older than the grace, and its request
// is rejected as bad_snapshot, counted once.
func TestIncompleteFileRejectedAfterGrace(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Truncate(time.Second)}
	rec := newRecorder()
	in := clockedIngester(w, rec, c, nil)
	b := w.snap("cut", parser.Before)
	full := w.scrape()
	a := parser.FormatName("cut", parser.After, w.now.Add(time.Millisecond))
	w.put(a, full[:len(full)-7])
	touch(t, w.dir, b, c.now.Add(-2*time.Second))
	touch(t, w.dir, a, c.now.Add(-2*time.Second))
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c.now = c.now.Add(2 * time.Second)
		in.Tick()
	}
	if rec.rejected["incomplete"] != 1 {
		t.Fatalf("rejected = %v, want incomplete once", rec.rejected)
	}
	if res := rec.results["cut"]; res.Outcome != attribution.Rejected || res.RejectReason != attribution.RejectBadSnapshot {
		t.Fatalf("cut: %+v", res)
	}
}

// TestFileOverMaxBytes: a file larger than --snapshot.max-bytes is never
// read; its request is rejected.
func TestFileOverMaxBytes(t *testing.T) {
	w := newDirWriter(t)
	w.request("small", 1)
	w.snap("big", parser.Before)
	w.srv.ObserveFinish(model, 0, finish(2))
	big := append(w.scrape(), bytes.Repeat([]byte("# padding comment\n"), 4096)...)
	w.put(parser.FormatName("big", parser.After, w.now.Add(time.Millisecond)), big)
	rec := newRecorder()
	in := New(Config{FS: os.DirFS(w.dir), Publisher: rec, MaxBytes: int64(len(big) - 1)})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	if rec.rejected["too_large"] != 1 {
		t.Fatalf("rejected %v", rec.rejected)
	}
	if res := rec.results["big"]; res.Outcome != attribution.Rejected || res.RejectReason != attribution.RejectBadSnapshot {
		t.Fatalf("big: %+v", res)
	}
	if rec.results["small"].Outcome != attribution.Exact {
		t.Fatalf("small: %+v", rec.results["small"])
	}
}

// vanishingFS lists files that are gone by the time they are read: one
// listed but never there, one deleted right after its stat.
type vanishingFS struct {
	fs.FS
	dir     string
	phantom string
	vanish  string
}

type fakeEntry struct{ name string }

func (e fakeEntry) Name() string               { return e.name }
func (e fakeEntry) IsDir() bool                { return false }
func (e fakeEntry) Type() fs.FileMode          { return 0 }
func (e fakeEntry) Info() (fs.FileInfo, error) { return nil, fs.ErrNotExist }

func (v *vanishingFS) ReadDir(name string) ([]fs.DirEntry, error) {
	es, err := fs.ReadDir(v.FS, name)
	return append(es, fakeEntry{v.phantom}), err
}

func (v *vanishingFS) Lstat(name string) (fs.FileInfo, error) {
	info, err := v.FS.(fs.ReadLinkFS).Lstat(name)
	if name == v.vanish && err == nil {
		os.Remove(filepath.Join(v.dir, name))
	}
	return info, err
}

func (v *vanishingFS) ReadLink(name string) (string, error) {
	return v.FS.(fs.ReadLinkFS).ReadLink(name)
}

// TestFileDeletedBetweenListingAndReading: counted once as read_error, no
// value from it, the rest unharmed; a later scan forgets it.
func TestFileDeletedBetweenListingAndReading(t *testing.T) {
	w := newDirWriter(t)
	w.request("ok", 1)
	w.snap("gone", parser.Before)
	w.srv.ObserveFinish(model, 0, finish(2))
	vanish := w.snap("gone", parser.After)
	phantom := parser.FormatName("ghost", parser.Before, w.now)
	rec := newRecorder()
	in := New(Config{FS: &vanishingFS{FS: os.DirFS(w.dir), dir: w.dir, phantom: phantom, vanish: vanish}, Publisher: rec})
	for i := 0; i < 3; i++ {
		if err := in.Scan(true); err != nil {
			t.Fatal(err)
		}
	}
	in.Finish()
	if rec.rejected["read_error"] != 2 || len(rec.rejected) != 1 {
		t.Fatalf("rejected = %v, want read_error twice (the phantom and the vanished file), once each", rec.rejected)
	}
	if rec.results["ok"].Outcome != attribution.Exact {
		t.Fatalf("ok: %+v", rec.results["ok"])
	}
	if res := rec.results["gone"]; res.Outcome != attribution.Rejected || res.RejectReason != attribution.RejectBadSnapshot {
		t.Fatalf("gone: %+v, want rejected/bad_snapshot", res)
	}
	if res := rec.results["ghost"]; res.Outcome != attribution.Unpaired {
		t.Fatalf("ghost: %+v, want unpaired (no value from a file that was never there)", res)
	}
	if in.Known(vanish) {
		t.Fatal("the vanished file is still tracked after a scan that did not list it")
	}
}

// TestDuplicateSeries: a snapshot with a series twice is a parse error
// (parser.ErrSyntax), not a value.
func TestDuplicateSeries(t *testing.T) {
	w := newDirWriter(t)
	w.snap("dupseries", parser.Before)
	w.srv.ObserveFinish(model, 0, finish(1))
	body := w.scrape()
	var count []byte
	for _, l := range bytes.SplitAfter(body, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("vllm:e2e_request_latency_seconds_count")) {
			count = l
		}
	}
	if count == nil {
		t.Fatal("no e2e count line in the simulated scrape")
	}
	w.put(parser.FormatName("dupseries", parser.After, w.now.Add(time.Millisecond)), append(body, count...))
	if _, err := parser.Scan(append(body, count...)); !errors.Is(err, parser.ErrSyntax) {
		t.Fatalf("parser: %v, want ErrSyntax", err)
	}
	rec := newRecorder()
	in := newTestIngester(w.dir, rec)
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	if rec.rejected["parse_error"] != 1 || rec.results["dupseries"].RejectReason != attribution.RejectBadSnapshot {
		t.Fatalf("rejected %v, result %+v", rec.rejected, rec.results["dupseries"])
	}
}

// TestSourceAnomalies: a server restart between before and after, counters
// that go down, an after without a before, a before that expires after the
// pairing TTL: each rejected or unpaired with its reason, never a value.
func TestSourceAnomalies(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Add(time.Hour)} // every file is settled
	rec := newRecorder()
	in := clockedIngester(w, rec, c, nil)

	// Restart: the after comes from a new process (new process_start_time).
	for i := 0; i < 3; i++ {
		w.srv.ObserveFinish(model, 0, finish(i))
	}
	w.snap("restart", parser.Before)
	old := w.srv
	w.srv = simulate.NewServer(simulate.ServerConfig{Models: []string{model}, StartTime: simulate.DefaultStartTime().Add(time.Hour)})
	w.srv.ObserveFinish(model, 0, finish(5))
	w.snap("restart", parser.After)
	// Counter reset without a new process_start_time: counts go down.
	w.srv = old
	w.snap("reset", parser.Before)
	w.srv = simulate.NewServer(simulate.ServerConfig{Models: []string{model}})
	w.srv.ObserveFinish(model, 0, finish(6))
	w.snap("reset", parser.After)
	// An after without a before.
	w.snap("orphan", parser.After)
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	// A before whose after never comes.
	w.snap("lonely", parser.Before)
	in.File(parser.FormatName("lonely", parser.Before, w.now))

	for id, want := range map[string]attribution.Reason{"restart": attribution.RejectRestart, "reset": attribution.RejectCounterReset} {
		res := rec.results[id]
		if res.Outcome != attribution.Rejected || res.RejectReason != want {
			t.Errorf("%s: %s/%s, want rejected/%s", id, res.Outcome, res.RejectReason, want)
		}
		for m, v := range res.Values {
			if v.Exact {
				t.Errorf("%s: value published for %s", id, parser.Metric(m).Name())
			}
		}
	}
	if rec.pending["unpaired"] != 2 {
		t.Fatalf("pending unpaired = %d, want 2 (orphan, lonely)", rec.pending["unpaired"])
	}
	// Not yet expired at TTL minus a bit; expired at the TTL.
	c.now = c.now.Add(time.Minute - time.Second)
	in.Tick()
	if _, ok := rec.results["lonely"]; ok {
		t.Fatal("expired before --pairing.ttl")
	}
	c.now = c.now.Add(time.Second)
	in.Tick()
	for _, id := range []string{"orphan", "lonely"} {
		if res, ok := rec.results[id]; !ok || res.Outcome != attribution.Unpaired {
			t.Errorf("%s: %+v, want unpaired", id, res)
		}
	}
	if rec.pending["unpaired"] != 0 {
		t.Errorf("pending unpaired = %d after expiry", rec.pending["unpaired"])
	}
}

// TestDuplicateRejectionNamesItsFiles: when a second request with the
// same id arrives while the first waits for attribution, both rejections
// name their files (the state record identifies requests by file).
func TestDuplicateRejectionNamesItsFiles(t *testing.T) {
	w := newDirWriter(t)
	rec := newRecorder()
	in := New(Config{FS: os.DirFS(w.dir), Publisher: rec, MaxDelay: time.Hour})
	b1 := w.snap("twice", parser.Before)
	w.snap("open", parser.Before) // keeps the first one waiting
	w.srv.ObserveFinish(model, 0, finish(1))
	a1 := w.snap("twice", parser.After)
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	if len(rec.order) != 0 {
		t.Fatalf("decided too early: %v", rec.order)
	}
	w.snap("twice", parser.Before)
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	res := rec.results["twice"]
	if res.RejectReason != attribution.RejectDuplicate || res.BeforeFile != b1 || res.AfterFile != a1 {
		t.Fatalf("first request's rejection: %+v", res)
	}
}

// TestSettled: only fully read regular files of decided requests, older
// than every request still held, are offered to retention.
func TestSettled(t *testing.T) {
	w := newDirWriter(t)
	w.request("done-1", 1)
	// Empty and fresh: retried later, so not settled.
	w.put(parser.FormatName("empty", parser.Before, w.now.Add(time.Millisecond)), nil)
	tl := w.snap("", parser.Timeline)
	w.snap("held", parser.Before) // never gets its after
	w.request("done-2", 2)        // decided, but later than "held"
	if err := os.Mkdir(filepath.Join(w.dir, parser.FormatName("adir", parser.Before, w.now)), 0o755); err != nil {
		t.Fatal(err)
	}
	w.put("notes.txt", []byte("x"))
	rec := newRecorder()
	in := New(Config{FS: os.DirFS(w.dir), Publisher: rec})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	settled := func() []string {
		var got []string
		for _, f := range in.Settled() {
			got = append(got, f.Name)
			if f.Parsed.Stage != parser.Info && f.Size == 0 && !strings.HasPrefix(f.Name, "empty") {
				t.Errorf("%s: size 0", f.Name)
			}
		}
		slices.Sort(got)
		return got
	}
	want := []string{rec.results["done-1"].BeforeFile, rec.results["done-1"].AfterFile, tl}
	slices.Sort(want)
	if got := settled(); !slices.Equal(got, want) {
		t.Fatalf("settled:\n got %q\nwant %q", got, want)
	}
	// Once everything is decided, every file read is settled; the
	// directory and the non-snapshot never are.
	in.Finish()
	if got := settled(); len(got) != 7 {
		t.Fatalf("settled after Finish: %q, want 7 files", got)
	}
}

// TestAbandonedPairDroppedAtOnce: capture's info says that no after will
// come (after_error). The before is published as unpaired at once, not
// after --pairing.ttl (a minute here); the request it overlaps is decided
// as usual.
func TestAbandonedPairDroppedAtOnce(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Add(10 * time.Second)} // every file settled
	rec := newRecorder()
	in := clockedIngester(w, rec, c, nil)
	abandon := func(id string, at time.Time) {
		w.put(parser.FormatName(id, parser.Info, at),
			[]byte(`{"after_error": "no scrape of the upstream metrics succeeded after the response: timeout"}`))
	}
	// One info named after its before, one before it (read first).
	w.snap("chatcmpl-abandoned", parser.Before)
	abandon("chatcmpl-info-first", w.now.Add(time.Millisecond))
	w.snap("chatcmpl-info-first", parser.Before)
	f := w.request("chatcmpl-overlapped", 1)
	abandon("chatcmpl-abandoned", w.now.Add(time.Millisecond))
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	c.now = c.now.Add(2 * time.Second) // past MaxDelay, far from PairingTTL
	in.Tick()
	for _, id := range []string{"chatcmpl-abandoned", "chatcmpl-info-first"} {
		if r, ok := rec.results[id]; !ok || r.Outcome != attribution.Unpaired {
			t.Errorf("%s: %q (published: %v), want unpaired now", id, r.Outcome, ok)
		}
	}
	r, ok := rec.results["chatcmpl-overlapped"]
	if !ok {
		t.Fatal("the overlapped request is still held back")
	}
	if v := r.Values[parser.E2E]; !v.Exact || v.V != f.E2E {
		t.Errorf("overlapped e2e %+v, want exact %v", v, f.E2E)
	}
	if n := rec.pending["unpaired"]; n != 0 {
		t.Errorf("%d halves still pending", n)
	}
}
