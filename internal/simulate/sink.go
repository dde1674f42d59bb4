package simulate

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Sink receives the snapshot files of a run, in simulated-time order.
// body is only valid during the call: the simulator reuses its buffer.
type Sink interface {
	Snapshot(name string, body []byte) error
}

// DirSink writes each snapshot as a file in the directory it names, which
// must exist. A file is written under a temporary name and renamed, so a
// watcher of the directory never sees a half-written snapshot (the
// temporary name ends in .tmp, which is not a snapshot name).
type DirSink string

// Snapshot writes one file.
func (d DirSink) Snapshot(name string, body []byte) error {
	dir := string(d)
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write snapshot: %w", err)
	}
	return nil
}

// File is one snapshot kept by a MemSink.
type File struct {
	Name string
	Body []byte
}

// MemSink keeps the snapshots in memory, in arrival order. The zero value
// is ready to use; it is safe for concurrent use.
type MemSink struct {
	mu    sync.Mutex
	files []File
}

// Snapshot keeps a copy of body.
func (m *MemSink) Snapshot(name string, body []byte) error {
	f := File{Name: name, Body: append([]byte(nil), body...)}
	m.mu.Lock()
	m.files = append(m.files, f)
	m.mu.Unlock()
	return nil
}

// Files returns the snapshots received so far, in order. The slice is a
// copy; the bodies are shared and must not be modified.
func (m *MemSink) Files() []File {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]File(nil), m.files...)
}
