package ingest

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// tickUntil moves the clock on and ticks until it has moved by d, every
// quarter second, as serve's loop would (more often, really), and
// returns the first offset from the start at which id was decided; -1:
// not decided. each, when not nil, runs before every tick.
func tickUntil(in *Ingester, c *clock, rec *record.Recorder, id string, d time.Duration, each func()) time.Duration {
	const every = 250 * time.Millisecond
	at := time.Duration(-1)
	for off := time.Duration(0); off <= d; off += every {
		if off > 0 {
			c.now = c.now.Add(every)
			if each != nil {
				each()
			}
			in.Tick()
		}
		if _, ok := rec.ByID[id]; ok && at < 0 {
			at = off
		}
	}
	return at
}

// patientIngester is clockedIngester with an hour's
// --attribution.max-delay: only files not read yet delay a decision.
func patientIngester(t *testing.T) (*dirWriter, *clock, *record.Recorder, *Ingester) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Truncate(time.Second)}
	rec := record.Once(t)
	in := clockedIngester(w, rec, c, nil)
	in.cfg.MaxDelay = time.Hour
	return w, c, rec, in
}

// TestFutureDatedFileIsSettledOnOurClock: an after whose modification
// time is ahead of the exporter's clock (a writer or a network volume on
// another clock) is read once it has not changed for --snapshot.settle
// on the exporter's clock, and its request is decided then. Waiting for
// the clocks to agree left the file deferred an hour, or forever. Files
// more than futureTolerance ahead are counted, once each.
func TestFutureDatedFileIsSettledOnOurClock(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ahead     time.Duration // the after's modification time, from our clock's now
		decidedAt time.Duration // when the request is decided, from the scan
		counted   int
	}{
		{"an hour ahead", time.Hour, time.Second, 1},
		{"a year ahead", 365 * 24 * time.Hour, time.Second, 1},
		{"within the tolerance", futureTolerance / 2, time.Second, 0},
		{"just past the tolerance", 2 * futureTolerance, time.Second, 1},
		{"settled on its own clock", -time.Minute, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, c, rec, in := patientIngester(t)
			f := finish(1)
			b, a := w.Request("skewed", model, 0.1, f)
			w.Touch(b, c.now.Add(-time.Minute))
			w.Touch(a, c.now.Add(tc.ahead))
			if err := in.Scan(false); err != nil {
				t.Fatal(err)
			}
			if got := tickUntil(in, c, rec, "skewed", 3*time.Second, nil); got != tc.decidedAt {
				t.Fatalf("decided %v after the scan, want %v (deferred: %v)", got, tc.decidedAt, in.deferred)
			}
			res := rec.ByID["skewed"]
			if !attributed(res) || res.Values[parser.E2E].V != f.E2E {
				t.Fatalf("result %+v, want attributed, e2e %v", res, f.E2E)
			}
			if rec.Read != 2 || len(rec.Rejected) != 0 || rec.FutureDated != tc.counted {
				t.Fatalf("read %d, rejected %v, %d counted as dated ahead; want 2, none, %d", rec.Read, rec.Rejected, rec.FutureDated, tc.counted)
			}
			if len(in.deferred) != 0 {
				t.Fatalf("still deferred: %v", in.deferred)
			}
		})
	}
}

// TestFutureDatedLoggedOnce: every file dated ahead is counted, once,
// and the first is logged with how far ahead it is; the others are not
// (a volume whose clock is ahead dates every file so).
func TestFutureDatedLoggedOnce(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Truncate(time.Second)}
	rec := record.Once(t)
	var logs bytes.Buffer
	in := New(Config{FS: os.DirFS(w.Dir), Results: rec.Publish, Metrics: rec, Now: c.Now, Settle: time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for i := range 3 {
		b, a := w.Request(fmt.Sprintf("r%d", i), model, 0.1, finish(i))
		w.Touch(b, c.now.Add(90*time.Minute))
		w.Touch(a, c.now.Add(90*time.Minute))
	}
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	tickUntil(in, c, rec, "r2", 2*time.Second, nil)
	if len(rec.ByID) != 3 || rec.FutureDated != 6 {
		t.Fatalf("%d decided, %d counted as dated ahead; want 3 and 6", len(rec.ByID), rec.FutureDated)
	}
	if n := strings.Count(logs.String(), "dated in the future"); n != 1 || !strings.Contains(logs.String(), "ahead=1h30m0s") {
		t.Fatalf("logged %d times, want once with ahead=1h30m0s:\n%s", n, logs.String())
	}
}

// TestFutureDatedFileStillBeingWritten: a file dated ahead that is
// written in place is not used half-written. While its size or time
// changes it is not read, even when what is written so far parses (the
// writer stopped at a family's end); once it stops changing it is read
// and checked for completeness as any file: a file cut short is retried
// until --snapshot.incomplete-grace has passed on our clock since it
// stopped changing, then rejected (it cannot hold decisions forever).
func TestFutureDatedFileStillBeingWritten(t *testing.T) {
	for _, tc := range []struct {
		name string
		// completes: the writer finishes the file at 1.5 s; otherwise
		// it stops there for good, in the middle of a line.
		completes bool
		decidedAt time.Duration
		want      attribution.Outcome
	}{
		// Unchanged from 1.5 s on: read at 2.5 s.
		{"completed", true, 2500 * time.Millisecond, attribution.Partial},
		// Read at 2.5 s, incomplete, rejected once the grace (5 s) has
		// passed since 1.5 s.
		{"stays cut", false, 6500 * time.Millisecond, attribution.Rejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, c, rec, in := patientIngester(t)
			b := w.Snap("inplace", parser.Before)
			w.Touch(b, c.now.Add(-time.Minute))
			f := finish(2)
			w.Observe(model, 0.1, f)
			full := w.Scrape()
			// A prefix that parses: whole families only.
			families := full[:bytes.LastIndex(full[:2*len(full)/3], []byte("\n# HELP"))+1]
			if _, err := parser.Scan(families); err != nil {
				t.Fatalf("the prefix of whole families does not parse: %v", err)
			}
			a := parser.FormatName("inplace", parser.After, w.Now.Add(time.Millisecond))
			start, ahead := c.now, time.Hour
			// The writer's clock is an hour ahead; it writes a third
			// now, whole families at 1 s and the rest, or (stays cut)
			// more but not all, at 1.5 s.
			write := func() {
				switch off := c.now.Sub(start); {
				case off == 0:
					w.PutAt(a, full[:len(full)/3], c.now.Add(ahead))
				case off == time.Second:
					w.PutAt(a, families, c.now.Add(ahead))
				case off == 1500*time.Millisecond && tc.completes:
					w.PutAt(a, full, c.now.Add(ahead))
				case off == 1500*time.Millisecond:
					w.PutAt(a, full[:5*len(full)/6], c.now.Add(ahead))
				}
			}
			write()
			if err := in.Scan(false); err != nil {
				t.Fatal(err)
			}
			used := func() {
				// Never used half-written: the request is decided only
				// from the whole file, or rejected.
				if res, ok := rec.ByID["inplace"]; ok && res.Values[parser.E2E].Exact && res.Values[parser.E2E].V != f.E2E {
					t.Fatalf("decided from a partial file: %+v", res)
				}
			}
			got := tickUntil(in, c, rec, "inplace", 8*time.Second, func() { write(); used() })
			if got != tc.decidedAt {
				t.Fatalf("decided %v after the scan, want %v", got, tc.decidedAt)
			}
			res := rec.ByID["inplace"]
			if res.Outcome != tc.want || (tc.want == attribution.Partial && !attributed(res)) {
				t.Fatalf("outcome %v, want %v: %+v", res.Outcome, tc.want, res)
			}
			if tc.completes {
				if res.Values[parser.E2E].V != f.E2E || len(rec.Rejected) != 0 {
					t.Fatalf("result %+v, rejected %v", res, rec.Rejected)
				}
			} else if rec.Rejected["incomplete"] != 1 || res.RejectReason != attribution.RejectBadSnapshot {
				t.Fatalf("rejected %v, result %+v: want incomplete once, bad_snapshot", rec.Rejected, res)
			}
			if rec.FutureDated != 1 {
				t.Fatalf("counted %d times as dated ahead, want once", rec.FutureDated)
			}
		})
	}
}

// TestDeferredFileHoldsOnlyWhatItMayChange: request A is paired and
// nothing open overlaps it; another file is deferred. A waits only for a
// file that may change it, and no longer than that file takes to settle
// or be rejected, or --snapshot.incomplete-grace for one that never
// settles: never --attribution.max-delay (an hour here) because of a
// file dated ahead, a file of another request, a file rejected or a
// writer that never stops.
func TestDeferredFileHoldsOnlyWhatItMayChange(t *testing.T) {
	for _, tc := range []struct {
		name string
		// put writes the other file; aEnd is the time in A's after's
		// name, now the clock's. It is called again at every tick.
		put       func(w *dirWriter, aEnd, now time.Time, first bool)
		decidedAt time.Duration
		deferred  bool // the other file is still deferred at the end
	}{
		{"a before dated an hour ahead, named within A: held until it settles", func(w *dirWriter, aEnd, now time.Time, first bool) {
			if first {
				w.PutAt(parser.FormatName("b", parser.Before, aEnd.Add(-time.Millisecond)), w.Scrape(), now.Add(time.Hour))
			}
		}, time.Second, false},
		{"a before being written, named after A: not held", func(w *dirWriter, aEnd, now time.Time, _ bool) {
			w.PutAt(parser.FormatName("b", parser.Before, aEnd.Add(time.Minute)), w.Scrape(), now)
		}, 0, true},
		{"another request's info being written, named within A: not held", func(w *dirWriter, aEnd, now time.Time, _ bool) {
			w.PutAt(parser.FormatName("b", parser.Info, aEnd.Add(-time.Millisecond)), []byte(`{"request_id":"b"}`), now)
		}, 0, true},
		{"a before cut short, named within A: held until rejected", func(w *dirWriter, aEnd, now time.Time, first bool) {
			if first {
				s := w.Scrape()
				w.PutAt(parser.FormatName("b", parser.Before, aEnd.Add(-time.Millisecond)), s[:len(s)-7], now.Add(-2*time.Second))
			}
		}, 3 * time.Second, false},
		{"a before named within A that never stops changing: held until the grace", func(w *dirWriter, aEnd, now time.Time, _ bool) {
			w.PutAt(parser.FormatName("b", parser.Before, aEnd.Add(-time.Millisecond)), w.Scrape(), now)
		}, 5 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, c, rec, in := patientIngester(t)
			b, a := w.Request("a", model, 0.1, finish(1))
			w.Touch(b, c.now.Add(-time.Minute))
			w.Touch(a, c.now.Add(-time.Minute))
			aEnd := w.Now
			tc.put(w, aEnd, c.now, true)
			if err := in.Scan(false); err != nil {
				t.Fatal(err)
			}
			got := tickUntil(in, c, rec, "a", 6*time.Second, func() { tc.put(w, aEnd, c.now, false) })
			if got != tc.decidedAt {
				t.Fatalf("A decided %v after the scan, want %v (deferred %v)", got, tc.decidedAt, in.deferred)
			}
			if res := rec.ByID["a"]; !attributed(res) {
				t.Fatalf("A: %+v", res)
			}
			if (len(in.deferred) != 0) != tc.deferred {
				t.Fatalf("deferred at the end: %v", in.deferred)
			}
		})
	}
}

// TestHeld: which paired request a deferred file holds, by its stage and
// the time in its name (held).
func TestHeld(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	req := &attribution.Request{ID: "r", BeforeTime: t0, AfterTime: t0.Add(10 * time.Second)}
	for _, tc := range []struct {
		stage parser.Stage
		id    string
		at    time.Duration // the time in its name, from r's before
		want  bool
	}{
		// A before may open a request overlapping any that ends after it.
		{parser.Before, "x", -time.Hour, true},
		{parser.Before, "x", 5 * time.Second, true},
		{parser.Before, "x", 10*time.Second + nameClockMargin/2, true},
		{parser.Before, "x", 10*time.Second + 2*nameClockMargin, false},
		// A point pins what lies in the windows spanning its time.
		{parser.After, "x", 5 * time.Second, true},
		{parser.After, "x", -2 * nameClockMargin, false},
		{parser.After, "x", 10*time.Second + 2*nameClockMargin, false},
		{parser.First, "x", -nameClockMargin / 2, true},
		{parser.First, "x", time.Hour, false},
		{parser.Timeline, "", 10 * time.Second, true},
		{parser.Timeline, "", -time.Hour, false},
		// An info sidecar changes its own request only.
		{parser.Info, "x", 5 * time.Second, false},
		// Any file of r holds r, whenever it is named.
		{parser.Info, "r", time.Hour, true},
		{parser.First, "r", time.Hour, true},
		{parser.After, "r", -time.Hour, true},
	} {
		t.Run(fmt.Sprintf("%s %s at %v", tc.stage, tc.id, tc.at), func(t *testing.T) {
			in := New(Config{FS: nil})
			name := parser.FormatName(tc.id, tc.stage, t0.Add(tc.at))
			n, err := parser.ParseName(name)
			if err != nil {
				t.Fatal(err)
			}
			in.deferred[name] = n
			if got := in.held()(req); got != tc.want {
				t.Fatalf("held %v, want %v", got, tc.want)
			}
		})
	}
	if New(Config{}).held() != nil {
		t.Fatal("nothing deferred, yet something is held")
	}
}

// TestFutureDatedDirectoryReadsAsOurs: a directory where some files
// carry modification times an hour ahead (written through a volume, or
// by a host, whose clock is ahead) is read as the same directory with
// true times: by report (--snapshot.settle off, every request decided at
// the end of the scan), and by serve's initial scan (files settle on our
// clock after it, and the requests they may change wait for them).
// Waiting for the clocks to agree left those files for report's Finish,
// read after the scan had decided the requests around them without them;
// serve's initial scan decided those requests without them too.
func TestFutureDatedDirectoryReadsAsOurs(t *testing.T) {
	dir := t.TempDir()
	if _, err := simulate.Run(simulate.Config{Seed: 7, Requests: 60, MeanInFlight: 4,
		Models: []string{"llama-8b"}, Engines: 2}, simulate.DirSink(dir)); err != nil {
		t.Fatal(err)
	}
	report := func() *record.Recorder {
		rec := record.Once(t)
		in := newTestIngester(dir, rec) // --snapshot.settle off, as report
		if err := in.Scan(true); err != nil {
			t.Fatal(err)
		}
		in.Finish()
		return rec
	}
	ours := report()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ahead, skewed := time.Now().Add(time.Hour), 0
	for i, e := range entries {
		if i%3 != 0 {
			continue
		}
		if err := os.Chtimes(filepath.Join(dir, e.Name()), ahead, ahead); err != nil {
			t.Fatal(err)
		}
		skewed++
	}
	for _, tc := range []struct {
		name string
		read func() *record.Recorder
	}{
		{"report", report},
		{"serve's initial scan", func() *record.Recorder {
			rec := record.Once(t)
			c := &clock{now: time.Now().Add(time.Minute)} // the other files are settled
			in := newTestIngester(dir, rec)
			in.cfg.Settle, in.cfg.MaxDelay, in.cfg.Now = time.Second, time.Minute, c.Now
			if err := in.Scan(true); err != nil {
				t.Fatal(err)
			}
			for range 8 {
				c.now = c.now.Add(250 * time.Millisecond)
				in.Tick()
			}
			return rec // without Finish: decided as files come
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			theirs := tc.read()
			exact := 0
			for id, want := range ours.ByID {
				got := theirs.ByID[id]
				if fmt.Sprint(got.Outcome, got.Values, got.TPOT) != fmt.Sprint(want.Outcome, want.Values, want.TPOT) {
					t.Errorf("%s: %s/%v with a third of the times ahead, %s/%v with ours", id, got.Outcome, got.Values, want.Outcome, want.Values)
				}
				if want.Outcome == attribution.Exact {
					exact++
				}
			}
			if len(theirs.ByID) != len(ours.ByID) || exact == 0 {
				t.Fatalf("%d requests decided with times ahead, %d with ours, %d exact", len(theirs.ByID), len(ours.ByID), exact)
			}
			t.Logf("%d of %d requests exact; %d files of %d dated ahead", exact, len(ours.ByID), skewed, len(entries))
			if theirs.FutureDated != skewed || ours.FutureDated != 0 {
				t.Fatalf("counted %d files dated ahead of %d (and %d with our times)", theirs.FutureDated, skewed, ours.FutureDated)
			}
		})
	}
}

// TestSettledFutureDatedFiles: Settled carries, for a file whose
// modification time was ahead of our clock when it was first looked at,
// when that was (retention ages it by that), and zero for any other
// file. Whether it is offered at all stays decided by the time in its
// name against the held requests' (the timeline's order): a timeline
// snapshot named ahead by a writer whose clock is ahead is kept while a
// request of the same writer, named before it, waits for its after,
// although it was seen long before that request's time on our clock.
func TestSettledFutureDatedFiles(t *testing.T) {
	const year = 365 * 24 * time.Hour
	for _, tc := range []struct {
		name                 string
		tlNamed, tlModified  time.Duration // the timeline snapshot's times, from our clock's now
		heldNamed            time.Duration // the waiting before's name and modification time
		offered, seenOurTime bool          // while the before waits
	}{
		{"modified ahead, named before the held request", -10 * time.Second, year, -5 * time.Second, true, true},
		{"modified ahead, named after the held request", -time.Second, year, -5 * time.Second, false, true},
		{"named and modified ahead, held request of the same clock before it", year, year, year - time.Second, false, true},
		{"named and modified ahead, held request of a clock that is right", year, year, -5 * time.Second, false, true},
		{"ordinary, named before the held request", -10 * time.Second, -10 * time.Second, -5 * time.Second, true, false},
		{"ordinary, named after the held request", -time.Second, -time.Second, -5 * time.Second, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newDirWriter(t)
			c := &clock{now: time.Now().Truncate(time.Second)}
			t0 := c.now
			rec := record.Once(t)
			in := clockedIngester(w, rec, c, nil)
			held := t0.Add(tc.heldNamed)
			w.SnapAt("waiting", parser.Before, held) // modified at its name's time: a writer ahead, its volume too
			tl := w.SnapAt("", parser.Timeline, t0.Add(tc.tlNamed))
			w.Touch(tl, t0.Add(tc.tlModified))
			if err := in.Scan(false); err != nil {
				t.Fatal(err)
			}
			c.now = c.now.Add(2 * time.Second) // unchanged for Settle on our clock: read
			in.Tick()
			if len(in.deferred) != 0 {
				t.Fatalf("still deferred: %v", in.deferred)
			}
			find := func() (snapfile.Settled, bool) {
				for _, f := range in.Settled() {
					if f.Name == tl {
						return f, true
					}
				}
				return snapfile.Settled{}, false
			}
			f, ok := find()
			if ok != tc.offered {
				t.Fatalf("timeline snapshot offered = %v, want %v", ok, tc.offered)
			}
			if ok && f.SeenAt.IsZero() == tc.seenOurTime {
				t.Fatalf("seen at %v; want our clock's %v: %v", f.SeenAt, t0, tc.seenOurTime)
			}
			// The request decided, nothing holds the snapshot back.
			w.Observe(model, 0.1, finish(1))
			w.SnapAt("waiting", parser.After, held.Add(2*time.Second))
			if err := in.Scan(false); err != nil {
				t.Fatal(err)
			}
			c.now = c.now.Add(2 * time.Second)
			in.Tick()
			in.Finish()
			if _, ok := rec.ByID["waiting"]; !ok {
				t.Fatal("the waiting request was not decided")
			}
			f, ok = find()
			if !ok {
				t.Fatal("timeline snapshot not offered once nothing is held")
			}
			if want := map[bool]time.Time{true: t0}[tc.seenOurTime]; !f.SeenAt.Equal(want) {
				t.Fatalf("seen at %v, want %v", f.SeenAt, want)
			}
		})
	}
}
