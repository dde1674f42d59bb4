// Package retention deletes snapshot files the exporter is done with once
// they are older than --snapshots.retention, or the oldest of them while
// the directory is over --snapshots.retention-size. It replaces the
// `find -mtime +7 -delete` that users of the snapshot method run, with
// one difference that matters: it only ever deletes files the ingester
// lists as settled (ingest.Ingester.Settled, package snapfile): regular
// files with a snapshot name, read in full, whose request is decided and
// that no undecided request can need. Never a file with another name,
// never one that was not ingested, never one that changed since it was
// read.
package retention

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/parser"
)

// Reason says why a file was deleted. The values are the label values of
// delta_exporter_retention_deleted_files_total (docs/metrics.md).
type Reason string

const (
	// Age: older than Config.MaxAge.
	Age Reason = "age"
	// Size: among the oldest while the directory was over Config.MaxBytes.
	Size Reason = "size"
)

// Reasons lists every Reason, for pre-creating series.
var Reasons = []Reason{Age, Size}

// Metrics receives what retention does (collector.RetentionMetrics
// implements it).
type Metrics interface {
	Deleted(reason Reason, bytes int64)
	DeleteFailed()
}

// Config configures a Retention.
type Config struct {
	// Dir is the snapshot directory.
	Dir string
	// MaxAge: settled files older than this (by the time in their name
	// and by their modification time, or, for a file dated in the future,
	// by when it was first seen: snapfile.Settled.Dated) are deleted.
	// 0: no age limit.
	MaxAge time.Duration
	// MaxBytes: while the snapshot files total more than this, the oldest
	// settled requests are deleted. 0: no size limit.
	MaxBytes int64
	Logger   *slog.Logger
	Metrics  Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Retention deletes settled snapshot files. Not safe for concurrent use:
// the goroutine that owns the ingester calls it.
type Retention struct {
	cfg Config
	log *slog.Logger
}

// New returns a Retention, or nil when cfg sets no limit.
func New(cfg Config) *Retention {
	if cfg.MaxAge <= 0 && cfg.MaxBytes <= 0 {
		return nil
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Retention{cfg: cfg, log: cfg.Logger.With("component", "retention")}
}

// group is what is deleted together: every settled file of one request id
// (before, after, first, info), or one timeline snapshot. Deleting a
// request's files together keeps a restart from finding half a pair.
type group struct {
	files  []snapfile.Settled
	newest time.Time // the latest of its files' dates (snapfile.Settled.Dated)
	bytes  int64
}

// Result says what one Apply did.
type Result struct {
	Files, Bytes, Failed int64
}

// Apply deletes what is beyond the limits among settled (Ingester.Settled).
// total is the size of all snapshot files in the directory (settled or
// not), for the size limit. keep, optional, vetoes files that must stay
// for now (the state record has not made their request durable yet).
func (r *Retention) Apply(settled []snapfile.Settled, total int64, keep func(name string) bool) Result {
	var res Result
	if r == nil || len(settled) == 0 {
		return res
	}
	now := r.cfg.Now()
	// A request with a vetoed file stays whole.
	vetoed := map[string]bool{}
	if keep != nil {
		for _, f := range settled {
			if keep(f.Name) {
				vetoed[f.Name] = true
				if f.Parsed.Stage != parser.Timeline {
					vetoed["\x00"+f.Parsed.RequestID] = true
				}
			}
		}
	}
	byID := map[string]*group{}
	var groups []*group
	for _, f := range settled {
		if vetoed[f.Name] || (f.Parsed.Stage != parser.Timeline && vetoed["\x00"+f.Parsed.RequestID]) {
			continue
		}
		var g *group
		if f.Parsed.Stage == parser.Timeline {
			g = &group{}
			groups = append(groups, g)
		} else if g = byID[f.Parsed.RequestID]; g == nil {
			g = &group{}
			byID[f.Parsed.RequestID] = g
			groups = append(groups, g)
		}
		g.files = append(g.files, f)
		g.bytes += f.Size
		if t := f.Dated(); t.After(g.newest) {
			g.newest = t
		}
	}
	// Oldest first: the size limit deletes the oldest requests.
	slices.SortFunc(groups, func(a, b *group) int { return a.newest.Compare(b.newest) })
	for _, g := range groups {
		var reason Reason
		switch {
		case r.cfg.MaxAge > 0 && now.Sub(g.newest) > r.cfg.MaxAge:
			reason = Age
		case r.cfg.MaxBytes > 0 && total > r.cfg.MaxBytes:
			reason = Size
		default:
			continue
		}
		for _, f := range g.files {
			n, err := r.remove(f)
			switch {
			case err != nil:
				res.Failed++
				r.count(func(m Metrics) { m.DeleteFailed() })
				r.log.Warn("cannot delete snapshot file", "file", f.Name, "err", err)
			case n >= 0:
				res.Files++
				res.Bytes += n
				total -= n
				r.count(func(m Metrics) { m.Deleted(reason, n) })
				r.log.Debug("deleted snapshot file", "file", f.Name, "reason", reason)
			}
		}
	}
	if res.Files > 0 || res.Failed > 0 {
		r.log.Info("retention deleted snapshot files", "files", res.Files, "bytes", res.Bytes, "failed", res.Failed)
	}
	return res
}

func (r *Retention) count(f func(Metrics)) {
	if r.cfg.Metrics != nil {
		f(r.cfg.Metrics)
	}
}

// errChanged: the file is not what was ingested any more.
var errChanged = errors.New("changed since it was read")

// remove deletes one file if it is still the regular file that was read.
// It returns the bytes freed, or -1 when the file was left alone (gone
// already, or changed: then it is not the file that was ingested).
func (r *Retention) remove(f snapfile.Settled) (int64, error) {
	if filepath.Base(f.Name) != f.Name {
		return -1, nil // cannot happen: names come from a directory listing
	}
	if _, err := parser.ParseName(f.Name); err != nil {
		return -1, nil // never anything but a snapshot name
	}
	path := filepath.Join(r.cfg.Dir, f.Name)
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	if !info.Mode().IsRegular() || info.Size() != f.Size || !info.ModTime().Equal(f.ModTime) {
		r.log.Debug("not deleting snapshot file", "file", f.Name, "err", errChanged)
		return -1, nil
	}
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return -1, nil
		}
		return -1, err
	}
	return info.Size(), nil
}
