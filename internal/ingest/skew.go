package ingest

import (
	"io/fs"
	"time"
)

// A snapshot file's modification time is the clock of whoever stamped it:
// the writer's host, or a network volume's server. When that clock is
// ahead of ours, "modified less than --snapshot.settle ago" stays true
// until the clocks agree, which may be never: the file would be deferred
// (holding the decisions it may change) and perhaps never read. So a file
// dated in our future is settled on our clock instead: it is read once its
// size and modification time have not changed between two looks at least
// --snapshot.settle apart. That is the same rule, checked by looking
// rather than read off a clock we do not share; completeness is checked
// as for any file (a final newline, every series whole), and
// --snapshot.incomplete-grace counts from the first look at it unchanged.

// futureTolerance: a file dated further ahead than this is counted and
// logged as another clock's. Our own filesystem stamps files with a
// coarse clock that lags ours by at most a kernel tick, never leads it;
// clocks kept by NTP differ by milliseconds. Files dated less far ahead
// are settled the same way, without a count.
const futureTolerance = 100 * time.Millisecond

// seenSince returns when the file, as info shows it, was first seen
// unchanged on our clock, if it is settled by looking: it was so settled
// at the previous look (prev) and has not changed, or it is dated in our
// future now. Zero: its modification time is ours to trust.
func seenSince(prev fileState, info fs.FileInfo, now time.Time) time.Time {
	unchanged := prev.size == info.Size() && prev.modTime.Equal(info.ModTime())
	switch {
	case unchanged && !prev.seenAt.IsZero():
		return prev.seenAt
	case info.ModTime().After(now):
		return now // a first look, or it changed since the last
	default:
		return time.Time{}
	}
}

// futureDated counts a file dated more than futureTolerance ahead of our
// clock, once per file, and says so once per ingester: the count shows
// whether it goes on, the log which clock is ahead and by how much.
func (in *Ingester) futureDated(name string, ahead time.Duration) {
	in.metrics.SnapshotFutureDated()
	if in.skewLogged {
		in.log.Debug("snapshot file dated in the future", "file", name, "ahead", ahead)
		return
	}
	in.skewLogged = true
	in.log.Warn("snapshot file dated in the future: the clock that stamps the snapshot directory is ahead of the exporter's; "+
		"such files are read once they have not changed for --snapshot.settle on the exporter's clock (logged once, counted in delta_exporter_snapshots_future_dated_total)",
		"file", name, "ahead", ahead)
}
