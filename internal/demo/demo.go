// Package demo holds the embedded demo: a simulated snapshot directory
// (snapshots/) that `delta-exporter` serves when no --snapshots.dir is
// given, so the README's first command works on a fresh machine without a
// server. README.md says how it was generated; truth.json is the ground
// truth the tests compare the served values with. Its pairs carry no
// capture sidecars, so nothing in them vouches for the afters: it is
// served with ingest.Config.TrustAfters (--attribution.trust-afters),
// true of the simulator, which takes each after once the request's finish
// is recorded.
package demo

import (
	"embed"
	"io/fs"
)

//go:embed snapshots
var snapshots embed.FS

// FS returns the embedded demo snapshot directory.
func FS() fs.FS {
	sub, err := fs.Sub(snapshots, "snapshots")
	if err != nil {
		panic(err) // the path is a constant checked by the build
	}
	return sub
}
