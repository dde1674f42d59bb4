package main

import (
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
)

// TestFlagDefaults: the Default* constants spelled as flag defaults read
// back as the same values, in the spelling --help has always shown.
func TestFlagDefaults(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Millisecond, "10ms"},
		{5 * time.Second, "5s"},
		{10 * time.Minute, "10m"},
		{90 * time.Second, "1m30s"},
		{2 * time.Hour, "2h"},
		{0, "0s"},
	} {
		got := durationDefault(tc.d)
		app := kingpin.New("t", "")
		v := app.Flag("d", "").Default(got).Duration()
		if _, err := app.Parse(nil); err != nil || got != tc.want || *v != tc.d {
			t.Errorf("durationDefault(%v) = %q reads back as %v (%v); want %q", tc.d, got, *v, err, tc.want)
		}
	}
	for _, tc := range []struct {
		n    int64
		want string
	}{{64 << 20, "64MiB"}, {4 << 20, "4MiB"}, {3 << 30, "3GiB"}, {3 << 10, "3KiB"}, {1536, "1536B"}, {0, "0B"}} {
		got := bytesDefault(tc.n)
		app := kingpin.New("t", "")
		v := app.Flag("b", "").Default(got).Bytes()
		if _, err := app.Parse(nil); err != nil || got != tc.want || int64(*v) != tc.n {
			t.Errorf("bytesDefault(%d) = %q reads back as %d (%v); want %q", tc.n, got, int64(*v), err, tc.want)
		}
	}
}
