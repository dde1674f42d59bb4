//go:build unix

package ingest

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// swapFS is the snapshot directory with an adversary: right after the
// ingester's lstat of target (a regular file), target is replaced by a
// symlink to a FIFO that nobody writes.
type swapFS struct {
	DirFS
	dir, target, fifo string
}

func (s swapFS) Lstat(name string) (fs.FileInfo, error) {
	info, err := s.DirFS.Lstat(name)
	if name == s.target && err == nil {
		p := filepath.Join(s.dir, name)
		if err := os.Remove(p); err != nil {
			return nil, err
		}
		if err := os.Symlink(s.fifo, p); err != nil {
			return nil, err
		}
	}
	return info, err
}

// TestSymlinkToFIFOSwappedAfterLstat: a regular snapshot swapped for a
// symlink to a FIFO between the lstat and the open is rejected as
// not_regular at once; the open neither follows the link nor waits for a
// writer (before the fix it blocked forever, and with it the ingest loop).
func TestSymlinkToFIFOSwappedAfterLstat(t *testing.T) {
	w := newDirWriter(t)
	w.request("ok", 1)
	target := w.snap("swapped", parser.Before)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Whatever happens, unblock a reader stuck in open (O_RDWR on a FIFO
	// does not wait), so a failing run does not leak a goroutine for good.
	t.Cleanup(func() {
		if f, err := os.OpenFile(fifo, os.O_RDWR, 0); err == nil {
			time.Sleep(10 * time.Millisecond)
			f.Close()
		}
	})
	rec := newRecorder()
	in := New(Config{FS: swapFS{DirFS: NewDirFS(w.dir), dir: w.dir, target: target, fifo: fifo}, Publisher: rec})
	done := make(chan error, 1)
	go func() { done <- in.Scan(true) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ingester is blocked opening a FIFO swapped in after the lstat")
	}
	in.Finish()
	if rec.rejected["not_regular"] != 1 || len(rec.rejected) != 1 {
		t.Fatalf("rejected %v, want not_regular once", rec.rejected)
	}
	if rec.results["ok"].Values[parser.E2E].V != finish(1).E2E {
		t.Fatalf("ok: %+v", rec.results["ok"])
	}
	if in.files[target].read {
		t.Fatal("the swapped file is offered to retention")
	}
}

// TestFileReplacedBetweenLstatAndOpen: another regular file renamed over
// the name after the lstat is not read as the file lstat saw.
func TestFileReplacedBetweenLstatAndOpen(t *testing.T) {
	dir := t.TempDir()
	name := parser.FormatName("r", parser.Before, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("a 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lst, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p+".new", []byte("b 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(p+".new", p); err != nil {
		t.Fatal(err)
	}
	if _, err := readFile(NewDirFS(dir), name, lst, 1<<20, nil); err != errReplaced {
		t.Fatalf("read a replaced file: %v", err)
	}
}
