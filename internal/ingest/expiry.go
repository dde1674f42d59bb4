package ingest

import "time"

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
