package parser

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseName(t *testing.T) {
	ts := time.Date(2025, 11, 6, 22, 50, 30, 123456000, time.UTC)
	for _, tc := range []struct {
		base  string
		id    string
		stage Stage
		t     time.Time
		ok    bool
	}{
		{"chatcmpl-abc123_before_20251106_225030_123456.txt", "chatcmpl-abc123", Before, ts, true},
		{"chatcmpl-abc123_after_20251106_225030_123456.txt", "chatcmpl-abc123", After, ts, true},
		{"chatcmpl-abc123_first_20251106_225030_123456.txt", "chatcmpl-abc123", First, ts, true},
		{"cmpl-7c1e_info_20251106_225030_123456.json", "cmpl-7c1e", Info, ts, true},
		// ids with '_' and with a stage word inside: parsed from the right.
		{"req_42_x_before_20251106_225030_123456.txt", "req_42_x", Before, ts, true},
		{"my_before_id_after_20251106_225030_123456.txt", "my_before_id", After, ts, true},
		{"before_before_20251106_225030_123456.txt", "before", Before, ts, true},
		{"a__after_20251106_225030_123456.txt", "a_", After, ts, true},
		// timeline snapshots have no request id.
		{"_timeline_20251106_225030_123456.txt", "", Timeline, ts, true},
		{"node1_timeline_20251106_225030_123456.txt", "node1", Timeline, ts, true},
		{"timeline_20251106_225030_123456.txt", "", "", time.Time{}, false},
		// Midnight, leap day, end of year.
		{"r_before_20240229_000000_000000.txt", "r", Before, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), true},
		{"r_after_20251231_235959_999999.txt", "r", After, time.Date(2025, 12, 31, 23, 59, 59, 999999000, time.UTC), true},
		// Not snapshot names.
		{"README.md", "", "", time.Time{}, false},
		{"", "", "", time.Time{}, false},
		{".txt", "", "", time.Time{}, false},
		{"x_before_20251106_225030_12345.txt", "", "", time.Time{}, false},   // 5-digit micro
		{"x_before_20251106_225030_1234567.txt", "", "", time.Time{}, false}, // 7-digit micro
		{"chatcmpl-abc123_before_20251106_225030_123456.txt.tmp", "", "", time.Time{}, false},
		{"chatcmpl-abc123_before_20251106_225030_123456.TXT", "", "", time.Time{}, false},
		{"x_before_20251106-225030_123456.txt", "", "", time.Time{}, false},
		{"x_before_2025110_225030_1234567.txt", "", "", time.Time{}, false},
		{"x_before_20251306_225030_123456.txt", "", "", time.Time{}, false}, // month 13
		{"x_before_20250230_225030_123456.txt", "", "", time.Time{}, false}, // 30 Feb
		{"x_before_20251106_245030_123456.txt", "", "", time.Time{}, false}, // hour 24
		{"x_before_20251106_225060_123456.txt", "", "", time.Time{}, false}, // second 60
		{"x_before_2025110a_225030_123456.txt", "", "", time.Time{}, false},
		{"x_before_+0251106_225030_123456.txt", "", "", time.Time{}, false},
		{"x_during_20251106_225030_123456.txt", "", "", time.Time{}, false},
		{"x_Before_20251106_225030_123456.txt", "", "", time.Time{}, false},
		{"_before_20251106_225030_123456.txt", "", "", time.Time{}, false}, // empty id
		{"before_20251106_225030_123456.txt", "", "", time.Time{}, false},
		{"x_before_20251106_225030_123456.json", "", "", time.Time{}, false}, // json is for info only
		{"x_info_20251106_225030_123456.txt", "", "", time.Time{}, false},
		{"x_info_20251106_225030_123456.json.tmp", "", "", time.Time{}, false},
		{strings.Repeat("a", MaxRequestIDLen+1) + "_before_20251106_225030_123456.txt", "", "", time.Time{}, false},
		{strings.Repeat("a", MaxRequestIDLen) + "_before_20251106_225030_123456.txt", strings.Repeat("a", MaxRequestIDLen), Before, ts, true},
	} {
		n, err := ParseName(tc.base)
		if !tc.ok {
			if !errors.Is(err, ErrNotSnapshot) {
				t.Errorf("ParseName(%q) = %+v, %v; want ErrNotSnapshot", tc.base, n, err)
			}
			continue
		}
		if err != nil || n.RequestID != tc.id || n.Stage != tc.stage || !n.Time.Equal(tc.t) || n.Time.Location() != time.UTC {
			t.Errorf("ParseName(%q) = %+v, %v; want {%q %q %v}", tc.base, n, err, tc.id, tc.stage, tc.t)
		}
		if back := FormatName(n.RequestID, n.Stage, n.Time); back != tc.base {
			t.Errorf("FormatName(ParseName(%q)) = %q", tc.base, back)
		}
	}
}

func TestFormatStamp(t *testing.T) {
	// Local times are written in UTC; sub-microsecond digits are dropped.
	loc := time.FixedZone("X", 3600)
	tt := time.Date(2025, 11, 6, 23, 50, 30, 123456789, loc)
	if got, want := FormatStamp(tt), "20251106_225030_123456"; got != want {
		t.Fatalf("FormatStamp = %q, want %q", got, want)
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{
		"chatcmpl-abc123_before_20251106_225030_123456.txt", "x_info_20251106_225030_123456.json",
		"_timeline_20251106_225030_123456.txt", "README.md", "x_before_20251106_225030_12345.txt",
		"chatcmpl-abc123_before_20251106_225030_123456.txt.tmp", "a_b_after_20240229_000000_000000.txt",
	} {
		f.Add(s, "req", int64(1762469430123456), uint8(0))
	}
	stages := []Stage{Before, After, First, Timeline, Info}
	f.Fuzz(func(t *testing.T, base, id string, micros int64, st uint8) {
		// Any name: no panic; an accepted name holds what it claims and
		// formats back to itself.
		if n, err := ParseName(base); err == nil {
			if n.Stage != Timeline && n.RequestID == "" || len(n.RequestID) > MaxRequestIDLen {
				t.Fatalf("ParseName(%q) accepted bad id %q", base, n.RequestID)
			}
			if !strings.HasPrefix(base, n.RequestID+"_"+string(n.Stage)+"_") {
				t.Fatalf("ParseName(%q) = %+v: fields not in the name", base, n)
			}
			if n.Time.Location() != time.UTC || n.Time.Nanosecond()%1000 != 0 {
				t.Fatalf("ParseName(%q) time %v", base, n.Time)
			}
			if back := FormatName(n.RequestID, n.Stage, n.Time); back != base {
				t.Fatalf("FormatName(ParseName(%q)) = %q", base, back)
			}
		} else if !errors.Is(err, ErrNotSnapshot) {
			t.Fatalf("ParseName(%q): %v does not wrap ErrNotSnapshot", base, err)
		}
		// Round trip for ids without path separators, times of years 0-9999.
		stage := stages[int(st)%len(stages)]
		if strings.ContainsAny(id, `/\`) || len(id) > MaxRequestIDLen || id == "" && stage != Timeline {
			return
		}
		const lo, hi = -62167219200000000, 253402300799999999 // 0000-01-01 .. 9999-12-31, in µs
		if micros < lo || micros > hi {
			return
		}
		tt := time.UnixMicro(micros).UTC()
		name := FormatName(id, stage, tt)
		n, err := ParseName(name)
		if err != nil || n.RequestID != id || n.Stage != stage || !n.Time.Equal(tt) {
			t.Fatalf("ParseName(FormatName(%q, %q, %v)) = %+v, %v", id, stage, tt, n, err)
		}
	})
}
