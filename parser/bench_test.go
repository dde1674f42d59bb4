package parser

// Cost of Scan against reading the file, on the realistic vLLM V1 scrape
// (testdata/realistic/vllm-v1-34k.prom, 49.7 KB, or synthScrape when it is
// absent). Run, on an otherwise idle machine:
//
//	go test -run '^$' -bench . -benchmem ./parser
//
// BenchmarkRatio interleaves the three operations in one loop, so that load
// from other processes hits all of them alike, and reports the ratios
// scan/read and expfmt/read. Measured (linux/amd64, 2 shared cores, Go 1.26,
// see the report in the commit message for the raw ns/op):
//
//	scan/read   ≈ 0.5–0.6   (target: ≤ 2)
//	expfmt/read ≈ 25–30
//
// Scan allocates 4 times per call (snapshot, series, buckets, one string
// for labels and models); TestScanAllocs pins that.

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const realisticV1 = "../testdata/realistic/vllm-v1-34k.prom"

// benchFile returns the path of the benchmark input, writing synthScrape
// to a temporary file when the realistic one is absent.
func benchFile(b *testing.B) string {
	if _, err := os.Stat(realisticV1); err == nil {
		return realisticV1
	}
	p := filepath.Join(b.TempDir(), "synth.prom")
	if err := os.WriteFile(p, synthScrape(1), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s absent: using synthScrape", realisticV1)
	return p
}

func readBench(b *testing.B) (string, []byte) {
	p := benchFile(b)
	data, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Scan(data); err != nil {
		b.Fatalf("Scan(%s): %v", p, err)
	}
	b.SetBytes(int64(len(data)))
	return p, data
}

func BenchmarkReadFile(b *testing.B) {
	p, _ := readBench(b)
	for b.Loop() {
		if _, err := os.ReadFile(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScan(b *testing.B) {
	_, data := readBench(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Scan(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkExpfmt(b *testing.B) {
	_, data := readBench(b)
	b.ReportAllocs()
	for b.Loop() {
		p := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := p.TextToMetricFamilies(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRatio reports scan/read and expfmt/read: per iteration it reads
// the file, scans it and parses it with expfmt, timing each.
func BenchmarkRatio(b *testing.B) {
	p, _ := readBench(b)
	var read, scan, exp time.Duration
	for b.Loop() {
		t0 := time.Now()
		data, err := os.ReadFile(p)
		t1 := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Scan(data); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		tp := expfmt.NewTextParser(model.UTF8Validation)
		if _, err := tp.TextToMetricFamilies(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		read += t1.Sub(t0)
		scan += t2.Sub(t1)
		exp += t3.Sub(t2)
	}
	b.ReportMetric(float64(scan)/float64(read), "scan/read")
	b.ReportMetric(float64(exp)/float64(read), "expfmt/read")
	b.ReportMetric(float64(read)/float64(b.N), "read-ns/op")
	b.ReportMetric(float64(scan)/float64(b.N), "scan-ns/op")
}
