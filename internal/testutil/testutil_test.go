package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestSnapshots: the files are named as the parser reads them, hold the
// server's metrics before and after its observations, leave no temporary
// file behind, and carry the modification times asked for.
func TestSnapshots(t *testing.T) {
	dir := t.TempDir()
	s := NewSnapshots(t, dir, "m")
	s.Step = 10 * time.Millisecond
	start := s.Now
	f := simulate.Finish{Queue: 0.01, Prefill: 0.02, Decode: 0.1, Inference: 0.12, E2E: 0.13, PromptTokens: 9, GenerationTokens: 4}
	b, a := s.Request("r1", "m", 0.03, f)
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	b2, a2 := s.RequestAt("r2", "m", 0.03, f, at, at.Add(time.Second))
	crafted := s.PutAt("notes.txt", []byte("x"), at)

	names := s.List()
	want := []string{a, a2, b, b2, crafted}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("directory holds %q, want %q", names, want)
	}
	for _, c := range []struct {
		name  string
		id    string
		stage parser.Stage
		at    time.Time
		count float64 // e2e observations in the file
	}{
		{b, "r1", parser.Before, start.Add(10 * time.Millisecond), 0},
		{a, "r1", parser.After, start.Add(20 * time.Millisecond), 1},
		{b2, "r2", parser.Before, at, 1},
		{a2, "r2", parser.After, at.Add(time.Second), 2},
	} {
		n, err := parser.ParseName(c.name)
		if err != nil || n.RequestID != c.id || n.Stage != c.stage || !n.Time.Equal(c.at) {
			t.Errorf("%s: parsed %+v, %v; want %s %s at %v", c.name, n, err, c.id, c.stage, c.at)
		}
		body, err := os.ReadFile(filepath.Join(dir, c.name))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} %.1f`+"\n", c.count); !bytes.Contains(body, []byte(want)) {
			t.Errorf("%s does not hold %q", c.name, want)
		}
	}
	for _, name := range []string{b2, a2, crafted} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name != a2 && !fi.ModTime().Equal(at) || name == a2 && !fi.ModTime().Equal(at.Add(time.Second)) {
			t.Errorf("%s modified at %v", name, fi.ModTime())
		}
	}
}

// TestFreeAddr: the address can be listened on.
func TestFreeAddr(t *testing.T) {
	l, err := net.Listen("tcp", FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// TestReadTruth reads back what the simulator wrote.
func TestReadTruth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "truth.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []simulate.Truth{{RequestID: "a"}, {RequestID: "b"}}
	if err := simulate.WriteTruth(f, want); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got := ReadTruth(t, path)
	if len(got) != 2 || got[0].RequestID != "a" || got[1].RequestID != "b" {
		t.Errorf("read %+v", got)
	}
}

// TestInCI: the values of CI that make a missing tool a failure.
func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "0": false, "true": true, "1": true, "yes": true} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}
