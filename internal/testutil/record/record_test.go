package record

import (
	"slices"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
)

// TestRepeated: an id decided twice is a repeat, except when both
// decisions reject it (a duplicate id rejects both requests).
func TestRepeated(t *testing.T) {
	r := New()
	for _, res := range []attribution.Result{
		{RequestID: "a", Outcome: attribution.Exact},
		{RequestID: "dup", Outcome: attribution.Rejected},
		{RequestID: "dup", Outcome: attribution.Rejected},
		{RequestID: "b", Outcome: attribution.Unpaired},
		{RequestID: "a", Outcome: attribution.Exact},
		{RequestID: "b", Outcome: attribution.Rejected},
	} {
		r.Publish(res)
	}
	if got := r.Repeated(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("repeated %v, want [a b]", got)
	}
	if got := r.IDs(); len(got) != 6 || r.ByID["b"].Outcome != attribution.Rejected {
		t.Errorf("ids %v, b %v", got, r.ByID["b"].Outcome)
	}
}
