package testutil

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/parser"
)

// Snapshots writes the files a snapshot tool writes around requests to a
// simulated vLLM server: {id}_{stage}_{time}.txt holding the server's
// /metrics at that moment.
//
// Snapshot files go in as a careful tool writes them, under a temporary
// dot-name and then renamed, so that a watcher never reads half a file.
// Put and PutAt write in place: they are for the files a test crafts
// (damaged, rewritten, not a snapshot at all).
type Snapshots struct {
	// Dir is the snapshot directory.
	Dir string
	// Server is the simulated server whose /metrics the files hold; a test
	// may swap it (a server restart).
	Server *simulate.Server
	// Now is the name time of the last file Snap wrote: Snap moves it on
	// by Step first.
	Now  time.Time
	Step time.Duration

	t testing.TB
}

// NewSnapshots returns a writer into dir for a server of the given models,
// with names from 2026-01-01 00:00 UTC on, a millisecond apart.
func NewSnapshots(t testing.TB, dir string, models ...string) *Snapshots {
	return &Snapshots{
		Dir:    dir,
		Server: simulate.NewServer(simulate.ServerConfig{Models: models}),
		Now:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Step:   time.Millisecond,
		t:      t,
	}
}

// Scrape returns the server's exposition as it is now.
func (s *Snapshots) Scrape() []byte {
	s.t.Helper()
	var b bytes.Buffer
	if _, err := s.Server.WriteTo(&b); err != nil {
		s.t.Fatal(err)
	}
	return b.Bytes()
}

// Snap writes a scrape of the server as the file of id and stage, named at
// Now after Step; it returns the file's name.
func (s *Snapshots) Snap(id string, stage parser.Stage) string {
	s.t.Helper()
	s.Now = s.Now.Add(s.Step)
	name := parser.FormatName(id, stage, s.Now)
	s.write(name, s.Scrape(), time.Time{})
	return name
}

// SnapAt writes a scrape of the server as the file of id and stage, named
// and modified at at; it returns the file's name. Now does not move.
func (s *Snapshots) SnapAt(id string, stage parser.Stage, at time.Time) string {
	s.t.Helper()
	name := parser.FormatName(id, stage, at)
	s.write(name, s.Scrape(), at)
	return name
}

// Observe has the server observe one finished request of model on engine
// 0: its time to first token, then its finish histograms.
func (s *Snapshots) Observe(model string, ttft float64, f simulate.Finish) {
	s.Server.ObserveFirstToken(model, 0, ttft)
	s.Server.ObserveFinish(model, 0, f)
}

// Request writes one sequential request with Snap: its before, the
// server's observations (Observe), its after. It returns the two names.
func (s *Snapshots) Request(id, model string, ttft float64, f simulate.Finish) (before, after string) {
	s.t.Helper()
	before = s.Snap(id, parser.Before)
	s.Observe(model, ttft, f)
	return before, s.Snap(id, parser.After)
}

// RequestAt is Request with SnapAt: the before named and modified at
// before, the after at after.
func (s *Snapshots) RequestAt(id, model string, ttft float64, f simulate.Finish, before, after time.Time) (string, string) {
	s.t.Helper()
	b := s.SnapAt(id, parser.Before, before)
	s.Observe(model, ttft, f)
	return b, s.SnapAt(id, parser.After, after)
}

// Put writes data as the file name, in place; it returns name.
func (s *Snapshots) Put(name string, data []byte) string {
	s.t.Helper()
	if err := os.WriteFile(filepath.Join(s.Dir, name), data, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return name
}

// PutAt is Put, then Touch.
func (s *Snapshots) PutAt(name string, data []byte, mtime time.Time) string {
	s.t.Helper()
	s.Put(name, data)
	s.Touch(name, mtime)
	return name
}

// Touch sets the modification time of the file name.
func (s *Snapshots) Touch(name string, mtime time.Time) {
	s.t.Helper()
	if err := os.Chtimes(filepath.Join(s.Dir, name), mtime, mtime); err != nil {
		s.t.Fatal(err)
	}
}

// List returns the names of the files in Dir, sorted.
func (s *Snapshots) List() []string {
	s.t.Helper()
	es, err := os.ReadDir(s.Dir)
	if err != nil {
		s.t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// write writes data under a temporary dot-name, sets its modification
// time unless mtime is zero, and renames it to name.
func (s *Snapshots) write(name string, data []byte, mtime time.Time) {
	s.t.Helper()
	tmp := filepath.Join(s.Dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		s.t.Fatal(err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, name)); err != nil {
		s.t.Fatal(err)
	}
}
