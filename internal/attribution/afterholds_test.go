package attribution

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// a1Run drives sequential requests through a timeline one at a time, as
// serve decides them: each request's before, its observations, its after,
// then Resolve. vouch says whether capture vouches for request i's after.
type a1Run struct {
	t     *testing.T
	srv   *fakeServer
	tl    *Timeline
	r     *rand.Rand
	at    float64
	n     int
	exact int
}

const a1Labels = `engine="0",model_name="a"`

func newA1Run(t *testing.T) *a1Run {
	return &a1Run{t: t, srv: newFakeServer(a1Labels), tl: NewTimeline(), r: rand.New(rand.NewPCG(3, 4))}
}

func (ar *a1Run) clock(x float64) time.Time {
	return time.Unix(1_700_000_000, 0).Add(time.Duration(x * 1e9))
}

func (ar *a1Run) point(x float64) *Point {
	p := ar.srv.point(ar.t)
	p.SetTimes(ar.clock(x-0.001), ar.clock(x))
	return p
}

// request runs one request alone; observed false leaves its finish
// unrecorded when its after is taken (an early after: its window does not
// move, which contradicts A1).
func (ar *a1Run) request(vouch, observed bool) []Result {
	return ar.run(a1Req{vouch: vouch, observed: observed, firstObserved: true})
}

// requestFirst is request; firstObserved false: the server never observes
// the request's first token (a dropped observation).
func (ar *a1Run) requestFirst(vouch, observed, firstObserved bool) []Result {
	return ar.run(a1Req{vouch: vouch, observed: observed, firstObserved: firstObserved})
}

// a1Req is one request of an a1Run. vouch: capture vouches for its after
// (scraped past the last byte, finish count moved). first, when not 0,
// gives it a first snapshot, scraped 1 ms after the first byte (1) or
// 0.5 ms before it (-1), before the server observed the first token.
type a1Req struct {
	vouch, observed, firstObserved bool
	first                          int
}

func (ar *a1Run) run(q a1Req) []Result {
	ar.t.Helper()
	tr := randomTruth(ar.r, a1Labels)
	id := fmt.Sprintf("r%d", ar.n)
	ar.n++
	before := ar.point(ar.at)
	firstByte := ar.clock(ar.at + 0.1)
	var first *Point
	if q.first < 0 {
		first = ar.point(ar.at + 0.1)
		first.SetTimes(firstByte.Add(-500*time.Microsecond), firstByte)
	}
	if q.firstObserved {
		ar.srv.observeFirst(&tr)
	}
	if q.first > 0 {
		first = ar.point(ar.at + 0.102)
	}
	if q.observed {
		ar.srv.observeFinish(&tr)
	}
	lastByte := ar.clock(ar.at + 0.5)
	after := ar.point(ar.at + 0.502)
	if !q.observed {
		ar.srv.observeFinish(&tr)
	}
	req := Request{ID: id, Before: before, After: after, First: first}
	if q.vouch {
		req.AfterObserved, req.LastByte = true, lastByte
	}
	if first != nil {
		req.FirstByte = firstByte
	}
	now := time.Unix(0, 0)
	if _, done := ar.tl.Add(req, now); done {
		ar.t.Fatalf("%s rejected", id)
	}
	ar.at++
	res := ar.tl.Resolve(ResolveOptions{Now: now, MaxDelay: time.Hour})
	if len(res) != 1 {
		ar.t.Fatalf("%s: %d results", id, len(res))
	}
	for _, v := range res[0].Values {
		if v.Exact {
			ar.exact++
			break
		}
	}
	return res
}

func (ar *a1Run) a1() AssumptionStatus { return ar.status(AfterHolds) }

func (ar *a1Run) status(a Assumption) AssumptionStatus {
	ar.t.Helper()
	sa := ar.tl.Assumptions()
	if len(sa) != 1 {
		ar.t.Fatalf("%d server processes", len(sa))
	}
	return sa[0].Status[a]
}

// TestAfterHoldsUnvouchedKeptOut: requests alone in their windows do not
// confirm A1 (the one observation there may be an earlier request's that
// landed late). A pairs-only directory nobody vouches for publishes no
// per-request value (unvouched) and says so; with
// --attribution.trust-afters the same directory is attributed, A1 stays
// unchecked, and the note says the values rest on the flag.
func TestAfterHoldsUnvouchedKeptOut(t *testing.T) {
	ar := newA1Run(t)
	for range 3 * confirmValue {
		for _, res := range ar.request(false, true) {
			for m, v := range res.Values {
				if v.Reason != ReasonUnvouched && v.Reason != ReasonAbsent {
					t.Fatalf("%s %s: %+v, want unvouched", res.RequestID, parser.Metric(m).Name(), v)
				}
			}
		}
	}
	for _, a := range []Assumption{AfterHolds, FirstHolds} {
		st := ar.status(a)
		if st.State != Unchecked || *st.Windows != (Windows{Unvouched: 30}) || !strings.Contains(st.Note, "no window vouched for") {
			t.Errorf("%s after %d lone requests nobody vouched for: %s, %+v, note %q", a.Name(), ar.n, st.State, st.Windows, st.Note)
		}
	}
	if ar.exact != 0 {
		t.Errorf("%d of %d requests published without a vouched after", ar.exact, ar.n)
	}

	ar = newA1Run(t)
	ar.tl.TrustAfters = true
	for range 3 * confirmValue {
		ar.request(false, true)
	}
	for _, a := range []Assumption{AfterHolds, FirstHolds} {
		st := ar.status(a)
		if st.State != Unchecked || *st.Windows != (Windows{Flag: 30}) || !strings.Contains(st.Note, "--attribution.trust-afters") {
			t.Errorf("%s after %d lone requests with the flag: %s, %+v, note %q", a.Name(), ar.n, st.State, st.Windows, st.Note)
		}
	}
	if ar.exact != ar.n {
		t.Errorf("%d of %d requests published with the user vouching for the afters", ar.exact, ar.n)
	}
}

// TestAfterHoldsVouchedByCapture: afters capture vouches for confirm A1
// (and, for requests without a first snapshot, first_holds_observation).
// One it did not vouch for (another snapshot tool writing into the same
// directory) is kept out, its values unvouched, and A1 stays confirmed;
// one the user vouches for puts A1 back to unchecked.
func TestAfterHoldsVouchedByCapture(t *testing.T) {
	ar := newA1Run(t)
	for range confirmValue - 1 {
		ar.request(true, true)
	}
	if st := ar.a1(); st.State != Unchecked || !strings.Contains(st.Note, "fewer than 10") {
		t.Fatalf("A1 after %d vouched afters: %s, note %q", ar.n, st.State, st.Note)
	}
	ar.request(true, true)
	for _, a := range []Assumption{AfterHolds, FirstHolds} {
		if st := ar.status(a); st.State != Confirmed || st.Agreed != confirmValue || !strings.Contains(st.Note, "vouched for by capture") {
			t.Fatalf("%s after %d vouched afters: %s (%d agreed), note %q", a.Name(), ar.n, st.State, st.Agreed, st.Note)
		}
	}
	// An after scraped before the last byte passed is not vouched for.
	res := ar.request(false, true)[0]
	if v := res.Values[parser.E2E]; v.Reason != ReasonUnvouched {
		t.Errorf("e2e of an after capture did not vouch for: %+v", v)
	}
	if st := ar.a1(); st.State != Confirmed || *st.Windows != (Windows{Capture: 10, Unvouched: 1}) || !strings.Contains(st.Note, "vouched for by capture") {
		t.Fatalf("A1 after an after capture did not vouch for: %s, %+v, note %q", st.State, st.Windows, st.Note)
	}
	ar.tl.TrustAfters = true
	if res := ar.request(false, true)[0]; res.Outcome != Exact {
		t.Errorf("an after the user vouched for: %s", res.Outcome)
	}
	if st := ar.a1(); st.State != Unchecked || *st.Windows != (Windows{Capture: 10, Flag: 1, Unvouched: 1}) || !strings.Contains(st.Note, "user's statement") {
		t.Fatalf("A1 after an after the user vouched for: %s, %+v, note %q", st.State, st.Windows, st.Note)
	}
}

// TestFirstVouchedByCapture: a first snapshot vouches for the first-token
// window only if its scrape started once the first byte had passed. One
// scraped before it (here also before the server observed the first
// token, so that its window holds no observation of its own) is kept out
// of the first-token matching: TTFT unvouched, no contradiction, the
// finish values published. The user's flag does not vouch for first
// snapshots. One scraped after the first byte whose window did not move
// contradicts first_holds_observation.
func TestFirstVouchedByCapture(t *testing.T) {
	ar := newA1Run(t)
	ar.tl.TrustAfters = true
	for range confirmValue {
		if res := ar.run(a1Req{vouch: true, observed: true, firstObserved: true, first: 1})[0]; !res.Values[parser.TTFT].Exact || !res.Values[parser.E2E].Exact {
			t.Fatalf("%s with a first snapshot past the first byte: %+v", res.RequestID, res.Values)
		}
	}
	if st := ar.status(FirstHolds); st.State != Confirmed || *st.Windows != (Windows{Capture: 10}) {
		t.Fatalf("first_holds_observation after %d vouched firsts: %s, %+v", ar.n, st.State, st.Windows)
	}
	res := ar.run(a1Req{vouch: true, observed: true, firstObserved: true, first: -1})[0]
	if v := res.Values[parser.TTFT]; v.Reason != ReasonUnvouched {
		t.Errorf("TTFT of a first snapshot scraped before the first byte: %+v", v)
	}
	if v := res.Values[parser.E2E]; !v.Exact {
		t.Errorf("e2e beside an unvouched first snapshot: %+v", v)
	}
	if st := ar.status(FirstHolds); st.State != Confirmed || *st.Windows != (Windows{Capture: 10, Unvouched: 1}) {
		t.Fatalf("first_holds_observation after an unvouched first: %s, %+v, note %q", st.State, st.Windows, st.Note)
	}
	ar.run(a1Req{vouch: true, observed: true, firstObserved: false, first: 1})
	if st := ar.status(FirstHolds); st.State != Contradicted {
		t.Fatalf("first_holds_observation after a vouched first that did not move: %s", st.State)
	}
	if st := ar.a1(); st.State != Confirmed {
		t.Fatalf("A1 after a first-token contradiction: %s", st.State)
	}
}

// TestAfterHoldsVouchNeedsScrapePastLastByte: after_observed alone does
// not vouch; the after's scrape must start once the last byte passed.
func TestAfterHoldsVouchNeedsScrapePastLastByte(t *testing.T) {
	srv := newFakeServer(a1Labels)
	after := srv.point(t)
	at := time.Unix(1_700_000_000, 0)
	after.SetTimes(at, at.Add(time.Millisecond))
	for _, c := range []struct {
		name    string
		r       Request
		vouched bool
	}{
		{"past the last byte", Request{After: after, AfterObserved: true, LastByte: at.Add(-time.Millisecond)}, true},
		{"at the last byte", Request{After: after, AfterObserved: true, LastByte: at}, true},
		{"before the last byte", Request{After: after, AfterObserved: true, LastByte: at.Add(time.Millisecond)}, false},
		{"count not seen moving", Request{After: after, LastByte: at.Add(-time.Millisecond)}, false},
		{"no last byte", Request{After: after, AfterObserved: true}, false},
		{"no scrape times", Request{After: srv.point(t), AfterObserved: true, LastByte: at}, false},
	} {
		if got := afterVouched(&c.r); got != c.vouched {
			t.Errorf("%s: vouched %v, want %v", c.name, got, c.vouched)
		}
	}
}

// TestAfterHoldsPublishedBefore: serve decides as requests arrive, so an
// A1 contradiction can come after values of the same process were
// published (afters the user vouched for). The contradiction counts them (logged, in the report), and
// no finish value is published after it.
func TestAfterHoldsPublishedBefore(t *testing.T) {
	ar := newA1Run(t)
	ar.tl.TrustAfters = true
	var got []Contradiction
	ar.tl.OnContradiction = func(c Contradiction) {
		if c.Assumption == AfterHolds {
			got = append(got, c)
		}
	}
	for range 5 {
		ar.request(false, true)
	}
	ar.request(false, false) // its window does not move
	if len(got) != 1 || got[0].Assumption != AfterHolds || got[0].PublishedBefore != 5 {
		t.Fatalf("contradictions %+v, want one of A1 with 5 published before", got)
	}
	for range 3 {
		// The finish values are withheld from now on; the first token,
		// whose snapshots the contradiction does not concern, is not.
		res := ar.request(false, true)
		for m, v := range res[0].Values {
			m := parser.Metric(m)
			if m == parser.TTFT {
				if !v.Exact {
					t.Errorf("%s after the contradiction: TTFT %+v", res[0].RequestID, v)
				}
			} else if v.Reason != ReasonUnconfirmed && v.Reason != ReasonAbsent {
				t.Errorf("%s after the contradiction: %s %+v", res[0].RequestID, m.Name(), v)
			}
		}
	}
	if st := ar.a1(); st.State != Contradicted || !strings.Contains(st.Note, "5 requests were published before") {
		t.Errorf("A1 %s, note %q", st.State, st.Note)
	}
}

// FuzzServeAfterHolds is FuzzTimeline decided as serve decides, after
// every pair. Without early afters nothing may be wrong; with them, an
// A1 contradiction must count exactly the requests published before it,
// no e2e may be published after it, and no TTFT published after it (from
// the first-token windows alone, which early afters do not touch) may be
// wrong. Counts never confirm A1 (no
// after here is vouched for).
func FuzzServeAfterHolds(f *testing.F) {
	f.Add([]byte{0, 10, 20, 0x35}, false, false, false, uint8(0))
	f.Add([]byte("early afters on overlapping requests, all kinds!"), true, true, true, uint8(1))
	f.Add([]byte("sequential-ish \x40\x40\x40\x40 requests with an early one \x10"), false, false, true, uint8(1))
	f.Add([]byte("lazy families, every break at once, with a timeline"), true, true, true, uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, timeline, tokens, times bool, breaks uint8) {
		if times {
			// Capture vouches only for afters scraped past the finish:
			// decided as serve does, nothing may be wrong either.
			fuzzRunOpts(t, data, timeline, tokens, times, breaks, runOpts{serve: true, capture: true}).check(t)
		}
		rr := fuzzRunOpts(t, data, timeline, tokens, times, breaks, runOpts{serve: true})
		if breaks&1 == 0 {
			rr.check(t)
		} else {
			rr.checkResults(t)
		}
		if rr.a1Confirmed {
			t.Error("A1 confirmed by counts alone")
		}
		if rr.exactBeforeA1 >= 0 {
			if rr.a1PublishedBefore != rr.exactBeforeA1 {
				t.Errorf("A1 contradicted after %d requests were published; it says %d", rr.exactBeforeA1, rr.a1PublishedBefore)
			}
			if rr.wrongTTFTAfterA1 != 0 {
				t.Errorf("%d TTFT values wrong after A1 was contradicted (first tokens solved on their own windows)", rr.wrongTTFTAfterA1)
			}
			if rr.exactAfterA1 != 0 {
				t.Errorf("%d e2e values published after A1 was contradicted", rr.exactAfterA1)
			}
		}
	})
}

// TestFirstHoldsApart: a request whose first-token window did not move
// contradicts first_holds_observation, not A1: from then on TTFT is
// withheld and the finish values are still published.
func TestFirstHoldsApart(t *testing.T) {
	ar := newA1Run(t)
	ar.tl.TrustAfters = true
	for range 3 {
		ar.request(false, true)
	}
	ar.requestFirst(false, true, false)
	sa := ar.tl.Assumptions()[0]
	if st := sa.Status[FirstHolds]; st.State != Contradicted || st.Contradiction.PublishedBefore != 3 {
		t.Fatalf("first_holds_observation %s %+v", st.State, st.Contradiction)
	}
	if st := sa.Status[AfterHolds]; st.State == Contradicted {
		t.Fatalf("A1 contradicted by a first token: %+v", st.Contradiction)
	}
	res := ar.request(false, true)[0]
	if v := res.Values[parser.TTFT]; v.Reason != ReasonUnconfirmed {
		t.Errorf("TTFT after the contradiction: %+v", v)
	}
	if v := res.Values[parser.E2E]; !v.Exact {
		t.Errorf("e2e after the first-token contradiction: %+v", v)
	}
}

// TestFirstTokenRulesAfterA1: once A1 is contradicted, the rules that
// read only the first token are still checked on the first-token pins
// (which rest on first_holds_observation, not on A1) and used once
// confirmed. Here capture's bound on TTFT (first byte − receipt) is
// confirmed by ten lone requests after the contradiction, and then tells
// two requests with overlapping windows apart: without it, neither TTFT
// could be published.
func TestFirstTokenRulesAfterA1(t *testing.T) {
	srv := newFakeServer(a1Labels)
	tl := NewTimeline()
	tl.TrustAfters = true // pairs the test vouches for, as the user would
	r := rand.New(rand.NewPCG(5, 6))
	now := time.Unix(0, 0)
	add := func(req Request) {
		t.Helper()
		if _, done := tl.Add(req, now); done {
			t.Fatalf("%s rejected", req.ID)
		}
	}
	resolve := func() []Result { return tl.Resolve(ResolveOptions{All: true}) }
	// r0's after is taken before its finish is recorded: A1 is
	// contradicted for the process.
	tr := randomTruth(r, a1Labels)
	before := srv.point(t)
	srv.observeFirst(&tr)
	after := srv.point(t)
	srv.observeFinish(&tr)
	add(Request{ID: "r0", Before: before, After: after})
	resolve()
	if st := tl.Assumptions()[0].Status[AfterHolds]; st.State != Contradicted {
		t.Fatalf("A1 %s after an after that missed its finish", st.State)
	}
	for i := 1; i <= confirmValue; i++ {
		tr := randomTruth(r, a1Labels)
		before := srv.point(t)
		srv.observeFirst(&tr)
		srv.observeFinish(&tr)
		add(Request{ID: fmt.Sprintf("r%d", i), Before: before, After: srv.point(t), MaxTTFT: tr.v[parser.TTFT] + 0.01})
		resolve()
	}
	if st := tl.Assumptions()[0].Status[CaptureBounds]; st.State != Confirmed {
		t.Fatalf("capture_time_bounds %s after %d first-token pins that agreed", st.State, confirmValue)
	}
	// a and b overlap; a snapshot between their first tokens isolates
	// both, and only b's bound (0.1 s) tells whose is whose.
	ta, tb := randomTruth(r, a1Labels), randomTruth(r, a1Labels)
	ta.v[parser.TTFT], tb.v[parser.TTFT] = 0.3, 0.05
	before = srv.point(t)
	srv.observeFirst(&ta)
	tl.AddPoint(srv.point(t))
	srv.observeFirst(&tb)
	srv.observeFinish(&ta)
	srv.observeFinish(&tb)
	after = srv.point(t)
	add(Request{ID: "a", Before: before, After: after, MaxTTFT: 0.35})
	add(Request{ID: "b", Before: before, After: after, MaxTTFT: 0.1})
	got := map[string]Value{}
	for _, res := range resolve() {
		got[res.RequestID] = res.Values[parser.TTFT]
		if v := res.Values[parser.E2E]; v.Reason != ReasonUnconfirmed {
			t.Errorf("%s: e2e %+v after A1 was contradicted", res.RequestID, v)
		}
	}
	for id, want := range map[string]float64{"a": 0.3, "b": 0.05} {
		if v := got[id]; !v.Exact || math.Abs(v.V-want) > 1e-9 {
			t.Errorf("%s: TTFT %+v, want %g", id, v, want)
		}
	}
}

// TestLaterSnapshotsCannotPinAfterA1 is the counterexample behind "When
// A1 fails" (docs/attribution.md): after A1 is contradicted, no later
// snapshot pins a request's finish observation. r0's after is taken
// before its finish is recorded (its window does not move: A1 is
// contradicted); then the server shows one more finish and stays idle
// for an hour of snapshots. In the first story that finish is r0's, late.
// In the second r0's was never recorded (dropped, aborted, or still to
// come after the last snapshot) and the one shown is a request that left
// no snapshots in the directory, with the same values. Every snapshot is
// the same in both stories, so whatever attribution publishes for r0 is
// the same, and any finish value would be wrong in the second: a bound on
// how late a server records a finish would not help either (the second
// story has no late finish).
func TestLaterSnapshotsCannotPinAfterA1(t *testing.T) {
	tr := randomTruth(rand.New(rand.NewPCG(7, 8)), a1Labels)
	story := func(ownFinish bool) ([]*Point, Result) {
		srv := newFakeServer(a1Labels)
		tl := NewTimeline()
		tl.TrustAfters = true // the user vouches: the after is early all the same
		at := time.Unix(1_700_000_000, 0)
		point := func(x float64) *Point {
			p := srv.point(t)
			p.SetTimes(at.Add(time.Duration(x*1e9)), at.Add(time.Duration(x*1e9)+time.Millisecond))
			return p
		}
		before := point(0)
		r0 := tr // r0's own first token is recorded in both stories
		srv.observeFirst(&r0)
		after := point(0.5)
		// Recorded 10 ms later: r0's finish in the first story; in the
		// second, that of a request the directory has no snapshots of.
		uncaptured := tr
		if ownFinish {
			srv.observeFinish(&r0)
		} else {
			srv.observeFinish(&uncaptured)
		}
		points := []*Point{before, after}
		for x := 1.0; x <= 3600; x *= 2 {
			points = append(points, point(x))
		}
		for _, p := range points[2:] {
			tl.AddPoint(p)
		}
		req := Request{ID: "r0", Before: before, After: after,
			ArrivalLo: at, ArrivalHi: at.Add(time.Millisecond), LastByte: at.Add(490 * time.Millisecond), MaxE2E: 0.49}
		if _, done := tl.Add(req, time.Unix(0, 0)); done {
			t.Fatal("r0 rejected")
		}
		res := tl.Resolve(ResolveOptions{All: true})
		if st := tl.Assumptions()[0].Status[AfterHolds]; st.State != Contradicted {
			t.Fatalf("A1 %s after a window that did not move", st.State)
		}
		return points, res[0]
	}
	late, lateRes := story(true)
	other, otherRes := story(false)
	if !reflect.DeepEqual(late, other) {
		t.Fatal("the two stories' snapshots differ: the counterexample no longer shows the limit")
	}
	for _, res := range []Result{lateRes, otherRes} {
		for m, v := range res.Values {
			if parser.Metric(m).Group() == parser.Finish && v.Exact {
				t.Errorf("r0 %s published (%v): in the second story r0 has no such observation", parser.Metric(m).Name(), v.V)
			}
		}
	}
	if !reflect.DeepEqual(lateRes, otherRes) {
		t.Errorf("the same snapshots decided differently:\n%+v\n%+v", lateRes, otherRes)
	}
}

// TestNoFamilyFromALoneWindow: a family the server is not confirmed to
// observe at a moment is never taken from a request's own two snapshots,
// even when the request looks alone in its window. Here B never waited,
// so it has no queue observation (llm-d-inference-sim observes queue only
// for requests that waited); A's, made when A left the queue, lands in
// B's window. A is either kept out of the matching (nobody vouches for
// its after) or left no files at all (a client that bypassed capture):
// either way B's window holds one queue observation that is not B's.
func TestNoFamilyFromALoneWindow(t *testing.T) {
	for _, tc := range []struct {
		name string
		aHas bool // A's files are in the directory (unvouched)
	}{
		{"neighbour unvouched", true},
		{"neighbour without files", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(a1Labels)
			tl := NewTimeline()
			clock := func(x float64) time.Time { return time.Unix(1_700_000_000, 0).Add(time.Duration(x * 1e9)) }
			point := func(x float64) *Point {
				p := srv.point(t)
				p.SetTimes(clock(x-0.001), clock(x))
				return p
			}
			r := rand.New(rand.NewPCG(5, 6))
			a, b := randomTruth(r, a1Labels), randomTruth(r, a1Labels)
			beforeA := point(0)
			beforeB := point(0.1)
			srv.observe(a1Labels, parser.Queue, a.v[parser.Queue]) // A leaves the queue
			srv.observeFirst(&b)
			for _, m := range []parser.Metric{parser.Prefill, parser.Decode, parser.Inference, parser.E2E, parser.PromptTokens, parser.GenerationTokens} {
				srv.observe(a1Labels, m, b.v[m]) // B finishes, without a queue observation
			}
			afterB := point(0.5)
			srv.observeFirst(&a)
			for _, m := range []parser.Metric{parser.Prefill, parser.Decode, parser.Inference, parser.E2E, parser.PromptTokens, parser.GenerationTokens} {
				srv.observe(a1Labels, m, a.v[m])
			}
			afterA := point(0.9)
			reqs := []Request{{ID: "B", Before: beforeB, After: afterB, AfterObserved: true, LastByte: clock(0.45)}}
			if tc.aHas {
				reqs = append(reqs, Request{ID: "A", Before: beforeA, After: afterA})
			}
			for _, req := range reqs {
				if res, done := tl.Add(req, time.Time{}); done {
					t.Fatalf("%s rejected: %s", req.ID, res.RejectReason)
				}
			}
			got := map[string]Result{}
			for _, res := range tl.Resolve(ResolveOptions{All: true}) {
				got[res.RequestID] = res
			}
			if v := got["B"].Values[parser.E2E]; !v.Exact || v.V != b.v[parser.E2E] {
				t.Errorf("B's e2e %+v, truth %v", v, b.v[parser.E2E])
			}
			if v := got["B"].Values[parser.Queue]; v.Exact || v.Reason != ReasonUnconfirmed {
				t.Errorf("B, which never waited, has queue %+v (A's is %v), want withheld unconfirmed", v, a.v[parser.Queue])
			}
			if !tc.aHas {
				return
			}
			for m, v := range got["A"].Values {
				if v.Reason != ReasonUnvouched && v.Reason != ReasonAbsent {
					t.Errorf("A %s %+v, want unvouched", parser.Metric(m).Name(), v)
				}
			}
		})
	}
}
