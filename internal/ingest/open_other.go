//go:build !unix

package ingest

import "os"

// openNoFollow: without O_NOFOLLOW and O_NONBLOCK, the fstat check after
// the open is all there is.
func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

func isSymlinkLoop(error) bool { return false }
