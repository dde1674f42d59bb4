package state

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
)

// appendFile is the one write path of the state files (the journal's and
// the population records): framed records (file.go) are appended and
// fsynced; after a failed append the file's tail is unknown, so it is
// rewritten whole before anything is appended again. A rewrite (also how
// a file is compacted) writes a temp file, fsyncs it, renames it over the
// old one and fsyncs the directory, so a crash leaves the old file or the
// new one, never a mix. The caller serialises the calls.
type appendFile struct {
	path string
	f    *os.File // append handle; nil until opened
	size int64    // bytes in the file
	// broken: an append failed half-way, or the file could not be
	// (re)opened: rewrite before appending.
	broken bool
}

// canAppend reports whether append may be used; otherwise rewrite.
func (a *appendFile) canAppend() bool { return a.f != nil && !a.broken }

// append writes b (whole framed records) at the end and fsyncs.
func (a *appendFile) append(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := a.f.Write(b)
	a.size += int64(n)
	if err == nil {
		err = a.f.Sync()
	}
	if err != nil {
		a.broken = true
		return fmt.Errorf("appending to %s: %w", a.path, err)
	}
	return nil
}

// rewrite replaces the file with what write writes (header line
// included), then reopens the append handle.
func (a *appendFile) rewrite(write func(w *bufio.Writer)) error {
	tmp := a.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		a.broken = true
		return fmt.Errorf("writing %s: %w", a.path, err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	write(w) // a write error sticks to w, and Flush returns it
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, a.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(a.path))
	}
	if err != nil {
		os.Remove(tmp)
		a.broken = true
		return fmt.Errorf("writing %s: %w", a.path, err)
	}
	return a.openAppend()
}

// openAppend (re)opens the append handle on the file as it is.
func (a *appendFile) openAppend() error {
	a.close()
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil {
			a.f, a.size, a.broken = f, st.Size(), false
			return nil
		}
		f.Close()
	}
	a.broken = true
	return fmt.Errorf("opening %s: %w", a.path, err)
}

// close releases the append handle.
func (a *appendFile) close() error {
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
