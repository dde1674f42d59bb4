package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// TestRetention: --snapshots.retention=7d deletes the files of ingested
// pairs older than 7 days, once a scrape has recorded them, and nothing
// else: not recent pairs, not files with other names. A restart then
// publishes nothing again.
func TestRetention(t *testing.T) {
	bin := binary(t)
	dir, data := t.TempDir(), t.TempDir()
	s := testutil.NewSnapshots(t, dir, "m")
	pair := func(id string, at time.Time) []string {
		b, a := s.RequestAt(id, "m", 0.05, simulate.Finish{Queue: 0.01, Prefill: 0.04, Decode: 0.2, Inference: 0.24, E2E: 0.25, PromptTokens: 7, GenerationTokens: 3},
			at, at.Add(time.Second))
		return []string{b, a}
	}
	now := time.Now()
	var old, kept []string
	for i := 0; i < 3; i++ {
		old = append(old, pair(fmt.Sprintf("old-%d", i), now.Add(-8*24*time.Hour+time.Duration(i)*time.Minute))...)
	}
	for i := 0; i < 2; i++ {
		kept = append(kept, pair(fmt.Sprintf("new-%d", i), now.Add(-time.Hour+time.Duration(i)*time.Minute))...)
	}
	kept = append(kept, s.PutAt("notes.txt", []byte("mine"), now.Add(-30*24*time.Hour)),
		s.PutAt("x_before_20250101_000000_1.txt", []byte("not a snapshot name"), now.Add(-30*24*time.Hour)))

	addr := testutil.FreeAddr(t)
	args := []string{"--snapshots.dir=" + dir, "--attribution.trust-afters", "--data.dir=" + data, "--web.listen-address=" + addr,
		"--snapshots.retention=7d", "--watch.rescan-interval=200ms"}
	cmd := start(t, bin, args...)
	var body []byte
	waitFor(t, "old pairs deleted", 30*time.Second, func() (bool, string) {
		var err error
		_, body, err = httpGet(context.Background(), "http://"+addr+"/metrics", nil) // each scrape records
		v, _ := sampleSum(body, `delta_exporter_retention_deleted_files_total{reason="age"}`)
		return err == nil && v == float64(len(old)), fmt.Sprint(v, err)
	})
	if c, _ := sampleSum(body, "llm_request_e2e_seconds_count"); c != 5 {
		t.Fatalf("published %v requests, want 5", c)
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	slices.Sort(left)
	slices.Sort(kept)
	if !slices.Equal(left, kept) {
		t.Fatalf("left in the directory:\n%q\nwant:\n%q", left, kept)
	}

	// Restarted, the exporter publishes none of them again.
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	start(t, bin, args...)
	waitFor(t, "restarted exporter ready", 30*time.Second, func() (bool, string) {
		code, b, err := httpGet(context.Background(), "http://"+addr+"/-/ready", nil)
		return err == nil && code == 200, fmt.Sprint(code, string(b), err)
	})
	_, body, err := httpGet(context.Background(), "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := sampleSum(body, "llm_request_e2e_seconds_count"); c != 0 {
		t.Fatalf("restart published %v requests again", c)
	}
	if v, _ := sampleSum(body, "delta_exporter_requests_already_published_total"); v != 2 {
		t.Fatalf("already published = %v, want 2 (the recent pairs)", v)
	}
}
