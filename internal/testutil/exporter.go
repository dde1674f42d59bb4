package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// exporterPkg is the command the tests run as users do.
const exporterPkg = "github.com/delta-exporter/delta-exporter/cmd/delta-exporter"

// Exporter is the delta-exporter binary, built on first use and shared by
// the tests of one test binary. Its package's TestMain calls Remove after
// m.Run: the binary lives outside any test's TempDir because the tests
// share it.
type Exporter struct {
	// Ldflags are go build's -ldflags; empty for none.
	Ldflags string
	// Static builds as the Dockerfile does (CGO_ENABLED=0, -trimpath). Such
	// a build shares no cache with the test builds: it compiles every
	// dependency again, minutes on 2 cores.
	Static bool

	once sync.Once
	dir  string
	path string
	err  error
}

// Path builds the binary the first time and returns its path; a failed
// build fails every test that asks.
func (e *Exporter) Path(t testing.TB) string {
	t.Helper()
	e.once.Do(e.build)
	if e.err != nil {
		t.Fatal(e.err)
	}
	return e.path
}

// Remove deletes the built binary and its directory.
func (e *Exporter) Remove() {
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

func (e *Exporter) build() {
	e.dir, e.err = os.MkdirTemp("", "delta-exporter-test-")
	if e.err != nil {
		return
	}
	e.path = filepath.Join(e.dir, "delta-exporter")
	args := []string{"build", "-o", e.path}
	if e.Static {
		args = append(args, "-trimpath")
	}
	if e.Ldflags != "" {
		args = append(args, "-ldflags", e.Ldflags)
	}
	cmd := exec.Command("go", append(args, exporterPkg)...)
	if e.Static {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		e.err = fmt.Errorf("go build %s: %w\n%s", exporterPkg, err, out)
	}
}
