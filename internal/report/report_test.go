package report

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"
)

// blockingFS lists like its MapFS but holds every Open until release is
// closed: a directory that takes as long as the test wants.
type blockingFS struct {
	fstest.MapFS
	opened  chan struct{}
	release chan struct{}
}

func (b blockingFS) Open(name string) (fs.File, error) {
	if name != "." {
		select {
		case b.opened <- struct{}{}:
		default:
		}
		<-b.release
	}
	return b.MapFS.Open(name)
}

// An interrupted report returns at once rather than after the directory.
func TestRunInterrupted(t *testing.T) {
	fsys := blockingFS{
		MapFS:   fstest.MapFS{"r1_before_20251006_101427_000001.txt": {Data: []byte("x 1\n"), ModTime: time.Unix(0, 0)}},
		opened:  make(chan struct{}, 1),
		release: make(chan struct{}),
	}
	defer close(fsys.release)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Config{FS: fsys})
		errc <- err
	}()
	<-fsys.opened // the ingester is stuck reading
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// countingFS blocks every Open until release is closed and counts them.
type countingFS struct {
	fstest.MapFS
	opens   *atomic.Int32
	release chan struct{}
}

func (c countingFS) Open(name string) (fs.File, error) {
	if name != "." {
		c.opens.Add(1)
		<-c.release
	}
	return c.MapFS.Open(name)
}

// TestRunInterruptedStopsReading: after an interrupt the ingester reads
// no further file and its goroutine ends once the reads in progress
// return; before, it went on through the whole directory.
func TestRunInterruptedStopsReading(t *testing.T) {
	files := fstest.MapFS{}
	for i := range 300 {
		files[fmt.Sprintf("r%03d_before_20251006_101427_%06d.txt", i, i)] = &fstest.MapFile{Data: []byte("x 1\n"), ModTime: time.Unix(0, 0)}
	}
	fsys := countingFS{MapFS: files, opens: &atomic.Int32{}, release: make(chan struct{})}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Config{FS: fsys})
		errc <- err
	}()
	for fsys.opens.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	close(fsys.release)
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the interrupted report, %d before", n, before)
	}
	// At most the files the workers were already reading.
	if n := int(fsys.opens.Load()); n > runtime.GOMAXPROCS(0)+1 {
		t.Errorf("%d of %d files opened after the interrupt, want at most the ones in progress", n, len(files))
	}
}

func TestRunUnreadableDirectory(t *testing.T) {
	_, err := Run(context.Background(), Config{FS: os.DirFS(filepath.Join(t.TempDir(), "missing"))})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Run = %v, want a not-exist error", err)
	}
}
