package ingest

import (
	"slices"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// nameClockMargin widens the comparisons of held between the times in
// file names, which several writers (capture proxies on several hosts)
// may stamp on clocks that differ a little. A writer further off makes a
// request be decided with less known: sound (docs/attribution.md,
// "Deciding early is sound"), maybe less exact.
const nameClockMargin = time.Second

// held says which paired requests the deferred files may still change,
// for attribution.ResolveOptions.Held; nil when no deferred file holds
// any.
// Holding only lets a decision find more, so this errs on the side of
// holding, but no further than a file's own time reaches: holding every
// request while any file was deferred made one file that never settles
// delay every decision by --attribution.max-delay.
//
//   - A before may open a request that overlaps any request that ended
//     after it: its snapshot counts up to then. It holds those.
//   - An after, a first and a timeline snapshot are points of the
//     timeline: they can pin observations in the windows that span their
//     time, and hold the requests whose windows do. (An after whose
//     before was read adds no overlap: its open before already keeps the
//     requests it overlaps waiting.)
//   - Any file of a request holds that request (its info sidecar, its
//     first, a second after that makes it a duplicate).
//
// A file deferred longer than --snapshot.incomplete-grace ago holds
// nothing: it is still retried, but a writer that has not finished in
// that time (one that never stops writing) does not hold the requests
// around it until --attribution.max-delay, again and again.
func (in *Ingester) held() func(*attribution.Request) bool {
	if len(in.deferred) == 0 {
		return nil
	}
	now := in.cfg.Now()
	ids := map[string]bool{}
	var before time.Time // the earliest deferred before
	var points []time.Time
	for name, n := range in.deferred {
		if st := in.files[name]; st != nil && !st.deferredAt.IsZero() && now.Sub(st.deferredAt) >= in.cfg.IncompleteGrace {
			continue
		}
		if n.Stage != parser.Timeline {
			ids[n.RequestID] = true
		}
		switch n.Stage {
		case parser.Before:
			if before.IsZero() || n.Time.Before(before) {
				before = n.Time
			}
		case parser.After, parser.First, parser.Timeline:
			points = append(points, n.Time)
		}
	}
	if len(ids) == 0 && before.IsZero() && len(points) == 0 {
		return nil
	}
	slices.SortFunc(points, time.Time.Compare)
	return func(r *attribution.Request) bool {
		if ids[r.ID] {
			return true
		}
		end := r.AfterTime.Add(nameClockMargin)
		if !before.IsZero() && before.Before(end) {
			return true
		}
		start := r.BeforeTime.Add(-nameClockMargin)
		i, _ := slices.BinarySearchFunc(points, start, time.Time.Compare)
		return i < len(points) && !points[i].After(end)
	}
}
