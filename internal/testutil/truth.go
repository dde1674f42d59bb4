package testutil

import (
	"os"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
)

// ReadTruth reads a truth file the simulator wrote (simulate.WriteTruth,
// gendata -truth): the values each simulated request really had.
func ReadTruth(t testing.TB, path string) []simulate.Truth {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	truths, err := simulate.ReadTruth(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return truths
}
