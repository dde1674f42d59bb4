//go:build unix

package ingest

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/testutil/record"
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
	target := w.Snap("swapped", parser.Before)
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
	rec := record.Once(t)
	in := New(Config{TrustAfters: true, FS: swapFS{DirFS: NewDirFS(w.Dir), dir: w.Dir, target: target, fifo: fifo}, Results: rec.Publish, Metrics: rec})
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
	if rec.Rejected["not_regular"] != 1 || len(rec.Rejected) != 1 {
		t.Fatalf("rejected %v, want not_regular once", rec.Rejected)
	}
	if rec.ByID["ok"].Values[parser.E2E].V != finish(1).E2E {
		t.Fatalf("ok: %+v", rec.ByID["ok"])
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

// FuzzOpenPath: whatever name the directory listing or an event gives,
// opening it through DirFS never follows a symlink (not even to a regular
// file), never blocks on a FIFO, never leaves the directory, and yields
// only a regular file of the directory, checked against its lstat.
func FuzzOpenPath(f *testing.F) {
	dir := f.TempDir()
	outside := filepath.Join(f.TempDir(), "secret")
	must := func(err error) {
		if err != nil {
			f.Fatal(err)
		}
	}
	must(os.WriteFile(outside, []byte("secret\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "regular"), []byte("ok\n"), 0o644))
	must(os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sub", "inner"), []byte("inner\n"), 0o644))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(os.Symlink(outside, filepath.Join(dir, "link-out")))
	must(os.Symlink("regular", filepath.Join(dir, "link-in")))
	must(os.Symlink("fifo", filepath.Join(dir, "link-fifo")))
	for _, s := range []string{"regular", "fifo", "link-out", "link-in", "link-fifo", "sub", "sub/inner", "../secret", "/etc/passwd", ".", "", "regular/"} {
		f.Add(s)
	}
	fsys := NewDirFS(dir)
	f.Fuzz(func(t *testing.T, name string) {
		lst, _ := fsys.Lstat(name)
		done := make(chan struct{})
		var file fs.File
		var err error
		go func() {
			defer close(done)
			file, err = openChecked(fsys, name, lst)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("open of %q blocked", name)
		}
		if err != nil {
			return
		}
		defer file.Close()
		st, serr := file.Stat()
		if serr != nil || !st.Mode().IsRegular() || lst == nil || !os.SameFile(st, lst) {
			t.Fatalf("%q opened as %v (lstat %v)", name, st, lst)
		}
		if name != "regular" && name != "sub/inner" {
			t.Fatalf("%q opened something: %v", name, st.Name())
		}
	})
}
