package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestRetention: --snapshots.retention=7d deletes the files of ingested
// pairs older than 7 days, once a scrape has recorded them, and nothing
// else: not recent pairs, not files with other names. A restart then
// publishes nothing again.
func TestRetention(t *testing.T) {
	bin := binary(t)
	dir, data := t.TempDir(), t.TempDir()
	srv := simulate.NewServer(simulate.ServerConfig{Models: []string{"m"}})
	put := func(name string, body []byte, at time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return name
	}
	snap := func(id string, stage parser.Stage, at time.Time) string {
		var b bytes.Buffer
		srv.WriteTo(&b)
		return put(parser.FormatName(id, stage, at), b.Bytes(), at)
	}
	pair := func(id string, at time.Time) []string {
		b := snap(id, parser.Before, at)
		srv.ObserveFirstToken("m", 0, 0.05)
		srv.ObserveFinish("m", 0, simulate.Finish{Queue: 0.01, Prefill: 0.04, Decode: 0.2, Inference: 0.24, E2E: 0.25, PromptTokens: 7, GenerationTokens: 3})
		return []string{b, snap(id, parser.After, at.Add(time.Second))}
	}
	now := time.Now()
	var old, kept []string
	for i := 0; i < 3; i++ {
		old = append(old, pair(fmt.Sprintf("old-%d", i), now.Add(-8*24*time.Hour+time.Duration(i)*time.Minute))...)
	}
	for i := 0; i < 2; i++ {
		kept = append(kept, pair(fmt.Sprintf("new-%d", i), now.Add(-time.Hour+time.Duration(i)*time.Minute))...)
	}
	kept = append(kept, put("notes.txt", []byte("mine"), now.Add(-30*24*time.Hour)),
		put("x_before_20250101_000000_1.txt", []byte("not a snapshot name"), now.Add(-30*24*time.Hour)))

	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--snapshots.dir=" + dir, "--data.dir=" + data, "--web.listen-address=" + addr,
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
