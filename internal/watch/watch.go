// Package watch tells the ingester which files to look at. fsnotify events
// are only hints: the directory listing is the truth, so a full rescan is
// requested at start, on a timer, after an event overflow or watcher error,
// and whenever the directory itself disappears and comes back. Poll mode
// (network filesystems, no inotify) relies on rescans alone.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Mode selects how changes are noticed.
type Mode string

const (
	// Auto uses inotify and falls back to polling when it cannot start.
	Auto Mode = "auto"
	// Inotify uses fsnotify plus the periodic rescan; it fails if fsnotify cannot start.
	Inotify Mode = "inotify"
	// Poll rescans every PollInterval.
	Poll Mode = "poll"
)

// Event is one hint for the ingester: a file name to look at, or a rescan.
type Event struct {
	// Name is a base name in the directory; empty for a rescan.
	Name string
	// Rescan asks for a full listing; Trigger says why.
	Rescan  bool
	Trigger Trigger
}

// Trigger says why a full rescan is asked for. The values are the label
// values of delta_exporter_rescans_total (docs/metrics.md).
type Trigger string

const (
	// Initial: the first listing, at start.
	Initial Trigger = "initial"
	// Timer: the periodic rescan (RescanInterval), or a poll.
	Timer Trigger = "timer"
	// Overflow: the kernel's event queue overflowed; events were lost.
	Overflow Trigger = "overflow"
	// Error: the watcher reported an error.
	Error Trigger = "error"
	// Recreated: the directory came back after it was removed.
	Recreated Trigger = "recreated"
)

// Triggers lists every Trigger, for pre-creating series.
var Triggers = []Trigger{Initial, Timer, Overflow, Error, Recreated}

// Notice is a filesystem event the watcher counts. The values are the
// label values of delta_exporter_watch_events_total.
type Notice string

const (
	NoticeCreate   Notice = "create"
	NoticeWrite    Notice = "write"
	NoticeRemove   Notice = "remove" // a file, or the directory itself
	NoticeRename   Notice = "rename"
	NoticeOverflow Notice = "overflow" // the kernel's queue overflowed
	NoticeError    Notice = "error"    // the watcher failed, or could not start
)

// Notices lists every Notice, for pre-creating series.
var Notices = []Notice{NoticeCreate, NoticeWrite, NoticeRemove, NoticeRename, NoticeOverflow, NoticeError}

// Counter counts watcher events (collector.Collector implements it).
type Counter interface {
	WatchEvent(Notice)
}

// The defaults of Config's intervals, which are never off: a zero
// interval means its default (as 0 in its flag does).
const (
	DefaultRescanInterval = 30 * time.Second
	DefaultPollInterval   = time.Second
)

// Config configures Run.
type Config struct {
	Dir            string
	Mode           Mode
	RescanInterval time.Duration // inotify mode; zero: DefaultRescanInterval
	PollInterval   time.Duration // poll mode and while the directory is missing; zero: DefaultPollInterval
	Logger         *slog.Logger
	Counter        Counter

	// newWatcher replaces fsnotify in tests (a watcher that fails to
	// start, or one that never reports anything, as on NFS).
	newWatcher func() (fsWatcher, error)
}

// fsWatcher is the part of fsnotify.Watcher that Run uses.
type fsWatcher interface {
	Add(name string) error
	Close() error
	events() <-chan fsnotify.Event
	errors() <-chan error
}

type fsnotifyWatcher struct{ *fsnotify.Watcher }

func (w fsnotifyWatcher) events() <-chan fsnotify.Event { return w.Events }
func (w fsnotifyWatcher) errors() <-chan error          { return w.Errors }

func newFsnotify() (fsWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	return fsnotifyWatcher{w}, nil
}

// Run sends events on out until ctx is done. The first event is always
// the initial rescan.
func Run(ctx context.Context, cfg Config, out chan<- Event) error {
	if cfg.RescanInterval <= 0 {
		cfg.RescanInterval = DefaultRescanInterval
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("component", "watch")
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	count := func(e Notice) {
		if cfg.Counter != nil {
			cfg.Counter.WatchEvent(e)
		}
	}
	if cfg.newWatcher == nil {
		cfg.newWatcher = newFsnotify
	}
	var w fsWatcher
	if cfg.Mode != Poll {
		var err error
		w, err = cfg.newWatcher()
		if err == nil {
			err = w.Add(cfg.Dir)
			if err != nil {
				w.Close()
				w = nil
			}
		}
		if err != nil {
			if cfg.Mode == Inotify {
				return fmt.Errorf("watching %s: %w", cfg.Dir, err)
			}
			count(NoticeError)
			log.Warn("inotify unavailable, polling instead", "dir", cfg.Dir, "err", err)
		}
	}
	if w != nil {
		defer func() { w.Close() }()
	}
	if !send(Event{Rescan: true, Trigger: Initial}) {
		return nil
	}
	interval := cfg.RescanInterval
	if w == nil {
		interval = cfg.PollInterval
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.events(), w.errors()
	}
	missing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			if w != nil && missing {
				// The directory was removed: watch it again once it is back.
				if _, err := os.Stat(cfg.Dir); err == nil && w.Add(cfg.Dir) == nil {
					missing = false
					ticker.Reset(cfg.RescanInterval)
					log.Info("snapshot directory is back", "dir", cfg.Dir)
					if !send(Event{Rescan: true, Trigger: Recreated}) {
						return nil
					}
				}
				continue
			}
			if !send(Event{Rescan: true, Trigger: Timer}) {
				return nil
			}
		case ev := <-events:
			if filepath.Clean(ev.Name) == filepath.Clean(cfg.Dir) {
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					count(NoticeRemove)
					log.Warn("snapshot directory removed; waiting for it to come back", "dir", cfg.Dir)
					missing = true
					ticker.Reset(cfg.PollInterval)
				}
				continue
			}
			var kind Notice
			switch {
			case ev.Has(fsnotify.Create):
				kind = NoticeCreate
			case ev.Has(fsnotify.Write):
				kind = NoticeWrite
			case ev.Has(fsnotify.Rename):
				kind = NoticeRename
			case ev.Has(fsnotify.Remove):
				kind = NoticeRemove
			default:
				continue // chmod
			}
			count(kind)
			if kind == NoticeRemove || kind == NoticeRename {
				continue // the name is gone; the next rescan forgets it
			}
			if !send(Event{Name: filepath.Base(ev.Name)}) {
				return nil
			}
		case err := <-errs:
			trigger, notice := Error, NoticeError
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				trigger, notice = Overflow, NoticeOverflow
			}
			count(notice)
			log.Warn("watcher error; rescanning", "err", err)
			if !send(Event{Rescan: true, Trigger: trigger}) {
				return nil
			}
		}
	}
}
