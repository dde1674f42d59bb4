package report

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	dir := filepath.Join(goldenDir, "damaged")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		step time.Duration // clock advance per reading
		min  int           // redraws at least
		max  int           // redraws at most
	}{
		// A slow run redraws on every file.
		{"slow", time.Second, len(entries), 1 << 20},
		// A quick run shows nothing.
		{"quick", time.Millisecond, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			clock := func() time.Time { now = now.Add(tc.step); return now }
			var out bytes.Buffer
			r, err := Run(context.Background(), Config{FS: os.DirFS(dir), TrustAfters: true, Progress: &out, Now: clock})
			if err != nil {
				t.Fatal(err)
			}
			s := out.String()
			draws := strings.Count(s, "\rdelta-exporter report: ")
			if draws < tc.min || draws > tc.max {
				t.Errorf("%d redraws, want %d..%d:\n%q", draws, tc.min, tc.max, s)
			}
			if tc.max == 0 {
				if s != "" {
					t.Errorf("quick run wrote %q", s)
				}
				return
			}
			if !strings.HasSuffix(s, "\r\x1b[K") {
				t.Errorf("progress %q: want a cleared line at the end", s)
			}
			if total := len(entries); !strings.Contains(s, fmt.Sprintf(" %d/%d files", total, total)) {
				t.Errorf("progress %q never shows %d/%d files", s, total, total)
			}
			if len(r.Requests) == 0 {
				t.Error("no requests")
			}
		})
	}
}
