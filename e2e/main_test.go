package e2e

import (
	"os"
	"testing"
)

// TestMain removes the binary that binary() built once for the whole
// package.
func TestMain(m *testing.M) {
	code := m.Run()
	exporterBuild.Remove()
	os.Exit(code)
}
