package parser

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestScrapeStarted(t *testing.T) {
	want := time.Date(2026, 11, 27, 19, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name, head string
		want       time.Time
	}{
		{"capture line", ScrapeStartedPrefix + "2026-11-27T19:00:00.123456789Z\n", want},
		{"CRLF", ScrapeStartedPrefix + "2026-11-27T19:00:00.123456789Z\r\n", want},
		{"offset", ScrapeStartedPrefix + "2026-11-27T20:00:00.123456789+01:00\n", want},
		{"no line", "", time.Time{}},
		{"not first", "# HELP x y\n" + ScrapeStartedPrefix + "2026-11-27T19:00:00Z\n", time.Time{}},
		{"bad time", ScrapeStartedPrefix + "yesterday\n", time.Time{}},
		{"empty time", ScrapeStartedPrefix + "\n", time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := scrapeStarted([]byte(tc.head + "x 1\n"))
			if !got.Equal(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// The capture line is a comment: a file with it scans to the same series
// as the upstream body alone, plus the start time.
func TestScanCaptureLine(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "internal", "demo", "snapshots", "chatcmpl-015e4dc92b37c65386fc564768e2bcf4_before_20251006_101427_477797.txt"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Scan(body)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Date(2026, 11, 27, 19, 0, 0, 5000, time.UTC)
	withLine := append([]byte(ScrapeStartedPrefix+started.Format(time.RFC3339Nano)+"\n"), body...)
	got, err := Scan(withLine)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ScrapeStarted.Equal(started) {
		t.Errorf("ScrapeStarted = %v, want %v", got.ScrapeStarted, started)
	}
	got.ScrapeStarted = time.Time{}
	if !reflect.DeepEqual(got, plain) {
		t.Error("the capture line changed the scanned series")
	}
}
