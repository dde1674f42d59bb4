// Package deltaexporter holds what the whole repository shares: the demo
// snapshot directory that `delta-exporter` serves when no --snapshots.dir
// is given, so the first command of the README works on a fresh machine.
package deltaexporter

import (
	"embed"
	"io/fs"
)

//go:embed testdata/demo
var demo embed.FS

// Demo returns the embedded demo snapshot directory (testdata/demo).
func Demo() fs.FS {
	sub, err := fs.Sub(demo, "testdata/demo")
	if err != nil {
		panic(err) // the path is a constant checked by the build
	}
	return sub
}
