package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/parser"
)

// lstat does not follow symlinks when the FS can tell them apart.
func lstat(fsys fs.FS, name string) (fs.FileInfo, error) {
	if l, ok := fsys.(fs.ReadLinkFS); ok {
		return l.Lstat(name)
	}
	return fs.Stat(fsys, name)
}

// loaded is the outcome of reading one file: everything apply needs, and
// nothing that touches the ingester's state, so files can be loaded in
// parallel and applied in order.
type loaded struct {
	name   string
	n      parser.Name
	gone   bool          // deleted before it could be read: forget it
	later  bool          // look again later (settling, or incomplete while fresh)
	ahead  time.Duration // how far its modification time is ahead of our clock
	st     fileState
	reason snapfile.RejectReason // rejected: why
	err    error
	point  *attribution.Point
	snap   *parser.Snapshot // for Config.Snapshots; nil without one
	info   []byte           // the contents of an info sidecar
}

// failed records a stat or read error: a file deleted meanwhile is
// forgotten, any other error rejects it.
func (l loaded) failed(err error) loaded {
	if errors.Is(err, fs.ErrNotExist) {
		l.gone = true
	} else {
		l.reason, l.err = snapfile.ReadError, err
	}
	return l
}

// load reads and parses one file. It is safe to call concurrently.
// buf is the caller's read buffer, reused from file to file; what load
// returns never points into it.
func (in *Ingester) load(it named, now time.Time, finishing bool, buf *[]byte) loaded {
	name, n := it.name, it.n
	l := loaded{name: name, n: n}
	info, err := lstat(in.cfg.FS, name)
	if err != nil {
		return l.failed(err)
	}
	l.st = fileState{size: info.Size(), modTime: info.ModTime(), skewed: it.prev.skewed, deferredAt: it.prev.deferredAt, firstSeen: it.prev.firstSeen}
	if l.st.firstSeen.IsZero() {
		l.st.firstSeen = now
	}
	if !info.Mode().IsRegular() {
		l.reason, l.err = snapfile.NotRegular, fmt.Errorf("%s is not a regular file", info.Mode().Type())
		return l
	}
	if info.Size() > in.cfg.MaxBytes {
		l.reason, l.err = snapfile.TooLarge, fmt.Errorf("%d bytes, limit %d", info.Size(), in.cfg.MaxBytes)
		return l
	}
	// How long the file has not changed: by its modification time, or,
	// when that is another clock's, by what we saw (skew.go).
	age := now.Sub(info.ModTime())
	if seen := seenSince(it.prev, info, now); !seen.IsZero() {
		l.st.seenAt, l.ahead = seen, info.ModTime().Sub(now)
		age = max(age, now.Sub(seen))
	}
	if age < in.cfg.Settle && !finishing {
		l.later = true
		return l
	}
	data, err := readFile(in.cfg.FS, name, info, in.cfg.MaxBytes, (*buf)[:0])
	if err == nil && cap(data) <= maxKeptBuffer {
		*buf = data
	}
	if errors.Is(err, errNotRegular) {
		l.reason, l.err = snapfile.NotRegular, err
		return l
	}
	if err != nil {
		return l.failed(err)
	}
	l.st.read = true
	if n.Stage == parser.Info {
		l.info = bytes.Clone(data)
		return l
	}
	snap, err := parser.Scan(data)
	if err != nil {
		incomplete := errors.Is(err, parser.ErrIncomplete) || errors.Is(err, parser.ErrEmpty)
		if incomplete && age < in.cfg.IncompleteGrace && !finishing {
			// Probably still being written: look again later.
			l.later = true
			return l
		}
		l.reason, l.err = snapfile.ParseReason(err), err
		return l
	}
	p, ok := attribution.NewPoint(snap)
	if !ok {
		l.reason, l.err = snapfile.ParseError, errors.New("histogram count is not a non-negative integer")
		return l
	}
	if !snap.ScrapeStarted.IsZero() {
		// A capture-written file: the content was generated between the
		// scrape's start and the response, the time in its name.
		p.SetTimes(snap.ScrapeStarted, n.Time)
	}
	l.point = p
	if in.cfg.Snapshots != nil {
		l.snap = snap
	}
	return l
}

// file ingests one snapshot file now.
func (in *Ingester) file(name string, n parser.Name) {
	in.apply(in.load(in.named(name, n), in.cfg.Now(), in.finishing, &in.buf))
}

// apply records a loaded file. Every way a file can be unusable ends in a
// counted reason and one log line; none stops the ingester.
func (in *Ingester) apply(l loaded) {
	if in.cfg.Progress != nil {
		in.cfg.Progress()
	}
	if l.ahead > futureTolerance && !l.st.skewed {
		l.st.skewed = true
		in.futureDated(l.name, l.ahead)
	}
	if l.gone {
		// Listed (or announced) but deleted before it could be read:
		// someone removes files the exporter has not read. Counted once:
		// the name is remembered until a scan no longer lists it.
		in.files[l.name] = &fileState{done: true}
		in.reject(l.name, l.n, snapfile.ReadError, fmt.Errorf("vanished before it could be read: %w", fs.ErrNotExist))
		return
	}
	if l.later {
		if l.st.modTime.IsZero() {
			delete(in.files, l.name)
		} else {
			st := l.st
			if st.deferredAt.IsZero() {
				st.deferredAt = in.cfg.Now()
			}
			in.files[l.name] = &st
		}
		in.deferred[l.name] = l.n
		return
	}
	// Read for good: a retry of the same file (it was deferred, then an
	// event read it) would apply it twice, counting a rejection twice or
	// taking the snapshot for a duplicate.
	delete(in.deferred, l.name)
	st := l.st
	st.done = true
	in.files[l.name] = &st
	switch {
	case l.reason != "":
		in.reject(l.name, l.n, l.reason, l.err)
	case l.info != nil:
		in.info(l.name, l.n, l.info)
	default:
		in.metrics.SnapshotRead()
		if l.snap != nil {
			in.seenSnapshot(l.name, l.n.Time, l.snap)
		}
		in.snapshot(l.name, l.n, l.point)
	}
}

// maxKeptBuffer: a read buffer larger than this (an unusually large file)
// is not kept for the next file.
const maxKeptBuffer = 4 << 20

// readFile reads at most limit bytes (the file may have grown since stat)
// into buf, growing it when needed; lst is what lstat saw: the file opened
// must be that regular file (openChecked), and its size makes one
// allocation usually enough.
func readFile(fsys fs.FS, name string, lst fs.FileInfo, limit int64, buf []byte) ([]byte, error) {
	f, err := openChecked(fsys, name, lst)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if want := int(min(lst.Size(), limit)) + 512; cap(buf) < want {
		buf = make([]byte, 0, want)
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, fmt.Errorf("file grew beyond %d bytes", limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// reject counts an unusable snapshot; the request it belongs to is
// rejected as bad_snapshot once its other half shows up.
func (in *Ingester) reject(name string, n parser.Name, reason snapfile.RejectReason, err error) {
	in.metrics.SnapshotRejected(name, reason, err)
	in.log.Warn("snapshot file rejected", "file", name, "reason", reason, "err", err)
	if n.Stage == parser.Before || n.Stage == parser.After {
		h := in.half(n.RequestID)
		h.bad = true
		in.setStage(h, name, n, nil)
	}
}

// half returns the half waiting under id, a new one if none waits.
func (in *Ingester) half(id string) *half { return in.waiting.half(id, in.cfg.Now()) }

// snapshot routes a parsed snapshot by its stage.
func (in *Ingester) snapshot(name string, n parser.Name, p *attribution.Point) {
	switch n.Stage {
	case parser.Timeline:
		in.tl.AddPoint(p)
		return
	case parser.First:
		in.tl.AddPoint(p)
		if h, ok := in.waiting.get(n.RequestID); ok {
			h.first = p
		}
		return
	}
	h := in.half(n.RequestID)
	in.setStage(h, name, n, p)
}

// setStage stores a before or after (p nil: it was unusable) and, when the
// pair is complete, hands the request to the timeline.
func (in *Ingester) setStage(h *half, name string, n parser.Name, p *attribution.Point) {
	id := n.RequestID
	if _, done := in.decided[id]; done {
		// A second request with an id already decided (or a rewritten
		// file): which files belong together is ambiguous.
		h.dupBefore = true
	}
	if first, ok := in.tl.Remove(id); ok {
		// The first request with this id is paired but not decided yet:
		// reject it too, rather than guess.
		h.dupBefore = true
		in.publish(attribution.NewRejected(&first, attribution.RejectDuplicate))
	}
	switch n.Stage {
	case parser.Before:
		if h.beforeName != "" {
			h.dupBefore = true
		}
		h.before, h.beforeName, h.beforeTime = p, name, n.Time
		if in.dropAbandoned(id, h) {
			return
		}
		if p != nil && h.afterName == "" {
			in.waiting.open(id, p)
		}
	case parser.After:
		if h.afterName != "" {
			h.dupAfter = true
		}
		h.after, h.afterName, h.afterTime = p, name, n.Time
	}
	if h.beforeName == "" || h.afterName == "" {
		return
	}
	in.waiting.remove(id)
	req := in.request(id, h)
	var res attribution.Result
	var done bool
	switch {
	case h.dupBefore || h.dupAfter:
		res, done = attribution.NewRejected(req, attribution.RejectDuplicate), true
	case h.bad || h.before == nil || h.after == nil:
		res, done = attribution.NewRejected(req, attribution.RejectBadSnapshot), true
	default:
		res, done = in.tl.Add(*req, in.cfg.Now())
	}
	if done {
		in.publish(res)
	}
}
