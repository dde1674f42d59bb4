package testutil

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the CI environment variable is set to something
// other than false or 0 (.ci/run runs with CI=true).
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Missing is for a test that needs something the machine may lack (a
// program, a Python stack, a Prometheus build): it skips the test, or
// fails it in CI, where .ci/run installs what the tests need. The message
// says what is missing and how to get it.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (required in CI)", msg)
	}
	t.Skip(msg)
}
