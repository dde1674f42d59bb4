package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
	"github.com/delta-exporter/delta-exporter/parser"
)

func TestRunWritesSnapshotsAndTruth(t *testing.T) {
	dir := t.TempDir()
	out, truth := filepath.Join(dir, "snaps"), filepath.Join(dir, "truth.json")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-out", out, "-truth", truth, "-requests", "6", "-inflight", "1", "-seed", "3",
		"-first", "-timeline", "200ms", "-models", "a,b", "-engines", "2"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	truths := testutil.ReadTruth(t, truth)
	if len(truths) != 6 {
		t.Fatalf("%d truths, want 6", len(truths))
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	stages := map[parser.Stage]int{}
	for _, e := range entries {
		n, err := parser.ParseName(e.Name())
		if err != nil {
			t.Fatalf("%s in the snapshot directory: %v", e.Name(), err)
		}
		stages[n.Stage]++
	}
	if stages[parser.Before] != 6 || stages[parser.After] != 6 || stages[parser.First] != 6 || stages[parser.Timeline] == 0 {
		t.Errorf("stages %v", stages)
	}
	if !strings.Contains(stdout.String(), "for 6 requests") {
		t.Errorf("stdout %q", stdout.String())
	}
	// The directory is not empty any more: a second run must refuse it.
	if code := run([]string{"-out", out, "-truth", truth}, &stdout, &stderr); code != 1 {
		t.Errorf("second run into a non-empty directory: exit %d", code)
	}
}

// TestRunProfiles: every profile can be generated, and a profile whose
// server lacks families says so in the truth.
func TestRunProfiles(t *testing.T) {
	for _, p := range simulate.Profiles() {
		dir := t.TempDir()
		out, truth := filepath.Join(dir, "snaps"), filepath.Join(dir, "truth.json")
		var stdout, stderr bytes.Buffer
		if code := run([]string{"-out", out, "-truth", truth, "-requests", "8", "-inflight", "2", "-profile", string(p), "-capture", "-first", "-server-metrics"}, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", p, code, stderr.String())
		}
		truths := testutil.ReadTruth(t, truth)
		if len(truths) != 8 {
			t.Fatalf("%s: %d truths", p, len(truths))
		}
		if p == simulate.ProfileSGLang && truths[0].Observed(parser.Queue) {
			t.Errorf("sglang: queue time observed in the truth")
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-truth", filepath.Join(dir, "t.json")},
		{"-out", filepath.Join(dir, "o")},
		{"-out", filepath.Join(dir, "o2"), "-truth", filepath.Join(dir, "t.json"), "-style", "v9"},
		{"-out", filepath.Join(dir, "o3"), "-truth", filepath.Join(dir, "t.json"), "-profile", "tgi"},
		{"-out", filepath.Join(dir, "o4"), "-truth", filepath.Join(dir, "t.json"), "-clients", "4", "-phases", "1:x"},
		{"-out", filepath.Join(dir, "o5"), "-truth", filepath.Join(dir, "t.json"), "-phases", "1:3"}, // without -clients
		{"-bogus"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code == 0 {
			t.Errorf("%v: exit 0", args)
		}
	}
}

// TestDemoIsReproducible regenerates the shipped demo with the command in
// internal/demo/README.md and compares it with the committed files.
func TestDemoIsReproducible(t *testing.T) {
	root := filepath.Join("..", "..", "..", "demo")
	dir := t.TempDir()
	out, truth := filepath.Join(dir, "demo"), filepath.Join(dir, "demo-truth.json")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-out", out, "-truth", truth, "-requests", "40", "-inflight", "0.15", "-seed", "2",
		"-models", "Qwen/Qwen3-8B,meta-llama/Llama-3.1-8B-Instruct",
		"-before-delay", "1ms", "-after-delay", "2ms", "-after-jitter", "1ms"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	const hint = "; regenerate with the command in internal/demo/README.md if the change is intended"
	compareFile(t, truth, filepath.Join(root, "truth.json"), hint)
	want, err := os.ReadDir(filepath.Join(root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d files generated, %d committed%s", len(got), len(want), hint)
	}
	for i := range got {
		if got[i].Name() != want[i].Name() {
			t.Fatalf("file %s generated, %s committed%s", got[i].Name(), want[i].Name(), hint)
		}
		compareFile(t, filepath.Join(out, got[i].Name()), filepath.Join(root, "snapshots", want[i].Name()), hint)
	}
}

func compareFile(t *testing.T, got, want, hint string) {
	t.Helper()
	g, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Fatalf("%s differs from the committed %s%s", filepath.Base(got), want, hint)
	}
}
