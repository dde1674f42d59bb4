package collector

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/common/expfmt"
)

// TestLongModelNameIsCut: a 10 MB model_name does not reach the
// exposition; it is published under a bounded value and counted. Before,
// every scrape carried the whole name on every series.
func TestLongModelNameIsCut(t *testing.T) {
	c, reg := newCollector(t, 10)
	huge := "org/" + strings.Repeat("m", 10<<20)
	c.Publish(exact("r1", huge, 0.5))
	c.Publish(exact("r2", huge, 0.5))
	c.Publish(exact("r3", "org/short", 0.5))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	enc := expfmt.NewEncoder(&out, expfmt.NewFormat(expfmt.TypeTextPlain))
	var truncated float64
	models := map[string]uint64{}
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
		switch mf.GetName() {
		case "delta_exporter_model_names_truncated_total":
			truncated = mf.GetMetric()[0].GetCounter().GetValue()
		case "llm_request_e2e_seconds":
			for _, m := range mf.GetMetric() {
				models[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	if out.Len() > 1<<20 {
		t.Fatalf("exposition is %d bytes", out.Len())
	}
	if truncated != 2 {
		t.Fatalf("truncated = %v, want 2 (one per request)", truncated)
	}
	cut, _ := BoundModelName(huge)
	if models[cut] != 2 || models["org/short"] != 1 || len(models) != 2 {
		t.Fatalf("model_name values: %d, counts of the cut name %d, of the short one %d", len(models), models[cut], models["org/short"])
	}
}

// TestBoundModelName: short names are themselves; long ones are cut to
// the limit with a hash that keeps names with a common head apart.
func TestBoundModelName(t *testing.T) {
	long := strings.Repeat("a", MaxModelNameBytes)
	tests := []struct {
		name, in string
		cut      bool
	}{
		{"empty", "", false},
		{"hugging face id", "meta-llama/Llama-3.1-70B-Instruct", false},
		{"exactly the limit", long, false},
		{"one byte over", long + "b", true},
		{"multi-byte runes over the limit", strings.Repeat("é", MaxModelNameBytes), true},
		{"invalid UTF-8", "model\xff", true},
		{"10 MB", strings.Repeat("x", 10<<20), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, cut := BoundModelName(tc.in)
			if cut != tc.cut {
				t.Fatalf("cut = %v", cut)
			}
			if !cut && got != tc.in {
				t.Fatalf("changed a short name: %q", got)
			}
			if len(got) > MaxModelNameBytes || !utf8.ValidString(got) {
				t.Fatalf("%d bytes, valid %v", len(got), utf8.ValidString(got))
			}
		})
	}
	a, _ := BoundModelName(long + "a")
	b, _ := BoundModelName(long + "b")
	if a == b {
		t.Fatalf("two long names with the same head map to %q", a)
	}
}

// FuzzBoundModelName: any name gives a valid UTF-8 value within the
// limit, the same each time, the name itself when it is short and valid,
// and one that the registry accepts.
func FuzzBoundModelName(f *testing.F) {
	f.Add("org/model")
	f.Add(strings.Repeat("é", 100))
	f.Add("\xff\xfe")
	f.Add(strings.Repeat("z", 300))
	f.Fuzz(func(t *testing.T, name string) {
		got, cut := BoundModelName(name)
		again, _ := BoundModelName(name)
		if got != again {
			t.Fatal("not deterministic")
		}
		if len(got) > MaxModelNameBytes || !utf8.ValidString(got) {
			t.Fatalf("%q: %d bytes, valid %v", got, len(got), utf8.ValidString(got))
		}
		if short := len(name) <= MaxModelNameBytes && utf8.ValidString(name); short == cut || (short && got != name) {
			t.Fatalf("%q -> %q, cut %v", name, got, cut)
		}
		c, _ := newCollector(t, 2)
		c.Publish(exact("r", name, 1)) // panics on a label value the registry refuses
	})
}
