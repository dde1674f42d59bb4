package report

import (
	"context"
	"io"
	"os"
	"testing"
)

// BenchmarkRun reports on the directory named by $REPORT_BENCH_DIR (for
// profiling: scripts/bench-report.sh makes one). It is skipped without it.
func BenchmarkRun(b *testing.B) {
	dir := os.Getenv("REPORT_BENCH_DIR")
	if dir == "" {
		b.Skip("REPORT_BENCH_DIR not set")
	}
	for b.Loop() {
		r, err := Run(context.Background(), Config{FS: os.DirFS(dir), TrustAfters: true})
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteJSON(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}
