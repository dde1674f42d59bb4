package population

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// FuzzArrivalOrder: the fuzzer picks which snapshots of one server
// process exist and the order they arrive in (and whether the server
// has process_start_time_seconds). With it, the population is exactly
// the observations between the lowest and the highest snapshot; without
// it, never more than that and always a range of them.
func FuzzArrivalOrder(f *testing.F) {
	f.Add([]byte{3, 40, 10, 90, 0}, true)
	f.Add([]byte{90, 10, 3, 40}, false)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, order []byte, withStart bool) {
		if len(order) > 64 {
			order = order[:64]
		}
		start := 0.0
		if withStart {
			start = 1.7e9
		}
		s := randomServer(rand.New(rand.NewPCG(1, 1)), start, 256)
		p := New(Config{})
		var counts []int
		for i, b := range order {
			// Names follow the counts, up to a second of jitter either way.
			at := t0.Add(time.Duration(b)*time.Second + time.Duration(i%3-1)*time.Second)
			p.Observe(at, s.scrape(int(b), at).s)
			counts = append(counts, int(b))
		}
		got := ttft(p)
		if len(counts) == 0 {
			if got.Count != 0 {
				t.Fatalf("nothing observed, %d published", got.Count)
			}
			return
		}
		lo, hi := slices.Min(counts), slices.Max(counts)
		if withStart {
			w := want(s.values[lo:hi])
			if !sameCounts(got, w) {
				t.Fatalf("order %v: published %d %v, want %d %v", order, got.Count, got.Buckets, w.Count, w.Buckets)
			}
			return
		}
		// A range [i, j) of the snapshots' counts, nothing else.
		if got.Count == 0 {
			return
		}
		for _, i := range counts {
			for _, j := range counts {
				if i <= j {
					if sameCounts(got, want(s.values[i:j])) {
						return
					}
				}
			}
		}
		t.Fatalf("order %v: published %d %v is no range between two snapshots", order, got.Count, got.Buckets)
	})
}

// sameCounts compares count and buckets; an empty histogram has none.
func sameCounts(a, b Hist) bool {
	return a.Count == b.Count && (a.Count == 0 || slices.Equal(a.Buckets, b.Buckets))
}
