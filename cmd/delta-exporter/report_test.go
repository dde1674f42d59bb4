package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const reportGolden = "../../testdata/report"

// TestReportExitCodes runs the report command as a user would and checks
// its promise: 0 on success (whatever was withheld), 1 when the directory
// cannot be read, 2 on bad flags; every error one line on stderr.
func TestReportExitCodes(t *testing.T) {
	seq := filepath.Join(reportGolden, "sequential")
	damaged := filepath.Join(reportGolden, "damaged")
	file := filepath.Join(reportGolden, "sequential.json")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string // a substring of the one error line
	}{
		{"text", []string{"report", "--snapshots.dir=" + seq}, 0, ""},
		{"argument", []string{"report", "--format=csv", seq}, 0, ""},
		{"damaged is still success", []string{"report", "--format=json", "--snapshots.dir=" + damaged}, 0, ""},
		{"filters", []string{"report", "--snapshots.dir=" + seq, "--model=org/model-a", "--since=20251006_101427", "--until=2030-01-01T00:00:00Z"}, 0, ""},
		{"html with objectives", []string{"report", "--format=html", "--slo.config=" + filepath.Join(reportGolden, "slo.yml"), seq}, 0, ""},
		{"bad objectives", []string{"report", "--slo.config=" + file, seq}, 2, "--slo.config"},
		{"missing objectives", []string{"report", "--slo.config=" + filepath.Join(t.TempDir(), "nope.yml"), seq}, 2, "no such file"},
		{"no directory", []string{"report"}, 2, "--snapshots.dir is required"},
		{"two directories", []string{"report", "--snapshots.dir=" + seq, damaged}, 2, "disagree"},
		{"bad format", []string{"report", "--snapshots.dir=" + seq, "--format=xml"}, 2, "format"},
		{"bad since", []string{"report", "--snapshots.dir=" + seq, "--since=yesterday"}, 2, "--since"},
		{"bad until", []string{"report", "--snapshots.dir=" + seq, "--until=2025-13-01T00:00:00Z"}, 2, "--until"},
		{"missing directory", []string{"report", "--snapshots.dir=" + filepath.Join(t.TempDir(), "nope")}, 1, "no such file or directory"},
		{"not a directory", []string{"report", "--snapshots.dir=" + file}, 1, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if tc.code == 0 {
				if stderr.Len() != 0 || stdout.Len() == 0 {
					t.Errorf("stderr %q, %d bytes of output", stderr.String(), stdout.Len())
				}
				return
			}
			if lines := strings.Count(stderr.String(), "\n"); lines != 1 || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q: want one line with %q", stderr.String(), tc.stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("output on error: %q", stdout.String())
			}
		})
	}
}

// TestReportCommandMatchesPackage: the command writes exactly what package
// report's golden files hold (the same core, no second formatting; the
// golden pairs are read with --attribution.trust-afters there too).
func TestReportCommandMatchesPackage(t *testing.T) {
	for _, format := range []string{"txt", "json", "csv"} {
		flagValue := format
		if format == "txt" {
			flagValue = "text"
		}
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"report", "--format=" + flagValue, "--attribution.trust-afters", filepath.Join(reportGolden, "overlapping")}, &stdout, &stderr); code != 0 {
			t.Fatalf("%s: exit %d: %s", format, code, stderr.String())
		}
		want, err := os.ReadFile(filepath.Join(reportGolden, "overlapping."+format))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(stdout.Bytes(), want) {
			t.Errorf("%s output differs from the golden file", format)
		}
	}
}

func TestReportModelFilter(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"report", "--format=json", "--attribution.trust-afters", "--model=org/other", filepath.Join(reportGolden, "damaged")}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var doc struct {
		Requests []any `json:"requests"`
		Summary  struct {
			Excluded map[string]int `json:"excluded"`
		} `json:"summary"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	// damaged: 2 requests of org/model-a, 5 with no attributed model.
	if len(doc.Requests) != 0 || doc.Summary.Excluded["model"] != 2 || doc.Summary.Excluded["no_model"] != 5 {
		t.Errorf("requests %d, excluded %v", len(doc.Requests), doc.Summary.Excluded)
	}
}
