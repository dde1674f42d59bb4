package ingest

import (
	"testing"
	"testing/fstest"
	"time"
)

// TestZeroValues: a zero field means what 0 means in its flag: off for a
// setting that can be off, the Default* constant for the others.
func TestZeroValues(t *testing.T) {
	in := New(Config{FS: fstest.MapFS{}})
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"MaxObserveDelay (off)", in.tl.MaxObserveDelay, time.Duration(0)},
		{"Settle (off)", in.cfg.Settle, time.Duration(0)},
		{"MaxDelay (off)", in.cfg.MaxDelay, time.Duration(0)},
		{"MaxBytes", in.cfg.MaxBytes, int64(DefaultMaxBytes)},
		{"IncompleteGrace", in.cfg.IncompleteGrace, DefaultIncompleteGrace},
		{"PairingTTL", in.cfg.PairingTTL, DefaultPairingTTL},
	} {
		if c.got != c.want {
			t.Errorf("%s: zero field gives %v, want %v", c.name, c.got, c.want)
		}
	}
	if in := New(Config{FS: fstest.MapFS{}, MaxObserveDelay: DefaultMaxObserveDelay}); in.tl.MaxObserveDelay != DefaultMaxObserveDelay {
		t.Errorf("MaxObserveDelay %v reaches the timeline as %v", DefaultMaxObserveDelay, in.tl.MaxObserveDelay)
	}
}
