package retention

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
	"github.com/delta-exporter/delta-exporter/parser"
)

type counts struct {
	deleted map[Reason]int
	bytes   int64
	failed  int
}

func (c *counts) Deleted(reason Reason, n int64) { c.deleted[reason]++; c.bytes += n }
func (c *counts) DeleteFailed()                  { c.failed++ }

const model = "org/m"

// snapDir writes snapshots of a simulated server with chosen name times
// and modification times.
type snapDir struct{ *testutil.Snapshots }

func newSnapDir(t *testing.T) *snapDir {
	return &snapDir{testutil.NewSnapshots(t, t.TempDir(), model)}
}

// request writes a sequential request at time at (a pair, read with
// --attribution.trust-afters); it returns its files.
func (d *snapDir) request(id string, at time.Time) []string {
	b, a := d.RequestAt(id, model, 0.03, simulate.Finish{Queue: 0.01, Prefill: 0.02, Decode: 0.3, Inference: 0.32, E2E: 0.331, PromptTokens: 10, GenerationTokens: 5},
		at, at.Add(time.Second))
	return []string{b, a}
}

// TestRetentionDeletesOnlySettledOldFiles: with --snapshots.retention=7d,
// exactly the ingested files of decided requests older than 7 days go;
// nothing else in the directory is touched.
func TestRetentionDeletesOnlySettledOldFiles(t *testing.T) {
	now := time.Now()
	old, recent := now.Add(-8*24*time.Hour), now.Add(-time.Hour)
	d := newSnapDir(t)
	var want []string // expected to be deleted
	want = append(want, d.request("old-1", old)...)
	want = append(want, d.request("old-2", old.Add(time.Minute))...)
	want = append(want, d.SnapAt("", parser.Timeline, old.Add(2*time.Minute)))
	// Old, but not ingested or not snapshots: never deleted.
	d.PutAt("notes.txt", []byte("keep me"), old)
	d.PutAt("x_before_20251106_225030_12345.txt", []byte("bad name"), old)
	d.PutAt(parser.FormatName("junkname", parser.Before, old)+".bak", []byte("x"), old)
	// A directory and a symlink with snapshot names, each paired with a
	// regular file: the regular halves go, they stay.
	if err := os.Mkdir(filepath.Join(d.Dir, parser.FormatName("adir", parser.Before, old.Add(10*time.Second))), 0o755); err != nil {
		t.Fatal(err)
	}
	want = append(want, d.SnapAt("adir", parser.After, old.Add(11*time.Second)))
	want = append(want, d.SnapAt("alink", parser.Before, old.Add(20*time.Second)))
	target := d.PutAt("target.txt", []byte("the target of a symlink"), old)
	if err := os.Symlink(target, filepath.Join(d.Dir, parser.FormatName("alink", parser.After, old.Add(21*time.Second)))); err != nil {
		t.Fatal(err)
	}
	// A request whose before is too large to read: its after goes, the
	// unread before stays.
	d.PutAt(parser.FormatName("huge", parser.Before, old.Add(30*time.Second)), bytes.Repeat([]byte("#\n"), 64<<10), old)
	want = append(want, d.SnapAt("huge", parser.After, old.Add(31*time.Second)))
	// Old, ingested, but its request is still undecided (no after yet):
	// neither it nor anything newer may go.
	d.SnapAt("waiting", parser.Before, old.Add(3*time.Minute))
	d.SnapAt("", parser.Timeline, old.Add(4*time.Minute))
	d.request("old-after-waiting", old.Add(5*time.Minute))
	// Old and decided, but rewritten after it was read.
	changed := d.request("changed", old.Add(-time.Hour))
	// Recent.
	d.request("recent", recent)

	pub := record.New()
	in := ingest.New(ingest.Config{FS: os.DirFS(d.Dir), TrustAfters: true, Results: pub.Publish, MaxBytes: 100 << 10})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	if pub.ByID["old-1"].Outcome != attribution.Exact {
		t.Fatalf("old-1 not ingested: %+v", pub.ByID["old-1"])
	}
	// The changed file: rewritten in place (new content, same old mtime
	// would be indistinguishable; a real rewrite moves the mtime).
	d.PutAt(changed[1], []byte("rewritten\n"), old.Add(-time.Hour+time.Second))

	c := &counts{deleted: map[Reason]int{}}
	r := New(Config{Dir: d.Dir, MaxAge: 7 * 24 * time.Hour, Metrics: c})
	beforeList := d.List()
	res := r.Apply(in.Settled(), in.RetainableBytes(), nil)
	afterList := d.List()
	var deleted []string
	for _, n := range beforeList {
		if !slices.Contains(afterList, n) {
			deleted = append(deleted, n)
		}
	}
	want = append(want, changed[0]) // its before is unchanged, and old
	slices.Sort(want)
	if !slices.Equal(deleted, want) {
		t.Fatalf("deleted:\n%q\nwant:\n%q", deleted, want)
	}
	if res.Files != int64(len(want)) || c.deleted["age"] != len(want) || res.Failed != 0 || c.bytes != res.Bytes {
		t.Fatalf("result %+v, counted %+v", res, c)
	}
	// A second pass deletes nothing more.
	if err := in.Scan(false); err != nil {
		t.Fatal(err)
	}
	if res := r.Apply(in.Settled(), in.RetainableBytes(), nil); res.Files != 0 {
		t.Fatalf("second pass deleted %d files", res.Files)
	}
}

// TestRetentionSizeLimitDeletesOldestFirst: over the size limit, whole
// requests go, oldest first, until the directory fits; a vetoed request
// (not yet durable in the state record) stays.
func TestRetentionSizeLimitDeletesOldestFirst(t *testing.T) {
	now := time.Now()
	d := newSnapDir(t)
	var reqs [][]string
	for i := 0; i < 10; i++ {
		reqs = append(reqs, d.request(fmt.Sprintf("r%02d", i), now.Add(-time.Duration(10-i)*time.Hour)))
	}
	in := ingest.New(ingest.Config{FS: os.DirFS(d.Dir), TrustAfters: true})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	total := in.RetainableBytes()
	perRequest := total / 10
	limit := total - 3*perRequest - perRequest/2 // room for 6.5 requests
	c := &counts{deleted: map[Reason]int{}}
	r := New(Config{Dir: d.Dir, MaxBytes: limit, Metrics: c})
	veto := reqs[1][0]
	res := r.Apply(in.Settled(), total, func(name string) bool { return name == veto })
	left := d.List()
	for i, files := range reqs {
		gone := !slices.Contains(left, files[0])
		if gone != !slices.Contains(left, files[1]) {
			t.Fatalf("r%02d: half a pair deleted", i)
		}
		wantGone := i == 0 || i == 2 || i == 3 || i == 4
		if gone != wantGone {
			t.Errorf("r%02d deleted = %v, want %v", i, gone, wantGone)
		}
	}
	if c.deleted["size"] != 8 || total-res.Bytes > limit {
		t.Fatalf("deleted %v, %d bytes left, limit %d", c.deleted, total-res.Bytes, limit)
	}
}

// TestNoLimitNoRetention: without a limit there is no Retention at all.
func TestNoLimitNoRetention(t *testing.T) {
	var r *Retention = New(Config{Dir: t.TempDir()})
	if r != nil {
		t.Fatal("retention without a limit")
	}
	if res := r.Apply([]snapfile.Settled{{Name: "x"}}, 1, nil); res.Files != 0 {
		t.Fatal("nil retention deleted files")
	}
}

// TestRetentionSizeLimitIgnoresFilesItNeverDeletes: a file retention will
// never delete (here one over --snapshot.max-bytes, with a snapshot name)
// does not count toward the size limit. Before, it did: the directory
// stayed over the limit whatever was deleted, and every pair went as soon
// as it was recorded.
func TestRetentionSizeLimitIgnoresFilesItNeverDeletes(t *testing.T) {
	now := time.Now()
	d := newSnapDir(t)
	for i := 0; i < 3; i++ {
		d.request(fmt.Sprintf("r%02d", i), now.Add(-time.Duration(10-i)*time.Minute))
	}
	big := d.PutAt(parser.FormatName("huge", parser.Before, now.Add(-time.Hour)), bytes.Repeat([]byte("# x\n"), 1<<18), now.Add(-time.Hour))
	in := ingest.New(ingest.Config{FS: os.DirFS(d.Dir), TrustAfters: true, MaxBytes: 1 << 19})
	if err := in.Scan(true); err != nil {
		t.Fatal(err)
	}
	in.Finish()
	var pairs int64
	for _, f := range in.Settled() {
		pairs += f.Size
	}
	if got := in.RetainableBytes(); got != pairs {
		t.Fatalf("retainable bytes %d, want the pairs' %d", got, pairs)
	}
	c := &counts{deleted: map[Reason]int{}}
	r := New(Config{Dir: d.Dir, MaxBytes: 2 * pairs, Metrics: c})
	if res := r.Apply(in.Settled(), in.RetainableBytes(), nil); res.Files != 0 {
		t.Fatalf("deleted %d files of a directory whose deletable files are within the limit", res.Files)
	}
	if left := d.List(); len(left) != 7 || !slices.Contains(left, big) {
		t.Fatalf("left %v", left)
	}
}

// TestRetentionDatesFutureFilesOnOurClock: a request whose files were
// dated in the future when the ingester first saw them (their
// modification time another clock's, and perhaps the time in their
// names) is aged and ordered by when the ingester saw them, on the
// exporter's clock. Dated by its own times, a request dated a year ahead
// outlived any age limit by a year and was the last to go under a size
// limit. Ordinary requests around it are dated as before.
func TestRetentionDatesFutureFilesOnOurClock(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		name         string
		named, ahead time.Duration // the skewed request's name and modification times, from when it is first seen
		maxAge       time.Duration
		sizeLimit    bool          // room for the newest request ("late") alone
		after        time.Duration // when retention runs, from when the skewed request was first seen
		want         []string      // the requests deleted
	}{
		{"age: younger than the limit on our clock", -time.Minute, 365 * day, 7 * day, false, day, []string{"old"}},
		{"age: older than the limit on our clock", -time.Minute, 365 * day, 7 * day, false, 7*day + 30*time.Minute, []string{"early", "old", "skewed"}},
		{"age: named a year ahead too", 365 * day, 365 * day, 7 * day, false, 7*day + 30*time.Minute, []string{"early", "old", "skewed"}},
		{"age: dated ahead within the tolerance", -time.Minute, 50 * time.Millisecond, 7 * day, false, 7*day + 30*time.Minute, []string{"early", "old", "skewed"}},
		{"size: ordered by when it was seen", -time.Minute, 365 * day, 0, true, 2 * time.Hour, []string{"early", "old", "skewed"}},
		{"size: named a year ahead too", 365 * day, 365 * day, 0, true, 2 * time.Hour, []string{"early", "old", "skewed"}},
		// A writer with a wrong clock on a filesystem that stamps ours.
		{"age: named a year ahead, modified on our clock", 365 * day, -time.Minute, 7 * day, false, 7*day + 30*time.Minute, []string{"early", "old", "skewed"}},
		{"age: named a year ahead, modified on our clock, young", 365 * day, -time.Minute, 7 * day, false, day, []string{"old"}},
		{"size: named a year ahead, modified on our clock", 365 * day, -time.Minute, 0, true, 2 * time.Hour, []string{"early", "old", "skewed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now().Truncate(time.Second)
			now := t0
			d := newSnapDir(t)
			files := map[string][]string{
				"old":   d.request("old", t0.Add(-8*day)),
				"early": d.request("early", t0.Add(-time.Hour)),
			}
			files["skewed"] = d.request("skewed", t0.Add(tc.named))
			for _, f := range files["skewed"] {
				d.Touch(f, t0.Add(tc.ahead))
			}
			in := ingest.New(ingest.Config{FS: os.DirFS(d.Dir), Now: func() time.Time { return now }, Settle: time.Second})
			if err := in.Scan(true); err != nil {
				t.Fatal(err)
			}
			now = now.Add(10 * time.Second) // the skewed files are read: unchanged on our clock for longer than Settle
			in.Tick()
			// A request written an hour after the skewed one was seen.
			files["late"] = d.request("late", t0.Add(time.Hour))
			now = t0.Add(time.Hour + 2*time.Minute)
			if err := in.Scan(true); err != nil {
				t.Fatal(err)
			}
			now = now.Add(10 * time.Second)
			in.Tick()
			settled := in.Settled()
			var lateBytes int64
			for _, f := range settled {
				if f.Parsed.RequestID == "late" {
					lateBytes += f.Size
				}
				if skewed := f.Parsed.RequestID == "skewed"; skewed != !f.SeenAt.IsZero() || (skewed && !f.SeenAt.Equal(t0)) {
					t.Fatalf("%s: seen at %v, want %v for the skewed request's files alone", f.Name, f.SeenAt, t0)
				}
			}
			if len(settled) != 8 {
				t.Fatalf("%d files settled, want all 8: %+v", len(settled), settled)
			}
			cfg := Config{Dir: d.Dir, MaxAge: tc.maxAge, Now: func() time.Time { return t0.Add(tc.after) }}
			if tc.sizeLimit {
				cfg.MaxBytes = lateBytes
			}
			New(cfg).Apply(settled, in.RetainableBytes(), nil)
			left := d.List()
			var gone []string
			for id, names := range files {
				n := 0
				for _, name := range names {
					if !slices.Contains(left, name) {
						n++
					}
				}
				switch n {
				case len(names):
					gone = append(gone, id)
				case 0:
				default:
					t.Fatalf("%s: half a pair deleted", id)
				}
			}
			slices.Sort(gone)
			if !slices.Equal(gone, tc.want) {
				t.Fatalf("deleted %v, want %v", gone, tc.want)
			}
		})
	}
}
