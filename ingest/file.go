package ingest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/delta-exporter/delta-exporter/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// rejectReason maps a parse error to the label of
// delta_exporter_snapshots_rejected_total.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, parser.ErrEmpty):
		return "empty"
	case errors.Is(err, parser.ErrIncomplete):
		return "incomplete"
	case errors.Is(err, parser.ErrNoFamilies):
		return "no_families"
	default:
		return "parse_error"
	}
}

// lstat does not follow symlinks when the FS can tell them apart.
func lstat(fsys fs.FS, name string) (fs.FileInfo, error) {
	if l, ok := fsys.(fs.ReadLinkFS); ok {
		return l.Lstat(name)
	}
	return fs.Stat(fsys, name)
}

// file ingests one snapshot file. Every way a file can be unusable ends in
// a counted reason and one log line; none stops the ingester.
func (in *Ingester) file(name string, n parser.Name) {
	now := in.cfg.Now()
	info, err := lstat(in.cfg.FS, name)
	if err != nil {
		// Deleted between listing and reading: nothing to ingest.
		delete(in.files, name)
		if !errors.Is(err, fs.ErrNotExist) {
			in.reject(name, n, "read_error", err)
		}
		return
	}
	st := &fileState{size: info.Size(), modTime: info.ModTime()}
	in.files[name] = st
	if !info.Mode().IsRegular() {
		st.done = true
		in.reject(name, n, "not_regular", fmt.Errorf("%s is not a regular file", info.Mode().Type()))
		return
	}
	if info.Size() > in.cfg.MaxBytes {
		st.done = true
		in.reject(name, n, "too_large", fmt.Errorf("%d bytes, limit %d", info.Size(), in.cfg.MaxBytes))
		return
	}
	age := now.Sub(info.ModTime())
	if age < in.cfg.Settle {
		in.deferred[name] = true
		return
	}
	data, err := readFile(in.cfg.FS, name, in.cfg.MaxBytes)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			delete(in.files, name)
			return
		}
		st.done = true
		in.reject(name, n, "read_error", err)
		return
	}
	if n.Stage == parser.Info {
		st.done = true
		in.info(name, n, data)
		return
	}
	snap, err := parser.Scan(data)
	if err != nil {
		incomplete := errors.Is(err, parser.ErrIncomplete) || errors.Is(err, parser.ErrEmpty)
		if incomplete && age < in.cfg.IncompleteGrace {
			// Probably still being written: look again later.
			in.deferred[name] = true
			return
		}
		st.done = true
		in.reject(name, n, rejectReason(err), err)
		return
	}
	p, ok := attribution.NewPoint(snap)
	if !ok {
		st.done = true
		in.reject(name, n, "parse_error", errors.New("histogram count is not a non-negative integer"))
		return
	}
	st.done = true
	in.cfg.Publisher.SnapshotRead()
	in.snapshot(name, n, p)
}

// readFile reads at most limit bytes (the file may have grown since stat).
func readFile(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("file grew beyond %d bytes", limit)
	}
	return data, nil
}

// reject counts an unusable snapshot; the request it belongs to is
// rejected as bad_snapshot once its other half shows up.
func (in *Ingester) reject(name string, n parser.Name, reason string, err error) {
	in.cfg.Publisher.SnapshotRejected(reason)
	in.log.Warn("snapshot file rejected", "file", name, "reason", reason, "err", err)
	if n.Stage == parser.Before || n.Stage == parser.After {
		h := in.half(n.RequestID)
		h.bad = true
		in.setStage(h, name, n, nil)
	}
}

func (in *Ingester) half(id string) *half {
	h, ok := in.pending[id]
	if !ok {
		h = &half{seen: in.cfg.Now()}
		in.pending[id] = h
	}
	return h
}

// snapshot routes a parsed snapshot by its stage.
func (in *Ingester) snapshot(name string, n parser.Name, p *attribution.Point) {
	switch n.Stage {
	case parser.Timeline:
		in.tl.AddPoint(p)
		return
	case parser.First:
		in.tl.AddPoint(p)
		if h, ok := in.pending[n.RequestID]; ok {
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
		// The id was already decided: a second request with the same id
		// (or a rewritten file). Its values would be ambiguous.
		delete(in.pending, id)
		in.publish(attribution.NewRejected(&attribution.Request{ID: id, BeforeFile: name}, attribution.RejectDuplicate))
		return
	}
	switch n.Stage {
	case parser.Before:
		if h.beforeName != "" {
			h.dupBefore = true
		}
		h.before, h.beforeName, h.beforeTime = p, name, n.Time
		if p != nil && h.afterName == "" {
			in.tl.SetOpen(id, p)
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
	delete(in.pending, id)
	in.tl.ClearOpen(id)
	req := h.request(id)
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
