package attribution

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// FuzzTimeline drives the fake server through timelines the fuzzer
// shapes: four bytes per request choose its series, its arrival gap, its
// duration, when its first token comes and how late its after snapshot
// is taken; three flags add periodic timeline snapshots, response token
// counts, and times (scrape times, arrival windows and values that agree
// with them, as capture writes: assumption A6). The last byte breaks
// assumptions (docs/attribution.md): bit 0 takes some afters before their
// request's finish is observed (A1), bit 1 makes TTFT shorter than queue +
// prefill (A5, as a TTFT counted from scheduling), bit 2 hides families
// until their first observation. Whatever the overlap and whatever is
// broken, no published value may differ from the truth the generator
// knows (check), and every request gets a result. That holds for the
// afters someone vouches for (afterholds.go): here the user
// (Timeline.TrustAfters), truthfully except for bit 0's early afters,
// where only a result per request is checked; and, for timed runs,
// capture, which vouches only for afters scraped past the finish, so
// that early afters are kept out and nothing may be wrong whatever is
// broken. With nobody vouching, no request is published at all.
func FuzzTimeline(f *testing.F) {
	f.Add([]byte{0, 10, 20, 0x35}, false, false, false, uint8(0))
	f.Add([]byte{0, 0, 40, 0x10, 1, 0, 40, 0x10, 2, 0, 40, 0x10}, true, false, false, uint8(0))
	f.Add([]byte{0, 1, 200, 0xf0, 0, 1, 2, 0x01, 0, 1, 3, 0x02, 1, 90, 9, 0x77}, false, true, false, uint8(0))
	f.Add([]byte("overlapping requests on three series, with tokens"), true, true, false, uint8(0))
	f.Add([]byte{0, 0, 40, 0x18, 0, 2, 40, 0x14, 0, 1, 10, 0x0c, 0, 0, 80, 0x22}, true, false, true, uint8(0))
	f.Add([]byte("same series, close arrivals, timed: A6 decides"), false, true, true, uint8(0))
	f.Add([]byte("early afters on overlapping requests, all kinds!"), true, true, true, uint8(1))
	f.Add([]byte("a TTFT that leaves out the queue, timed and tokens"), false, true, true, uint8(2))
	f.Add([]byte("lazy families, every break at once, with a timeline"), true, true, true, uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, timeline, tokens, times bool, breaks uint8) {
		fuzzRunOpts(t, data, timeline, tokens, times, breaks, runOpts{plain: true}).check(t)
		if times {
			fuzzRunOpts(t, data, timeline, tokens, times, breaks, runOpts{capture: true}).check(t)
		}
		rr := fuzzRun(t, data, timeline, tokens, times, breaks)
		if breaks&1 != 0 {
			// An after taken before its request's finish was observed
			// can leave snapshots that are consistent with another
			// assignment; counts cannot tell (TestEarlyAfterConsistentIsUndetectable).
			// A1 is dropped where the data contradict it; what is
			// checked here is that every request still gets a result.
			rr.checkResults(t)
			return
		}
		rr.check(t)
		// As serve decides a busy server: components cut at a max-delay
		// shorter than many requests.
		fuzzRunOpts(t, data, timeline, tokens, times, breaks, runOpts{serve: true, cut: 2 * time.Second}).check(t)
	})
}

// fuzzRun builds and attributes the timeline FuzzTimeline describes.
func fuzzRun(t *testing.T, data []byte, timeline, tokens, times bool, breaks uint8) runResult {
	return fuzzRunOpts(t, data, timeline, tokens, times, breaks, runOpts{})
}

func fuzzRunOpts(t *testing.T, data []byte, timeline, tokens, times bool, breaks uint8, o runOpts) runResult {
	t.Helper()
	labels := []string{`engine="0",model_name="a"`, `engine="1",model_name="a"`, `engine="0",model_name="b"`}
	const maxRequests = 120
	if len(data) > 4*maxRequests {
		data = data[:4*maxRequests]
	}
	h := fnv.New64a()
	h.Write(data)
	r := rand.New(rand.NewPCG(h.Sum64(), 7)) // the values; the shape comes from data
	srv := newFakeServer(labels...)
	srv.lazy = breaks&4 != 0
	n := len(data) / 4
	truths := make([]truth, n)
	var events []event
	at := 0.0
	var tm *timing
	if times {
		tm = &timing{r: rand.New(rand.NewPCG(h.Sum64(), 8)), delay: 5 * time.Millisecond}
	}
	for i := 0; i < n; i++ {
		b := data[4*i : 4*i+4]
		at += float64(b[1]) / 64       // 0 to 4 s after the previous arrival
		dur := 0.01 + float64(b[2])/32 // 0.01 to 8 s
		first := at + dur*float64(b[3]&0x0f)/16
		late := float64(b[3]>>4) / 100 // the after snapshot 0 to 150 ms after the finish
		if tm != nil {
			first = at + 0.002 + (dur-0.002)*float64(b[3]&0x0f)/16 // a TTFT of 2 ms at least
			truths[i] = timedTruth(r, labels[int(b[0])%len(labels)], at, first, at+dur, tm.delay)
		} else {
			truths[i] = randomTruth(r, labels[int(b[0])%len(labels)])
		}
		if breaks&2 != 0 && b[0]&0x80 != 0 {
			// TTFT counted from a later start: below queue + prefill.
			truths[i].v[parser.TTFT] *= 0.25
		}
		after := at + dur + late
		if breaks&1 != 0 && b[3]&0x10 != 0 {
			// The after is taken before the finish is observed.
			after = max(first+0.001, at+dur-late-0.001)
		}
		events = append(events, event{at, 0, i}, event{first, 1, i}, event{at + dur, 2, i}, event{after, 3, i})
	}
	if timeline && n > 0 {
		end := at + 10
		step := max(0.05, end/400)
		for x := 0.0; x < end; x += step {
			events = append(events, event{x, 4, -1})
		}
	}
	return runEventsOpts(t, srv, truths, events, tokens, tm, o)
}

// TestEarlyAfterConsistentIsUndetectable pins the limit of assumption A1
// (docs/attribution.md): three requests on one series, the first one's
// after taken 31 ms before its finish is observed. Its window then holds
// the second and third requests' observations, the data stay consistent
// with an assignment that gives it the third's, and nothing in the counts
// says otherwise: with the after vouched for (--attribution.trust-afters,
// wrongly here), a value comes out wrong. capture never vouches for such
// an after (it waits for the finish count to move past the response's
// last byte, which vLLM sends after recording), and an after nobody
// vouches for is kept out: nothing is wrong then. If attribution ever
// learns to see this, this test fails and the documented limit can go.
func TestEarlyAfterConsistentIsUndetectable(t *testing.T) {
	data := []byte("00a0000A000A0")
	fuzzRunOpts(t, data, false, true, false, 7, runOpts{plain: true}).check(t)
	rr := fuzzRun(t, data, false, true, false, 7)
	rr.checkResults(t)
	wrong := 0
	for i, tr := range rr.truths {
		for m, v := range rr.results[fmt.Sprintf("r%d", i)].Values {
			if v.Exact && math.Abs(v.V-tr.v[m]) > 1e-6 {
				wrong++
			}
		}
	}
	if wrong == 0 {
		t.Fatal("no wrong value: attribution now detects this early after; update docs/attribution.md (A1) and this test")
	}
}
