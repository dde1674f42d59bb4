package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesBadSLOAndPageFlags: a bad objectives file or page size
// stops serve before it listens, with one error line.
func TestServeRefusesBadSLOAndPageFlags(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "slo.yml")
	if err := os.WriteFile(bad, []byte("objectives:\n  - {name: x, target: 0.9, thresholds: {ttft: 500}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"serve", "--web.requests-page.size=0"}, 2, "--web.requests-page.size=0"},
		{[]string{"serve", "--web.requests-page.size=10001"}, 2, "want 1 to 10000"},
		{[]string{"serve", "--web.listen-address=127.0.0.1:0", "--slo.config=" + bad}, 1, "want a duration with a unit"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append(tc.args, "--log.level=error"), &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.stderr)
		}
	}
}
