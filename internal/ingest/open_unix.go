//go:build unix

package ingest

import (
	"errors"
	"os"
	"syscall"
)

// openNoFollow opens path read-only. O_NOFOLLOW fails (ELOOP) on a
// symlink instead of following it; O_NONBLOCK makes the open of a FIFO
// return at once instead of waiting for a writer (the fstat that follows
// then rejects it). Neither changes how a regular file is read.
func openNoFollow(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}

func isSymlinkLoop(err error) bool { return errors.Is(err, syscall.ELOOP) }
