package ingest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DirFS is a snapshot directory as serve reads it: os.DirFS, plus an open
// that neither follows a symlink nor blocks on a FIFO. The ingester lstats
// a file before it opens it, and a writer (or an attacker) can swap the
// file for a symlink to a FIFO in between: a plain open would follow the
// link and block for good, and no file would ever be read again.
type DirFS struct {
	fs.FS
	dir string
}

// NewDirFS returns the directory dir for Config.FS.
func NewDirFS(dir string) DirFS { return DirFS{FS: os.DirFS(dir), dir: dir} }

// ReadDir implements fs.ReadDirFS.
func (d DirFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(d.FS, name) }

// Lstat implements fs.ReadLinkFS: symlinks are seen as such.
func (d DirFS) Lstat(name string) (fs.FileInfo, error) { return d.FS.(fs.ReadLinkFS).Lstat(name) }

// ReadLink implements fs.ReadLinkFS.
func (d DirFS) ReadLink(name string) (string, error) { return d.FS.(fs.ReadLinkFS).ReadLink(name) }

// openRegular opens name for reading without following a symlink and
// without blocking (see openNoFollow); openChecked checks what it opened.
func (d DirFS) openRegular(name string) (*os.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	return openNoFollow(filepath.Join(d.dir, filepath.FromSlash(name)))
}

// regularOpener is implemented by DirFS (and test wrappers around it).
type regularOpener interface {
	openRegular(name string) (*os.File, error)
}

// errNotRegular: what was opened is not the regular file that was listed
// (a symlink, a FIFO or a device swapped in after the lstat).
var errNotRegular = errors.New("not a regular file when opened")

// errReplaced: a regular file, but not the one the lstat saw.
var errReplaced = errors.New("replaced between stat and open")

// openChecked opens name for reading and checks, on the opened file, that
// it is the regular file lstat reported (same device and inode): nothing
// swapped in between can make the read block or read something else.
// Any fs.FS that is not a DirFS is opened as it opens (tests, the
// embedded demo) and only the type is checked.
func openChecked(fsys fs.FS, name string, lst fs.FileInfo) (fs.File, error) {
	var f fs.File
	var err error
	if o, ok := fsys.(regularOpener); ok {
		f, err = o.openRegular(name)
	} else {
		f, err = fsys.Open(name)
	}
	if err != nil {
		if isSymlinkLoop(err) {
			return nil, fmt.Errorf("%w: %w", errNotRegular, err)
		}
		return nil, err
	}
	st, err := f.Stat()
	switch {
	case err != nil:
	case !st.Mode().IsRegular():
		err = fmt.Errorf("%w (%s)", errNotRegular, st.Mode().Type())
	case lst != nil && !sameFile(lst, st):
		err = errReplaced
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sameFile compares device and inode when both infos come from the os
// package; other file systems have no inode to compare.
func sameFile(a, b fs.FileInfo) bool {
	if a.Sys() == nil || b.Sys() == nil {
		return true
	}
	return os.SameFile(a, b)
}
