package report

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
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

func TestRunUnreadableDirectory(t *testing.T) {
	_, err := Run(context.Background(), Config{FS: os.DirFS(filepath.Join(t.TempDir(), "missing"))})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Run = %v, want a not-exist error", err)
	}
}
