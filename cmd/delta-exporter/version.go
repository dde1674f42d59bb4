package main

import (
	"runtime/debug"

	"github.com/prometheus/common/version"
)

// buildVersion is what a plain `go build` or `go install` knows of itself:
// the module version (a tag for `go install …@v1.2.3`, "(devel)" in a
// checkout), the VCS revision and commit time that Go stamps into the
// binary. Release builds set version.* with -ldflags (Dockerfile); this is
// the fallback so that build_info and the landing page never show an empty
// version.
type buildVersion struct {
	Version, Revision, Date string
}

func readBuildVersion(bi *debug.BuildInfo) buildVersion {
	var v buildVersion
	if bi == nil {
		return v
	}
	v.Version = bi.Main.Version
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Date = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && v.Revision != "" {
		v.Revision += "-modified"
	}
	return v
}

// fillVersion sets the version variables that -ldflags left empty. It runs
// once in main, before anything reads them (build_info is a constant
// metric taken when the collector is built).
func fillVersion() {
	bi, _ := debug.ReadBuildInfo()
	v := readBuildVersion(bi)
	set := func(dst *string, val string) {
		if *dst == "" && val != "" {
			*dst = val
		}
	}
	set(&version.Version, v.Version)
	set(&version.Revision, v.Revision)
	set(&version.BuildDate, v.Date)
}
