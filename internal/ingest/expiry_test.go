package ingest

import (
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
)

// waitingHalves returns an ingester on clock c holding n befores that
// wait for their afters (junk files without a partner), one every ms.
func waitingHalves(c *clock, n int, ttl time.Duration) (*Ingester, *record.Recorder) {
	rec := record.New()
	in := New(Config{TrustAfters: true, FS: fstest.MapFS{}, Results: rec.Publish, Metrics: rec, Now: c.Now, PairingTTL: ttl})
	for i := 0; i < n; i++ {
		h := in.half(fmt.Sprintf("junk-%06d", i))
		h.beforeName = fmt.Sprintf("junk-%06d_before", i)
		c.now = c.now.Add(time.Millisecond)
	}
	return in, rec
}

// TestUnpairedHalvesExpireByDeadline: a waiting half is given up exactly
// when its --pairing.ttl is over, in the order the halves came, and a half
// paired meanwhile never is. Tick takes them from a deadline heap; before,
// it walked every waiting half on every tick, in map order.
func TestUnpairedHalvesExpireByDeadline(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	start := c.now
	in, rec := waitingHalves(c, 500, time.Minute)
	in.waiting.remove("junk-000003") // paired meanwhile
	h := in.half("junk-000003")      // and the id seen again later: its own deadline
	h.beforeName = "again"
	c.now = start.Add(time.Minute + 99*time.Millisecond) // deadlines of halves 0..99
	in.Tick()
	if len(rec.Results) != 99 {
		t.Fatalf("%d expired, want 99", len(rec.Results))
	}
	for i, id := range rec.IDs() {
		want := i
		if i >= 3 {
			want = i + 1
		}
		if id != fmt.Sprintf("junk-%06d", want) || rec.ByID[id].Outcome != attribution.Unpaired {
			t.Fatalf("expired #%d: %s (%s), want junk-%06d", i, id, rec.ByID[id].Outcome, want)
		}
	}
	if _, ok := in.waiting.get("junk-000003"); !ok {
		t.Fatal("a half seen again was expired on the deadline of the earlier one")
	}
	c.now = c.now.Add(time.Hour)
	in.Tick()
	if in.waiting.len() != 0 || len(rec.Results) != 500 || len(in.waiting.expiries) != 0 {
		t.Fatalf("pending %d, expired %d, deadlines left %d", in.waiting.len(), len(rec.Results), len(in.waiting.expiries))
	}
}

// BenchmarkTickIdle is the cost of one Tick while halves wait and none
// expires: it must not grow with the number waiting (compare pending=100
// with pending=100000; before the deadline heap, about 1,000 times more).
func BenchmarkTickIdle(b *testing.B) {
	for _, n := range []int{100, 100000} {
		b.Run(fmt.Sprintf("pending=%d", n), func(b *testing.B) {
			c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			in, _ := waitingHalves(c, n, time.Hour)
			for b.Loop() {
				in.Tick()
			}
		})
	}
}
