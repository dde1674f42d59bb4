package ingest

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestGrowingFileLoggedAndCountedOnce: a snapshot written in place keeps
// changing after it was read. Its change is logged and counted once, not
// on every change event, and a file first deferred (still settling) and
// then read on an event is not read again by the next tick: before, a
// growing file was counted too_large twice, and an in-place snapshot
// read twice made its request a duplicate.
func TestGrowingFileLoggedAndCountedOnce(t *testing.T) {
	w := newDirWriter(t)
	c := &clock{now: time.Now().Truncate(time.Second)}
	rec := record.Once(t)
	var logs bytes.Buffer
	in := New(Config{TrustAfters: true, FS: NewDirFS(w.Dir), Results: rec.Publish, Metrics: rec, Now: c.Now, Settle: time.Second,
		IncompleteGrace: 5 * time.Second, PairingTTL: time.Minute, MaxDelay: time.Second,
		MaxBytes: 64 << 10, Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	// An in-place pair: both files fresh at the first scan (deferred),
	// then settled and announced by events before the next tick.
	b := w.Snap("inplace", parser.Before)
	f := finish(1)
	w.Server.ObserveFirstToken(model, 0, f.Queue+f.Prefill)
	w.Server.ObserveFinish(model, 0, f)
	a := w.Snap("inplace", parser.After)
	// A file that grows past --snapshot.max-bytes while it is written.
	big := parser.FormatName("growing", parser.Before, w.Now.Add(time.Millisecond))
	w.Put(big, []byte("# start\n"))
	for _, name := range []string{a, b, big} {
		w.Touch(name, c.now)
	}
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	if len(in.deferred) != 3 {
		t.Fatalf("deferred %d files, want 3", len(in.deferred))
	}
	c.now = c.now.Add(2 * time.Second)
	w.Put(big, bytes.Repeat([]byte("# padding comment\n"), 8<<10))
	w.Touch(big, c.now.Add(-2*time.Second))
	for _, name := range []string{b, a, big} {
		in.File(name) // the write events
	}
	in.Tick()
	c.now = c.now.Add(2 * time.Second)
	in.Tick()
	if rec.Rejected["too_large"] != 1 || len(rec.Rejected) != 1 {
		t.Fatalf("rejected %v, want too_large once", rec.Rejected)
	}
	if res := rec.ByID["inplace"]; !attributed(res) || res.Values[parser.E2E].V != f.E2E {
		t.Fatalf("in-place pair: %s/%s %+v, want attributed", res.Outcome, res.RejectReason, res.Values)
	}
	// It keeps growing: 50 change events.
	for i := 0; i < 50; i++ {
		fh, err := os.OpenFile(filepath.Join(w.Dir, big), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString("# more\n")
		fh.Close()
		in.File(big)
	}
	if n := strings.Count(logs.String(), "changed after it was ingested"); n != 1 || rec.Ignored["changed"] != 1 {
		t.Fatalf("change logged %d times, counted %d, want once each", n, rec.Ignored["changed"])
	}
	if rec.Rejected["too_large"] != 1 {
		t.Fatalf("too_large counted %d times", rec.Rejected["too_large"])
	}
}
