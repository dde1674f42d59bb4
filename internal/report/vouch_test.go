package report

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
)

// TestUnvouchedPairsReport: the golden pairs read without
// --attribution.trust-afters. Nothing vouches that their afters hold
// each request's finish, so no per-request value is published: every one
// is withheld as unvouched, the population is the whole server's as with
// the flag, and the Assumptions section (text and JSON) counts the
// windows nobody vouched for.
func TestUnvouchedPairsReport(t *testing.T) {
	const name = "overlapping"
	r, err := Run(context.Background(), Config{FS: os.DirFS(filepath.Join(goldenDir, name))})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range r.Requests {
		if res.Outcome != attribution.Withheld {
			t.Errorf("%s: %s without a vouched after", res.RequestID, res.Outcome)
		}
		for _, v := range res.Values {
			if v.Reason != attribution.ReasonUnvouched && v.Reason != attribution.ReasonAbsent {
				t.Errorf("%s: withheld as %q, want unvouched", res.RequestID, v.Reason)
			}
		}
	}
	checkPopulation(t, r, readTruth(t, name))
	n := len(r.Requests)
	if st := r.Assumptions[0].Status[attribution.AfterHolds]; *st.Windows != (attribution.Windows{Unvouched: n}) || st.State != attribution.Unchecked {
		t.Errorf("after_holds_observation %s, windows %+v; want unchecked, %d unvouched", st.State, st.Windows, n)
	}
	var text, js bytes.Buffer
	if err := WriteText(&text, r); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no window vouched for", fmt.Sprintf("by nobody (kept out) %d", n)} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q", want)
		}
	}
	if want := fmt.Sprintf(`"unvouched": %d`, n); !strings.Contains(js.String(), want) {
		t.Errorf("JSON report lacks %q", want)
	}
}
