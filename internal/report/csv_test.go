package report

import (
	"errors"
	"io"
	"testing"
)

type failingWriter struct{}

var errDiskFull = errors.New("disk full")

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

// Both CSV writers report a writer's error (they share writeCSV).
func TestCSVWriteError(t *testing.T) {
	for name, write := range map[string]func(io.Writer, *Report) error{"csv": WriteCSV, "summary-csv": WriteSummaryCSV} {
		if err := write(failingWriter{}, &Report{}); !errors.Is(err, errDiskFull) {
			t.Errorf("%s: error %v, want the writer's", name, err)
		}
	}
}
