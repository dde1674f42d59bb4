package slo

import (
	"log/slog"
	"sync"
	"sync/atomic"
)

// Reloader holds the current objectives of a file and reloads them on
// demand (SIGHUP, POST /-/reload). A reload parses the file into a fresh
// Set and swaps it in only when it is valid: a bad edit is logged and
// reported, and the objectives in force stay.
type Reloader struct {
	path string
	log  *slog.Logger
	// onLoad is called with every Set swapped in (the first included) and
	// the result of every attempt, under mu, so that calls are ordered.
	onLoad func(s *Set, err error)

	mu  sync.Mutex // serialises reloads
	cur atomic.Pointer[Set]
}

// NewReloader reads the file once; an invalid file is an error (the
// exporter does not start). onLoad may be nil.
func NewReloader(path string, log *slog.Logger, onLoad func(*Set, error)) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onLoad == nil {
		onLoad = func(*Set, error) {}
	}
	r := &Reloader{path: path, log: log, onLoad: onLoad}
	s, err := Load(path)
	if err != nil {
		return nil, err
	}
	r.cur.Store(s)
	onLoad(s, nil)
	return r, nil
}

// Set is the objectives in force. Safe from any goroutine; nil on a nil
// Reloader.
func (r *Reloader) Set() *Set {
	if r == nil {
		return nil
	}
	return r.cur.Load()
}

// Reload reads the file again. On error the current objectives stay.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := Load(r.path)
	if err != nil {
		r.log.Error("cannot reload the SLO objectives; keeping the current ones", "file", r.path, "err", err)
		r.onLoad(nil, err)
		return err
	}
	r.cur.Store(s)
	r.onLoad(s, nil)
	r.log.Info("SLO objectives reloaded", "file", r.path, "objectives", len(s.Objectives))
	return nil
}
