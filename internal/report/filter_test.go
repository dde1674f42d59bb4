package report

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
)

func TestParseTime(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{in: "2025-10-06T10:14:27Z", want: utc("2025-10-06T10:14:27Z")},
		{in: "2025-10-06T10:14:27.123456Z", want: utc("2025-10-06T10:14:27.123456Z")},
		{in: "2025-10-06T12:14:27+02:00", want: utc("2025-10-06T10:14:27Z")},
		{in: "20251006_101427", want: utc("2025-10-06T10:14:27Z")},
		{in: "20251006_101427_000042", want: utc("2025-10-06T10:14:27.000042Z")},
		{in: "", bad: true},
		{in: "yesterday", bad: true},
		{in: "2025-10-06", bad: true},
		{in: "20251006_1014", bad: true},
		{in: "20251306_101427", bad: true},
		{in: "20251006_101427_12345x", bad: true},
	} {
		got, err := ParseTime(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseTime(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestFilterExclude(t *testing.T) {
	at := time.Date(2025, 10, 6, 10, 0, 0, 0, time.UTC)
	paired := attribution.Result{RequestID: "a", Model: "m1", BeforeFile: "a_before", BeforeTime: at, AfterTime: at.Add(time.Second)}
	noModel := attribution.Result{RequestID: "b", BeforeFile: "b_before", BeforeTime: at, Outcome: attribution.Unpaired}
	afterOnly := attribution.Result{RequestID: "c", AfterFile: "c_after", AfterTime: at.Add(time.Hour), Outcome: attribution.Unpaired}
	noFiles := attribution.Result{RequestID: "d", Outcome: attribution.Rejected}
	for _, tc := range []struct {
		name string
		f    Filter
		r    attribution.Result
		want exclusion
	}{
		{"no filter keeps all", Filter{}, noFiles, keep},
		{"model kept", Filter{Model: "m1"}, paired, keep},
		{"other model", Filter{Model: "m2"}, paired, byModel},
		{"no attributed model", Filter{Model: "m1"}, noModel, byNoModel},
		{"since is inclusive", Filter{Since: at}, paired, keep},
		{"before since", Filter{Since: at.Add(time.Microsecond)}, paired, byTime},
		{"until is exclusive", Filter{Until: at}, paired, byTime},
		{"before until", Filter{Until: at.Add(time.Microsecond)}, paired, keep},
		{"after-only placed at its after", Filter{Since: at.Add(30 * time.Minute)}, afterOnly, keep},
		{"after-only before until", Filter{Until: at.Add(30 * time.Minute)}, afterOnly, byTime},
		{"no time, time filter", Filter{Since: at}, noFiles, byTime},
		{"time checked before model", Filter{Model: "m2", Until: at}, paired, byTime},
	} {
		if got := tc.f.exclude(&tc.r); got != tc.want {
			t.Errorf("%s: exclude = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFilterNeverChangesValues runs the overlapping golden directory with
// and without filters: the requests kept must carry identical results,
// because attribution always sees the whole directory.
func TestFilterNeverChangesValues(t *testing.T) {
	fsys := os.DirFS(filepath.Join(goldenDir, "overlapping"))
	all, err := Run(context.Background(), Config{FS: fsys, TrustAfters: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Requests) < 4 {
		t.Fatalf("%d requests", len(all.Requests))
	}
	byID := map[string]attribution.Result{}
	for _, r := range all.Requests {
		byID[r.RequestID] = r
	}
	// The middle half of the requests by start time.
	n := len(all.Requests)
	since, until := StartTime(&all.Requests[n/4]), StartTime(&all.Requests[3*n/4])
	for _, f := range []Filter{
		{Since: since, Until: until},
		{Model: "org/model-a"},
		{Model: "org/none"},
	} {
		r, err := Run(context.Background(), Config{FS: fsys, TrustAfters: true, Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Requests)+r.Excluded.Total() != n {
			t.Errorf("%+v: %d shown + %+v excluded != %d", f, len(r.Requests), r.Excluded, n)
		}
		for _, got := range r.Requests {
			if want := byID[got.RequestID]; got != want {
				t.Errorf("%+v: %s differs with the filter:\n%+v\n%+v", f, got.RequestID, got, want)
			}
			if st := StartTime(&got); !f.Since.IsZero() && (st.Before(f.Since) || !st.Before(f.Until)) {
				t.Errorf("%+v: %s starts at %v", f, got.RequestID, st)
			}
		}
		if r.Summary.Outcomes.Requests() != len(r.Requests) {
			t.Errorf("%+v: summary counts %d of %d requests", f, r.Summary.Outcomes.Requests(), len(r.Requests))
		}
	}
}
