package report

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/ingest"
)

func TestZZPhases(t *testing.T) {
	dir := os.Getenv("REPORT_BENCH_DIR")
	if dir == "" {
		t.Skip()
	}
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		c := &collect{}
		in := ingest.New(ingest.Config{FS: os.DirFS(dir), Publisher: c})
		if err := in.Scan(true); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		in.Finish()
		t2 := time.Now()
		r := c.report(Filter{})
		t3 := time.Now()
		WriteJSON(io.Discard, r)
		t4 := time.Now()
		t.Logf("scan %v finish %v report %v json %v total %v", t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), t4.Sub(t3), t4.Sub(t0))
	}
}
