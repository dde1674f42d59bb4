package report

import (
	"fmt"
	"io"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
)

// progressEvery is the least time between two redraws: often enough to
// look alive, rarely enough to cost nothing.
const progressEvery = 100 * time.Millisecond

// progressAfter is how long a run goes before it shows progress at all: a
// report that takes a blink should not flash a status line.
const progressAfter = time.Second

// progress wraps collect and redraws one status line as files are done.
// ingest calls its Metrics once per file it finishes (read, rejected or
// ignored), on its own goroutine, so counting calls is the progress
// without a hook in ingest and without a goroutine here.
type progress struct {
	*collect
	w     io.Writer
	total int
	now   func() time.Time
	start time.Time
	last  time.Time
	shown bool
	// attributing: every file is done, the requests are being decided.
	attributing bool
}

func newProgress(w io.Writer, total int, now func() time.Time, c *collect) *progress {
	if now == nil {
		now = time.Now
	}
	start := now()
	return &progress{collect: c, w: w, total: total, now: now, start: start, last: start}
}

func (p *progress) SnapshotRead() {
	p.collect.SnapshotRead()
	p.tick()
}

func (p *progress) SnapshotRejected(file string, reason snapfile.RejectReason, err error) {
	p.collect.SnapshotRejected(file, reason, err)
	p.tick()
}

func (p *progress) FileIgnored(reason snapfile.IgnoreReason) {
	p.collect.FileIgnored(reason)
	p.tick()
}

func (p *progress) Publish(r attribution.Result) {
	p.collect.Publish(r)
	p.tick()
}

func (p *progress) tick() {
	now := p.now()
	if now.Sub(p.start) < progressAfter {
		return
	}
	done := p.filesDone()
	if done >= p.total && !p.attributing {
		// Shown at once: deciding can take a moment after the last file.
		p.attributing = true
	} else if p.shown && now.Sub(p.last) < progressEvery {
		return
	}
	p.last = now
	p.shown = true
	fmt.Fprintf(p.w, "\rdelta-exporter report: %d/%d files, %d requests decided\x1b[K", min(done, p.total), p.total, len(p.results))
}

// done clears the status line, so the report (or an error) starts on a
// clean line.
func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
