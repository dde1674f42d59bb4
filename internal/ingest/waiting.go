package ingest

import (
	"container/heap"
	"slices"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
)

// waiting holds the halves of the requests not paired yet, with the
// deadline of each, and keeps the timeline's open set in step with them.
// A before that waits for its after is open (attribution.Timeline.SetOpen:
// it delays the decision on the requests it overlaps) until its half
// leaves, whichever way it leaves: paired, abandoned, expired or given up
// at the end. Nothing else touches the open set, so a half that is gone
// cannot hold a decision back.
type waiting struct {
	tl     *attribution.Timeline
	ttl    time.Duration // Config.PairingTTL
	halves map[string]*half
	// expiries holds the deadline of every waiting half (and of some that
	// left since): see expire.
	expiries expiries
}

func newWaiting(tl *attribution.Timeline, ttl time.Duration) *waiting {
	return &waiting{tl: tl, ttl: ttl, halves: map[string]*half{}}
}

// len is the number of halves waiting.
func (w *waiting) len() int { return len(w.halves) }

// get returns the half waiting under id.
func (w *waiting) get(id string) (*half, bool) {
	h, ok := w.halves[id]
	return h, ok
}

// half returns the half waiting under id, adding a new one, first seen
// now, when none waits.
func (w *waiting) half(id string, now time.Time) *half {
	h, ok := w.halves[id]
	if !ok {
		h = &half{}
		w.halves[id] = h
		heap.Push(&w.expiries, expiry{at: now.Add(w.ttl), id: id, h: h})
	}
	return h
}

// open records that id's before waits for its after.
func (w *waiting) open(id string, before *attribution.Point) {
	if _, ok := w.halves[id]; ok {
		w.tl.SetOpen(id, before)
	}
}

// remove takes id's half out: paired, or abandoned.
func (w *waiting) remove(id string) {
	delete(w.halves, id)
	w.tl.ClearOpen(id)
}

// expire takes out the halves whose deadline is past (Config.PairingTTL
// after they were first seen), in deadline order, and gives each to gone.
// Deadlines of halves that left meanwhile are skipped when they come up,
// and dropped when they make up most of the heap.
func (w *waiting) expire(now time.Time, gone func(id string, h *half)) {
	for len(w.expiries) > 0 && !now.Before(w.expiries[0].at) {
		x := heap.Pop(&w.expiries).(expiry)
		if w.halves[x.id] != x.h {
			continue
		}
		w.remove(x.id)
		gone(x.id, x.h)
	}
	if len(w.expiries) > 2*len(w.halves)+1024 {
		live := w.expiries[:0]
		for _, x := range w.expiries {
			if w.halves[x.id] == x.h {
				live = append(live, x)
			}
		}
		clear(w.expiries[len(live):])
		w.expiries = live
		heap.Init(&w.expiries)
	}
}

// drain takes out every half, in the order of their ids, and gives each
// to gone: the end of a report, where no partner will come.
func (w *waiting) drain(gone func(id string, h *half)) {
	ids := make([]string, 0, len(w.halves))
	for id := range w.halves {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		h := w.halves[id]
		w.remove(id)
		gone(id, h)
	}
	w.expiries = nil
}

// each calls f for every waiting half.
func (w *waiting) each(f func(id string, h *half)) {
	for id, h := range w.halves {
		f(id, h)
	}
}
