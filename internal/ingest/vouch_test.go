package ingest

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestCaptureSidecarVouches: what vouches for a request's windows
// (docs/attribution.md, "What A1 rests on") reaches the attribution from
// the files. A request capture wrote (scrape-start lines, the info
// sidecar's first_byte_at, last_byte_at and after_observed) is attributed
// without any flag; one whose first scrape started before the first byte
// has its TTFT withheld as unvouched and its finish published; a plain
// pair is withheld as unvouched unless --attribution.trust-afters
// (Config.TrustAfters) vouches for it. The assumptions count the windows
// by who vouched for them.
func TestCaptureSidecarVouches(t *testing.T) {
	w := newDirWriter(t)
	base := w.Now
	ms := func(d float64) time.Duration { return time.Duration(d * float64(time.Millisecond)) }
	scrape := func(id string, stage parser.Stage, started time.Time) time.Time {
		at := started.Add(time.Millisecond) // the response arrives 1 ms later
		w.Put(parser.FormatName(id, stage, at), append(parser.AppendScrapeStarted(nil, started), w.Scrape()...))
		return at
	}
	// captured writes request i as capture does; its first scrape starts
	// 1 ms after the first byte, or 1 ms before it with early.
	captured := func(id string, i int, early bool) {
		f := finish(i)
		ttft := f.Queue + f.Prefill
		received := base.Add(time.Duration(i) * time.Second)
		scrape(id, parser.Before, received.Add(ms(0.2)))
		w.Server.ObserveFirstToken(model, 0, ttft)
		firstByte := received.Add(ms(1000*ttft + 2))
		firstAt := firstByte.Add(time.Millisecond)
		if early {
			firstAt = firstByte.Add(-time.Millisecond)
		}
		scrape(id, parser.First, firstAt)
		w.Server.ObserveFinish(model, 0, f)
		lastByte := received.Add(ms(1000*f.E2E + 2))
		scrape(id, parser.After, lastByte.Add(time.Millisecond))
		ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
		w.Put(parser.FormatName(id, parser.Info, received), fmt.Appendf(nil,
			`{"request_id":%q,"stream":true,"received_at":%q,"first_byte_at":%q,"last_byte_at":%q,"after_observed":true}`,
			id, ts(received), ts(firstByte), ts(lastByte)))
	}
	captured("chatcmpl-captured", 0, false)
	captured("chatcmpl-early-first", 1, true)
	w.Now = base.Add(2 * time.Second)
	w.request("chatcmpl-plain", 2)

	for _, trust := range []bool{false, true} {
		rec := record.Once(t)
		in := New(Config{FS: os.DirFS(w.Dir), TrustAfters: trust, Results: rec.Publish, Metrics: rec})
		if err := in.Scan(true); err != nil {
			t.Fatal(err)
		}
		in.Finish()
		rec.NoRejections(t)
		if res := rec.ByID["chatcmpl-captured"]; !attributed(res) {
			t.Errorf("trust %v: the captured request is %s: %+v", trust, res.Outcome, res.Values)
		}
		early := rec.ByID["chatcmpl-early-first"]
		if v := early.Values[parser.TTFT]; v.Reason != attribution.ReasonUnvouched {
			t.Errorf("trust %v: TTFT of a first scraped before the first byte: %+v", trust, v)
		}
		if v := early.Values[parser.E2E]; !v.Exact {
			t.Errorf("trust %v: e2e beside a first scraped before the first byte: %+v", trust, v)
		}
		plain := rec.ByID["chatcmpl-plain"]
		if trust && !attributed(plain) {
			t.Errorf("a plain pair with the flag is %s: %+v", plain.Outcome, plain.Values)
		}
		if !trust {
			for m, v := range plain.Values {
				if v.Reason != attribution.ReasonUnvouched && v.Reason != attribution.ReasonAbsent {
					t.Errorf("a plain pair without the flag: %s %+v, want unvouched", parser.Metric(m).Name(), v)
				}
			}
		}
		sa := in.Assumptions()
		if len(sa) != 1 {
			t.Fatalf("%d server processes", len(sa))
		}
		flag, unvouched := 0, 1
		if trust {
			flag, unvouched = 1, 0
		}
		if got, want := *sa[0].Status[attribution.AfterHolds].Windows, (attribution.Windows{Capture: 2, Flag: flag, Unvouched: unvouched}); got != want {
			t.Errorf("trust %v: after windows %+v, want %+v", trust, got, want)
		}
		// The flag does not vouch for first snapshots; a plain pair's
		// first token ends at its after, vouched for as the after is.
		if got, want := *sa[0].Status[attribution.FirstHolds].Windows, (attribution.Windows{Capture: 1, Flag: flag, Unvouched: 1 + unvouched}); got != want {
			t.Errorf("trust %v: first-token windows %+v, want %+v", trust, got, want)
		}
	}
}

// TestUnvouchedIsLoggedOnce: a directory of plain pairs without
// --attribution.trust-afters publishes no per-request value, and the
// reason alone does not tell the user what to do; one warning says it,
// whatever the number of requests, and none is logged with the flag.
func TestUnvouchedIsLoggedOnce(t *testing.T) {
	w := newDirWriter(t)
	base := w.Now
	for i := range 5 {
		w.Now = base.Add(time.Duration(i) * time.Second)
		w.request(fmt.Sprintf("chatcmpl-plain-%d", i), i)
	}
	for _, trust := range []bool{false, true} {
		var logs bytes.Buffer
		rec := record.Once(t)
		in := New(Config{FS: os.DirFS(w.Dir), TrustAfters: trust, Results: rec.Publish, Metrics: rec,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err := in.Scan(true); err != nil {
			t.Fatal(err)
		}
		in.Finish()
		if len(rec.ByID) != 5 {
			t.Fatalf("trust %v: %d requests decided, want 5", trust, len(rec.ByID))
		}
		want := 1
		if trust {
			want = 0
		}
		if got := strings.Count(logs.String(), "--attribution.trust-afters"); got != want {
			t.Errorf("trust %v: the hint logged %d times, want %d:\n%s", trust, got, want, logs.String())
		}
	}
}
