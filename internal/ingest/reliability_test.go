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
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// clock is an injected clock; files get mtimes on it with Touch.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// clockedIngester reads w.Dir on the clock c, with short timings.
func clockedIngester(w *dirWriter, rec *record.Recorder, c *clock, fsys fs.FS) *Ingester {
	if fsys == nil {
		fsys = os.DirFS(w.Dir)
	}
	return New(Config{TrustAfters: true, FS: fsys, MaxObserveDelay: DefaultMaxObserveDelay, Results: rec.Publish, Metrics: rec, Now: c.Now, Settle: time.Second,
		IncompleteGrace: 5 * time.Second, PairingTTL: time.Minute, MaxDelay: time.Second})
}

// TestFileWrittenInPlace: a writer that writes the file under its final
// name (no rename) is not read while the file is fresh (--snapshot.settle),
// nor rejected while it is still incomplete and young
// (--snapshot.incomplete-grace); once complete and settled it counts.
func TestFileWrittenInPlace(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Truncate(time.Second)}
	rec := record.Once(t)
	in := clockedIngester(w, rec, c, nil)

	before := w.Snap("inplace", parser.Before)
	w.Touch(before, c.now.Add(-time.Minute))
	w.Server.ObserveFirstToken(model, 0, 0.1)
	f := finish(3)
	w.Server.ObserveFinish(model, 0, f)
	full := w.Scrape()
	after := parser.FormatName("inplace", parser.After, w.Now.Add(time.Millisecond))
	// First half written just now.
	w.Put(after, full[:len(full)/3])
	w.Touch(after, c.now)
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	if rec.Read != 1 || len(rec.Rejected) != 0 || len(rec.ByID) != 0 {
		t.Fatalf("a fresh file was read: read %d, rejected %v, results %d", rec.Read, rec.Rejected, len(rec.ByID))
	}
	// Settled but still incomplete (the writer paused): retried, not rejected.
	c.now = c.now.Add(2 * time.Second)
	in.Tick()
	if len(rec.Rejected) != 0 || len(rec.ByID) != 0 {
		t.Fatalf("an incomplete young file was rejected: %v", rec.Rejected)
	}
	// The writer finishes; the file settles.
	w.Put(after, full)
	w.Touch(after, c.now)
	in.Tick()
	if len(rec.ByID) != 0 {
		t.Fatal("read before it settled")
	}
	c.now = c.now.Add(2 * time.Second)
	in.Tick()
	c.now = c.now.Add(2 * time.Second)
	in.Tick()
	res, ok := rec.ByID["inplace"]
	if !ok || !attributed(res) || res.Values[parser.E2E].V != f.E2E {
		t.Fatalf("in-place file: %+v (ok=%v)", res, ok)
	}
	if len(rec.Rejected) != 0 || rec.Read != 2 {
		t.Fatalf("read %d, rejected %v", rec.Read, rec.Rejected)
	}
}

// TestIncompleteFileRejectedAfterGrace: a file that stays truncated is
// rejected as incomplete once it is older than the grace, and its request
// is rejected as bad_snapshot, counted once.
func TestIncompleteFileRejectedAfterGrace(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Truncate(time.Second)}
	rec := record.Once(t)
	in := clockedIngester(w, rec, c, nil)
	b := w.Snap("cut", parser.Before)
	full := w.Scrape()
	a := parser.FormatName("cut", parser.After, w.Now.Add(time.Millisecond))
	w.Put(a, full[:len(full)-7])
	w.Touch(b, c.now.Add(-2*time.Second))
	w.Touch(a, c.now.Add(-2*time.Second))
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c.now = c.now.Add(2 * time.Second)
		in.Tick()
	}
	if rec.Rejected["incomplete"] != 1 {
		t.Fatalf("rejected = %v, want incomplete once", rec.Rejected)
	}
	if res := rec.ByID["cut"]; res.Outcome != attribution.Rejected || res.RejectReason != attribution.RejectBadSnapshot {
		t.Fatalf("cut: %+v", res)
	}
}

// TestFileOverMaxBytes: a file larger than --snapshot.max-bytes is never
// read; its request is rejected.
func TestFileOverMaxBytes(t *testing.T) {
	w := newDirWriter(t)
	w.request("small", 1)
	w.Snap("big", parser.Before)
	w.Server.ObserveFinish(model, 0, finish(2))
	big := append(w.Scrape(), bytes.Repeat([]byte("# padding comment\n"), 4096)...)
	w.Put(parser.FormatName("big", parser.After, w.Now.Add(time.Millisecond)), big)
	rec := record.Once(t)
	in := New(Config{TrustAfters: true, FS: os.DirFS(w.Dir), Results: rec.Publish, Metrics: rec, MaxBytes: int64(len(big) - 1)})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	if rec.Rejected["too_large"] != 1 {
		t.Fatalf("rejected %v", rec.Rejected)
	}
	if res := rec.ByID["big"]; res.Outcome != attribution.Rejected || res.RejectReason != attribution.RejectBadSnapshot {
		t.Fatalf("big: %+v", res)
	}
	if !attributed(rec.ByID["small"]) {
		t.Fatalf("small: %+v", rec.ByID["small"])
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
	w.Snap("gone", parser.Before)
	w.Server.ObserveFinish(model, 0, finish(2))
	vanish := w.Snap("gone", parser.After)
	phantom := parser.FormatName("ghost", parser.Before, w.Now)
	rec := record.Once(t)
	in := New(Config{TrustAfters: true, FS: &vanishingFS{FS: os.DirFS(w.Dir), dir: w.Dir, phantom: phantom, vanish: vanish}, Results: rec.Publish, Metrics: rec})
	for i := 0; i < 3; i++ {
		if err := in.Scan(true); err != nil {
			t.Fatal(err)
		}
	}
	in.Finish()
	if rec.Rejected["read_error"] != 2 || len(rec.Rejected) != 1 {
		t.Fatalf("rejected = %v, want read_error twice (the phantom and the vanished file), once each", rec.Rejected)
	}
	if !attributed(rec.ByID["ok"]) {
		t.Fatalf("ok: %+v", rec.ByID["ok"])
	}
	if res := rec.ByID["gone"]; res.Outcome != attribution.Rejected || res.RejectReason != attribution.RejectBadSnapshot {
		t.Fatalf("gone: %+v, want rejected/bad_snapshot", res)
	}
	if res := rec.ByID["ghost"]; res.Outcome != attribution.Unpaired {
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
	w.Snap("dupseries", parser.Before)
	w.Server.ObserveFinish(model, 0, finish(1))
	body := w.Scrape()
	var count []byte
	for _, l := range bytes.SplitAfter(body, []byte("\n")) {
		if bytes.HasPrefix(l, []byte("vllm:e2e_request_latency_seconds_count")) {
			count = l
		}
	}
	if count == nil {
		t.Fatal("no e2e count line in the simulated scrape")
	}
	w.Put(parser.FormatName("dupseries", parser.After, w.Now.Add(time.Millisecond)), append(body, count...))
	if _, err := parser.Scan(append(body, count...)); !errors.Is(err, parser.ErrSyntax) {
		t.Fatalf("parser: %v, want ErrSyntax", err)
	}
	rec := record.Once(t)
	in := newTestIngester(w.Dir, rec)
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	if rec.Rejected["parse_error"] != 1 || rec.ByID["dupseries"].RejectReason != attribution.RejectBadSnapshot {
		t.Fatalf("rejected %v, result %+v", rec.Rejected, rec.ByID["dupseries"])
	}
}

// TestSourceAnomalies: a server restart between before and after, counters
// that go down, an after without a before, a before that expires after the
// pairing TTL: each rejected or unpaired with its reason, never a value.
func TestSourceAnomalies(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Add(time.Hour)} // every file is settled
	rec := record.Once(t)
	in := clockedIngester(w, rec, c, nil)

	// Restart: the after comes from a new process (new process_start_time).
	for i := 0; i < 3; i++ {
		w.Server.ObserveFinish(model, 0, finish(i))
	}
	w.Snap("restart", parser.Before)
	old := w.Server
	w.Server = simulate.NewServer(simulate.ServerConfig{Models: []string{model}, StartTime: simulate.DefaultStartTime().Add(time.Hour)})
	w.Server.ObserveFinish(model, 0, finish(5))
	w.Snap("restart", parser.After)
	// Counter reset without a new process_start_time: counts go down.
	w.Server = old
	w.Snap("reset", parser.Before)
	w.Server = simulate.NewServer(simulate.ServerConfig{Models: []string{model}})
	w.Server.ObserveFinish(model, 0, finish(6))
	w.Snap("reset", parser.After)
	// An after without a before.
	w.Snap("orphan", parser.After)
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	// A before whose after never comes.
	w.Snap("lonely", parser.Before)
	in.File(parser.FormatName("lonely", parser.Before, w.Now))

	for id, want := range map[string]attribution.Reason{"restart": attribution.RejectRestart, "reset": attribution.RejectCounterReset} {
		res := rec.ByID[id]
		if res.Outcome != attribution.Rejected || res.RejectReason != want {
			t.Errorf("%s: %s/%s, want rejected/%s", id, res.Outcome, res.RejectReason, want)
		}
		for m, v := range res.Values {
			if v.Exact {
				t.Errorf("%s: value published for %s", id, parser.Metric(m).Name())
			}
		}
	}
	if rec.Unpaired != 2 {
		t.Fatalf("pending unpaired = %d, want 2 (orphan, lonely)", rec.Unpaired)
	}
	// Not yet expired at TTL minus a bit; expired at the TTL.
	c.now = c.now.Add(time.Minute - time.Second)
	in.Tick()
	if _, ok := rec.ByID["lonely"]; ok {
		t.Fatal("expired before --pairing.ttl")
	}
	c.now = c.now.Add(time.Second)
	in.Tick()
	for _, id := range []string{"orphan", "lonely"} {
		if res, ok := rec.ByID[id]; !ok || res.Outcome != attribution.Unpaired {
			t.Errorf("%s: %+v, want unpaired", id, res)
		}
	}
	if rec.Unpaired != 0 {
		t.Errorf("pending unpaired = %d after expiry", rec.Unpaired)
	}
}

// TestDuplicateRejectionNamesItsFiles: when a second request with the
// same id arrives while the first waits for attribution, both rejections
// name their files (the state record identifies requests by file).
func TestDuplicateRejectionNamesItsFiles(t *testing.T) {
	w := newDirWriter(t)
	rec := record.Once(t)
	in := New(Config{TrustAfters: true, FS: os.DirFS(w.Dir), Results: rec.Publish, Metrics: rec, MaxDelay: time.Hour})
	b1 := w.Snap("twice", parser.Before)
	w.Snap("open", parser.Before) // keeps the first one waiting
	w.Server.ObserveFinish(model, 0, finish(1))
	a1 := w.Snap("twice", parser.After)
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	if len(rec.Results) != 0 {
		t.Fatalf("decided too early: %v", rec.IDs())
	}
	w.Snap("twice", parser.Before)
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	res := rec.ByID["twice"]
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
	w.Put(parser.FormatName("empty", parser.Before, w.Now.Add(time.Millisecond)), nil)
	tl := w.Snap("", parser.Timeline)
	w.Snap("held", parser.Before) // never gets its after
	w.request("done-2", 2)        // decided, but later than "held"
	if err := os.Mkdir(filepath.Join(w.Dir, parser.FormatName("adir", parser.Before, w.Now)), 0o755); err != nil {
		t.Fatal(err)
	}
	w.Put("notes.txt", []byte("x"))
	rec := record.Once(t)
	in := New(Config{TrustAfters: true, FS: os.DirFS(w.Dir), Results: rec.Publish, Metrics: rec})
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
	want := []string{rec.ByID["done-1"].BeforeFile, rec.ByID["done-1"].AfterFile, tl}
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
	rec := record.Once(t)
	in := clockedIngester(w, rec, c, nil)
	abandon := func(id string, at time.Time) {
		w.Put(parser.FormatName(id, parser.Info, at),
			[]byte(`{"after_error": "no scrape of the upstream metrics succeeded after the response: timeout"}`))
	}
	// One info named after its before, one before it (read first).
	w.Snap("chatcmpl-abandoned", parser.Before)
	abandon("chatcmpl-info-first", w.Now.Add(time.Millisecond))
	w.Snap("chatcmpl-info-first", parser.Before)
	f := w.request("chatcmpl-overlapped", 1)
	abandon("chatcmpl-abandoned", w.Now.Add(time.Millisecond))
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	c.now = c.now.Add(2 * time.Second) // past MaxDelay, far from PairingTTL
	in.Tick()
	for _, id := range []string{"chatcmpl-abandoned", "chatcmpl-info-first"} {
		if r, ok := rec.ByID[id]; !ok || r.Outcome != attribution.Unpaired {
			t.Errorf("%s: %q (published: %v), want unpaired now", id, r.Outcome, ok)
		}
	}
	r, ok := rec.ByID["chatcmpl-overlapped"]
	if !ok {
		t.Fatal("the overlapped request is still held back")
	}
	if v := r.Values[parser.E2E]; !v.Exact || v.V != f.E2E {
		t.Errorf("overlapped e2e %+v, want exact %v", v, f.E2E)
	}
	if n := rec.Unpaired; n != 0 {
		t.Errorf("%d halves still pending", n)
	}
}
