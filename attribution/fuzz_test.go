package attribution

import (
	"hash/fnv"
	"math/rand/v2"
	"testing"
)

// FuzzTimeline drives the fake server through timelines the fuzzer
// shapes: four bytes per request choose its series, its arrival gap, its
// duration, when its first token comes and how late its after snapshot
// is taken; two flags add periodic timeline snapshots and response token
// counts. Whatever the overlap, no published value may differ from the
// truth the generator knows (check), and every request gets a result.
func FuzzTimeline(f *testing.F) {
	f.Add([]byte{0, 10, 20, 0x35}, false, false)
	f.Add([]byte{0, 0, 40, 0x10, 1, 0, 40, 0x10, 2, 0, 40, 0x10}, true, false)
	f.Add([]byte{0, 1, 200, 0xf0, 0, 1, 2, 0x01, 0, 1, 3, 0x02, 1, 90, 9, 0x77}, false, true)
	f.Add([]byte("overlapping requests on three series, with tokens"), true, true)
	labels := []string{`engine="0",model_name="a"`, `engine="1",model_name="a"`, `engine="0",model_name="b"`}
	f.Fuzz(func(t *testing.T, data []byte, timeline, tokens bool) {
		const maxRequests = 120
		if len(data) > 4*maxRequests {
			data = data[:4*maxRequests]
		}
		h := fnv.New64a()
		h.Write(data)
		r := rand.New(rand.NewPCG(h.Sum64(), 7)) // the values; the shape comes from data
		srv := newFakeServer(labels...)
		n := len(data) / 4
		truths := make([]truth, n)
		var events []event
		at := 0.0
		for i := 0; i < n; i++ {
			b := data[4*i : 4*i+4]
			truths[i] = randomTruth(r, labels[int(b[0])%len(labels)])
			at += float64(b[1]) / 64       // 0 to 4 s after the previous arrival
			dur := 0.01 + float64(b[2])/32 // 0.01 to 8 s
			first := at + dur*float64(b[3]&0x0f)/16
			late := float64(b[3]>>4) / 100 // the after snapshot 0 to 150 ms after the finish
			events = append(events, event{at, 0, i}, event{first, 1, i}, event{at + dur, 2, i}, event{at + dur + late, 3, i})
		}
		if timeline && n > 0 {
			end := at + 10
			step := max(0.05, end/400)
			for x := 0.0; x < end; x += step {
				events = append(events, event{x, 4, -1})
			}
		}
		rr := runEvents(t, srv, truths, events, tokens)
		rr.check(t)
	})
}
