package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes the binary that binary() built once for the whole
// package: it lives outside any test's TempDir because the tests share it.
func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}
