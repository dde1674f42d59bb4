package population

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

var (
	t0     = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	bounds = []float64{0.1, 0.5, 1, math.Inf(1)}
)

// server is one server process's TTFT histogram: observations in order.
type server struct {
	start  float64 // process_start_time_seconds; 0: none
	values []float64
}

// snap is the scrape of s after its first n observations, named at.
type snap struct {
	at time.Time
	s  *parser.Snapshot
}

func (s *server) scrape(n int, at time.Time) snap {
	ps := &parser.Snapshot{ProcessStartTime: s.start, HasProcessStartTime: s.start != 0}
	sr := parser.Series{Metric: parser.TTFT, Labels: `engine="0",model_name="m"`, Model: "m"}
	for _, b := range bounds {
		sr.Buckets = append(sr.Buckets, parser.Bucket{UpperBound: b})
	}
	for _, v := range s.values[:n] {
		sr.Count++
		sr.Sum += v
		for i, b := range bounds {
			if v <= b {
				sr.Buckets[i].Count++
			}
		}
	}
	ps.Series = []parser.Series{sr}
	return snap{at, ps}
}

// want is the histogram of values[lo:hi].
func want(values []float64) Hist {
	h := Hist{Bounds: bounds[:len(bounds)-1], Buckets: make([]uint64, len(bounds)-1)}
	for _, v := range values {
		h.Count++
		h.Sum += v
		for i, b := range h.Bounds {
			if v <= b {
				h.Buckets[i]++
			}
		}
	}
	return h
}

func randomServer(r *rand.Rand, start float64, n int) *server {
	s := &server{start: start}
	for range n {
		s.values = append(s.values, math.Round(r.ExpFloat64()*0.4*1e6)/1e6)
	}
	return s
}

func ttft(p *Population) Hist {
	return p.Hists()[HistKey{Metric: parser.TTFT, Model: "m"}]
}

func sameHist(t *testing.T, what string, got, want Hist) {
	t.Helper()
	if got.Count != want.Count || !slices.Equal(got.Buckets, want.Buckets) || math.Abs(got.Sum-want.Sum) > 1e-9 {
		t.Errorf("%s: got count %d sum %.6f buckets %v, want count %d sum %.6f buckets %v",
			what, got.Count, got.Sum, got.Buckets, want.Count, want.Sum, want.Buckets)
	}
}

// With process_start_time_seconds, any arrival order publishes exactly
// the observations between the lowest and the highest snapshot seen.
func TestAnyOrderCountsEachObservationOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		s := randomServer(r, 1.7e9, 200)
		var snaps []snap
		counts := []int{}
		for range 1 + r.IntN(30) {
			counts = append(counts, r.IntN(201))
		}
		for i, c := range counts {
			snaps = append(snaps, s.scrape(c, t0.Add(time.Duration(i)*time.Second)))
		}
		r.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })
		p := New(Config{})
		for _, sn := range snaps {
			p.Observe(sn.at, sn.s)
		}
		lo, hi := slices.Min(counts), slices.Max(counts)
		got := ttft(p)
		if lo == hi {
			if got.Count != 0 {
				t.Fatalf("trial %d: one level published %d", trial, got.Count)
			}
			continue
		}
		sameHist(t, "shuffled", got, want(s.values[lo:hi]))
	}
}

// Two processes, told apart by process_start_time_seconds, files mixed:
// each process's own range is counted, nothing across the restart.
func TestRestartWithProcessStartTime(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	a, b := randomServer(r, 1.7e9, 100), randomServer(r, 1.7e9+3600, 100)
	var snaps []snap
	for i, c := range []int{5, 40, 100} {
		snaps = append(snaps, a.scrape(c, t0.Add(time.Duration(i)*time.Second)))
	}
	for i, c := range []int{0, 30, 60} {
		snaps = append(snaps, b.scrape(c, t0.Add(time.Hour+time.Duration(i)*time.Second)))
	}
	r.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })
	p := New(Config{})
	for _, sn := range snaps {
		p.Observe(sn.at, sn.s)
	}
	sameHist(t, "two processes", ttft(p), want(append(slices.Clone(a.values[5:100]), b.values[0:60]...)))
}

// Without process_start_time_seconds: in time order, a restart is seen
// and both processes are counted; in any order, nothing is ever counted
// twice or across the restart.
func TestRestartWithoutProcessStartTime(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	a, b := randomServer(r, 0, 100), randomServer(r, 0, 100)
	var snaps []snap
	for i, c := range []int{5, 40, 100} {
		snaps = append(snaps, a.scrape(c, t0.Add(time.Duration(i)*time.Second)))
	}
	// The new process is up a minute later.
	for i, c := range []int{3, 30, 60} {
		snaps = append(snaps, b.scrape(c, t0.Add(time.Minute+time.Duration(i)*time.Second)))
	}
	p := New(Config{})
	for _, sn := range snaps {
		p.Observe(sn.at, sn.s)
	}
	sameHist(t, "time order", ttft(p), want(append(slices.Clone(a.values[5:100]), b.values[3:60]...)))

	// Any order: every published observation is a true one of a range
	// between two snapshots of one process. Checked on the count, which
	// is never above the truth, and on every bucket.
	truth := want(append(slices.Clone(a.values[5:100]), b.values[3:60]...))
	for trial := range 100 {
		r.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })
		p := New(Config{})
		for _, sn := range snaps {
			p.Observe(sn.at, sn.s)
		}
		got := ttft(p)
		if got.Count > truth.Count || got.Sum > truth.Sum+1e-9 {
			t.Fatalf("trial %d: published %d observations (sum %.4f), more than the %d (%.4f) there are", trial, got.Count, got.Sum, truth.Count, truth.Sum)
		}
		if !publishedIsARange(got, a.values, b.values) {
			t.Fatalf("trial %d: published %+v is not the histogram of a range of one process or of both", trial, got)
		}
	}
}

// publishedIsARange reports whether h is the histogram of a[i:j] plus
// b[k:l] for some snapshot counts (each process at most once).
func publishedIsARange(h Hist, a, b []float64) bool {
	levelsA, levelsB := []int{5, 40, 100}, []int{3, 30, 60}
	for _, i := range levelsA {
		for _, j := range levelsA {
			for _, k := range levelsB {
				for _, l := range levelsB {
					if i > j || k > l {
						continue
					}
					w := want(append(slices.Clone(a[i:j]), b[k:l]...))
					if h.Count == w.Count && slices.Equal(h.Buckets, w.Buckets) && math.Abs(h.Sum-w.Sum) < 1e-9 {
						return true
					}
				}
			}
		}
	}
	return h.Count == 0
}

// A scrape answered out of name order (named earlier, taken later) is
// not a restart.
func TestScrapeJitterIsNotARestart(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	s := randomServer(r, 0, 50)
	p := New(Config{})
	p.Observe(t0, s.scrape(0, t0).s)
	p.Observe(t0.Add(2*time.Second), s.scrape(20, t0.Add(2*time.Second)).s)
	// Named 1s later than the top but showing less: launched later,
	// answered earlier. Inside the hull: nothing, no restart.
	p.Observe(t0.Add(3*time.Second), s.scrape(10, t0.Add(3*time.Second)).s)
	p.Observe(t0.Add(4*time.Second), s.scrape(50, t0.Add(4*time.Second)).s)
	sameHist(t, "jitter", ttft(p), want(s.values[0:50]))
	if p.resets != 0 {
		t.Errorf("resets = %d, want 0", p.resets)
	}
}

// A snapshot that is not ordered with the others (a bucket went down
// while the count went up) is skipped and counted.
func TestInconsistentSnapshotSkipped(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	s := randomServer(r, 1.7e9, 50)
	p := New(Config{})
	p.Observe(t0, s.scrape(0, t0).s)
	p.Observe(t0.Add(time.Second), s.scrape(20, t0.Add(time.Second)).s)
	bad := s.scrape(30, t0.Add(2*time.Second))
	bad.s.Series[0].Buckets[0].Count = 0
	p.Observe(bad.at, bad.s)
	sameHist(t, "after a bad snapshot", ttft(p), want(s.values[0:20]))
	if p.skipped[SkipInconsistent] != 1 {
		t.Errorf("skipped = %v, want 1 inconsistent", p.skipped)
	}
}

// What a capture records, loaded by a new process, is never published
// again; only what lies beyond it is.
func TestLoadPublishesOnlyBeyondTheRecord(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	s := randomServer(r, 1.7e9, 100)
	p := New(Config{})
	for i, c := range []int{10, 30, 50} {
		p.Observe(t0.Add(time.Duration(i)*time.Second), s.scrape(c, t0.Add(time.Duration(i)*time.Second)).s)
	}
	caps := p.Capture()
	if len(caps) != 1 {
		t.Fatalf("captured %d records, want 1", len(caps))
	}
	p.Durable(caps)
	if again := p.Capture(); len(again) != 0 {
		t.Fatalf("captured %d records again without a change", len(again))
	}
	// Published but never shown: the new process must publish it again.
	p.Observe(t0.Add(3*time.Second), s.scrape(60, t0.Add(3*time.Second)).s)

	q := New(Config{})
	if err := q.Load([]string{caps[0].Value}); err != nil {
		t.Fatal(err)
	}
	// The whole directory again, and more, in another order.
	for i, c := range []int{60, 50, 10, 30, 5, 80} {
		q.Observe(t0.Add(time.Duration(i)*time.Second), s.scrape(c, t0.Add(time.Duration(i)*time.Second)).s)
	}
	sameHist(t, "after restart", ttft(q), want(append(slices.Clone(s.values[5:10]), s.values[50:80]...)))
}

// Bucket bounds that differ within one model_name (a server whose
// buckets changed across a restart): count and sum exact, buckets count
// only what is known to be below each bound.
func TestOtherBoundsCountedConservatively(t *testing.T) {
	h := &Hist{Bounds: []float64{0.1, 0.5, 1}, Buckets: make([]uint64, 3)}
	src := []float64{0.2, 1, math.Inf(1)}
	to := &point{count: 3, sum: 1.5, buckets: []uint64{1, 2, 3}}
	from := &point{buckets: []uint64{0, 0, 0}}
	h.add(src, to, from)
	if h.Count != 3 || h.Sum != 1.5 || !slices.Equal(h.Buckets, []uint64{0, 1, 2}) {
		t.Errorf("got %+v, want count 3, sum 1.5, buckets [0 1 2]", h)
	}
}

// Two scrapes gathered in one order and recorded in the other: the
// earlier one's smaller hull must not replace the larger one written
// (and shown) first.
func TestStaleCaptureIsNotWritten(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	s := randomServer(r, 1.7e9, 50)
	p := New(Config{})
	p.Observe(t0, s.scrape(0, t0).s)
	p.Observe(t0.Add(time.Second), s.scrape(10, t0.Add(time.Second)).s)
	early := p.Capture()
	p.Observe(t0.Add(2*time.Second), s.scrape(20, t0.Add(2*time.Second)).s)
	late := p.Capture()
	if len(early) != 1 || len(late) != 1 {
		t.Fatalf("captured %d and %d records, want 1 each", len(early), len(late))
	}
	p.Durable(p.Fresh(late))
	if stale := p.Fresh(early); len(stale) != 0 {
		t.Fatalf("the earlier capture would overwrite the later one: %v", stale)
	}
}

// Without process_start_time_seconds, a restarted server whose first
// snapshot lies inside what was counted, and which later grows past it,
// is still a restart: counts are never taken across it.
func TestRestartInsideTheHull(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	a, b := randomServer(r, 0, 100), randomServer(r, 0, 200)
	p := New(Config{})
	p.Observe(t0, a.scrape(0, t0).s)
	p.Observe(t0.Add(time.Second), a.scrape(100, t0.Add(time.Second)).s)
	// An idle scrape of the same process, later: the top, seen again.
	p.Observe(t0.Add(30*time.Second), a.scrape(100, t0.Add(30*time.Second)).s)
	// Restarted: 40 requests in, a minute later, then 150.
	p.Observe(t0.Add(90*time.Second), b.scrape(40, t0.Add(90*time.Second)).s)
	p.Observe(t0.Add(95*time.Second), b.scrape(150, t0.Add(95*time.Second)).s)
	sameHist(t, "restart inside", ttft(p), want(append(slices.Clone(a.values[0:100]), b.values[40:150]...)))
	if p.resets != 1 {
		t.Errorf("resets = %d, want 1", p.resets)
	}
}
