package main

import (
	"runtime/debug"
	"testing"
)

func TestReadBuildVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want buildVersion
	}{
		{"no build info", nil, buildVersion{}},
		{"go install at a tag", &debug.BuildInfo{Main: debug.Module{Version: "v0.4.0"}}, buildVersion{Version: "v0.4.0"}},
		{"go build in a clean checkout", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "9d8dd3e"}, {Key: "vcs.time", Value: "2026-12-07T10:00:00Z"}, {Key: "vcs.modified", Value: "false"},
		}}, buildVersion{Version: "(devel)", Revision: "9d8dd3e", Date: "2026-12-07T10:00:00Z"}},
		{"go build with local changes", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "9d8dd3e"}, {Key: "vcs.modified", Value: "true"},
		}}, buildVersion{Version: "(devel)", Revision: "9d8dd3e-modified"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readBuildVersion(tc.bi); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
