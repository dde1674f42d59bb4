package ingest

import (
	"container/heap"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
)

// expiry is when a waiting half is given up as unpaired.
type expiry struct {
	at time.Time
	id string
	h  *half // the half this deadline was set for; a later one under the same id is another
}

// expiries is a min-heap of deadlines: Tick pops what has expired, so its
// cost follows what expires, not what waits (it used to walk every
// waiting half every 10 ms: 85 % of a core with 100k junk files).
type expiries []expiry

func (e expiries) Len() int           { return len(e) }
func (e expiries) Less(i, j int) bool { return e[i].at.Before(e[j].at) }
func (e expiries) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *expiries) Push(x any)        { *e = append(*e, x.(expiry)) }
func (e *expiries) Pop() any {
	old := *e
	x := old[len(old)-1]
	old[len(old)-1] = expiry{}
	*e = old[:len(old)-1]
	return x
}

// expire gives up the halves whose deadline is past (Config.PairingTTL
// after they were first seen), in deadline order. Deadlines of halves that
// were paired meanwhile are skipped when they come up, and dropped when
// they make up most of the heap.
func (in *Ingester) expire(now time.Time) {
	for len(in.expiries) > 0 && !now.Before(in.expiries[0].at) {
		x := heap.Pop(&in.expiries).(expiry)
		if in.pending[x.id] != x.h {
			continue
		}
		delete(in.pending, x.id)
		in.tl.ClearOpen(x.id)
		if x.h.hasSnapshot() {
			in.publish(attribution.NewUnpaired(x.h.request(x.id)))
		}
	}
	if len(in.expiries) > 2*len(in.pending)+1024 {
		live := in.expiries[:0]
		for _, x := range in.expiries {
			if in.pending[x.id] == x.h {
				live = append(live, x)
			}
		}
		clear(in.expiries[len(live):])
		in.expiries = live
		heap.Init(&in.expiries)
	}
}

// decidedAt is when a request id was decided, in the order of decisions.
type decidedAt struct {
	id string
	at time.Time
}

// forgetDecided forgets the ids decided more than 2×PairingTTL ago, oldest
// first: ids are decided in clock order, so this pops from the front of a
// queue instead of walking every id.
func (in *Ingester) forgetDecided(now time.Time) {
	q := in.decidedQ
	for len(q) > 0 && now.Sub(q[0].at) > 2*in.cfg.PairingTTL {
		if at, ok := in.decided[q[0].id]; ok && at.Equal(q[0].at) {
			delete(in.decided, q[0].id)
		}
		q[0] = decidedAt{}
		q = q[1:]
	}
	if cap(q) > 1024 && len(q) < cap(q)/4 {
		q = append([]decidedAt(nil), q...)
	}
	in.decidedQ = q
}
