//go:build unix

package capture

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user and system) the process has used
// so far. Unlike wall time, it hardly moves when other processes take the
// cores, so a benchmark on a shared machine can report it.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
