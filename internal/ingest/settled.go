package ingest

import (
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/parser"
)

// Known reports whether name was in the directory at the last scan (or
// arrived since). The state record uses it to forget requests whose files
// are gone.
func (in *Ingester) Known(name string) bool {
	_, ok := in.files[name]
	return ok
}

// Settled lists the files that nothing can need any more, the only files
// retention may delete:
//
//   - the name is a snapshot name, and the entry was a regular file whose
//     whole content was read and accounted for (used, or rejected for what
//     it holds; never a directory, a symlink, a file too large to read),
//     and it has not changed since;
//   - its request is decided: no half waits for its partner and no pair
//     waits for attribution under that request id;
//   - its name time is before that of every request still held, so no
//     undecided request can need it as a point of the timeline (timeline
//     snapshots have no request of their own: this is their only rule).
//
// That last check stays on the times in the names, also for a file dated
// in the future (whose SeenAt retention ages it by): the timeline orders
// its points by those times, so they alone say whether a held request's
// window can hold the file. Our clock would not: a writer whose clock is
// ahead names a timeline snapshot a year ahead, and a before of its
// that waits for its after is named a year ahead too, a second earlier;
// the snapshot was seen long before that before's half is held, yet its
// request needs it. Such a writer's files are all ahead alike, so they
// are offered in their turn as any other. Only where two clocks name
// files in one directory (whose timeline is then out of order anyway)
// does a file named ahead wait while requests named on the other clock
// are held: kept longer, never deleted while it may be needed.
func (in *Ingester) Settled() []snapfile.Settled {
	heldIDs := make(map[string]bool, in.waiting.len()+in.tl.Pending())
	var oldest time.Time
	older := func(t time.Time) {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	in.waiting.each(func(id string, h *half) {
		heldIDs[id] = true
		older(h.beforeTime)
		older(h.afterTime)
	})
	in.tl.Waiting(func(r *attribution.Request) {
		heldIDs[r.ID] = true
		older(r.BeforeTime)
	})
	var out []snapfile.Settled
	for name, st := range in.files {
		if _, deferred := in.deferred[name]; !st.done || !st.read || st.changed || deferred {
			continue
		}
		n, err := parser.ParseName(name)
		if err != nil {
			continue
		}
		if n.Stage != parser.Timeline && heldIDs[n.RequestID] {
			continue
		}
		if !oldest.IsZero() && !n.Time.Before(oldest) {
			continue
		}
		seen := st.seenAt
		if seen.IsZero() && !st.firstSeen.IsZero() && n.Time.After(st.firstSeen.Add(futureTolerance)) {
			// Named on a clock ahead of ours while our filesystem stamped
			// it with ours (a writer with a wrong clock): its name time
			// would keep it younger than any age limit. When it was first
			// seen is never before it was written.
			seen = st.firstSeen
		}
		out = append(out, snapfile.Settled{Name: name, Parsed: n, Size: st.size, ModTime: st.modTime, SeenAt: seen})
	}
	return out
}

// RetainableBytes is the total size, as last seen, of the snapshot files
// retention may delete, now or once their requests are decided: files read
// in full (and unchanged since), and files not read yet. Retention's size
// limit applies to them alone. Files it never deletes (too large, not a
// regular file, unreadable, changed after they were read) are left out: counted, a 70 MB file over the limit made
// every pair be deleted as soon as it was recorded, and the limit was
// still not met.
func (in *Ingester) RetainableBytes() int64 {
	var n int64
	for _, st := range in.files {
		if (st.read && !st.changed) || !st.done {
			n += st.size
		}
	}
	return n
}
