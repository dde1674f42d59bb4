package slo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	s, err := Parse([]byte(`
objectives:
  - name: interactive
    target: 0.99
    thresholds:
      ttft: 500ms
      time_per_output_token: 50ms
  - name: batch.qwen
    target: 0.9
    models: [org/model-a]
    model_regex: "qwen-.*"
    thresholds:
      e2e: 1m
      queue: 1.5s
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Names(); len(got) != 2 || got[0] != "interactive" || got[1] != "batch.qwen" {
		t.Fatalf("names %v", got)
	}
	a, b := &s.Objectives[0], &s.Objectives[1]
	if a.Target != 0.99 || a.Thresholds[TTFT] != 500*time.Millisecond || a.Thresholds[TPOT] != 50*time.Millisecond || a.Thresholds[E2E] != 0 {
		t.Errorf("interactive: %+v", a)
	}
	if b.Thresholds[E2E] != time.Minute || b.Thresholds[Queue] != 1500*time.Millisecond {
		t.Errorf("batch: %+v", b.Thresholds)
	}
	for model, want := range map[string][2]bool{
		"org/model-a": {true, true}, "qwen-32b": {true, true}, "xqwen-32b": {true, false},
		"qwen-": {true, true}, "llama": {true, false}, "": {true, true},
	} {
		if a.Applies(model) != want[0] || b.Applies(model) != want[1] {
			t.Errorf("%q: applies %v %v, want %v", model, a.Applies(model), b.Applies(model), want)
		}
	}
}

// TestParseErrors: the file is read strictly, and every error says what
// is wrong and where.
func TestParseErrors(t *testing.T) {
	one := func(body string) string {
		return "objectives:\n  - name: x\n    target: 0.99\n" + body
	}
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty file", "", "no objectives"},
		{"no objectives", "objectives: []\n", "no objectives"},
		{"unknown top key", "objective: []\n", "field objective not found"},
		{"unknown objective key", one("    threshold:\n      ttft: 1s\n"), "field threshold not found"},
		{"unknown threshold", one("    thresholds:\n      tpot: 1s\n"), "field tpot not found"},
		{"no thresholds", one(""), `objective "x": no thresholds`},
		{"empty thresholds", one("    thresholds: {}\n"), `objective "x": no thresholds`},
		{"bare number", one("    thresholds:\n      ttft: 0.5\n"), "want a duration with a unit"},
		{"bad unit", one("    thresholds:\n      ttft: 500 ms\n"), "want a duration with a unit"},
		{"unknown unit", one("    thresholds:\n      ttft: 5d\n"), "want a duration with a unit"},
		{"zero", one("    thresholds:\n      ttft: 0s\n"), "must be positive"},
		{"negative", one("    thresholds:\n      ttft: -1s\n"), "must be positive"},
		{"no target", "objectives:\n  - name: x\n    thresholds:\n      ttft: 1s\n", "no target"},
		{"target 1", "objectives:\n  - name: x\n    target: 1\n    thresholds:\n      ttft: 1s\n", "strictly between 0 and 1"},
		{"target percent", "objectives:\n  - name: x\n    target: 99\n    thresholds:\n      ttft: 1s\n", "strictly between 0 and 1"},
		{"no name", "objectives:\n  - target: 0.9\n    thresholds:\n      ttft: 1s\n", "objective 1: name"},
		{"bad name", "objectives:\n  - name: 'a b'\n    target: 0.9\n    thresholds:\n      ttft: 1s\n", "want 1 to 64"},
		{"duplicate", "objectives:\n  - {name: x, target: 0.9, thresholds: {ttft: 1s}}\n  - {name: x, target: 0.9, thresholds: {e2e: 1s}}\n", "name used twice"},
		{"bad regex", one("    model_regex: '('\n    thresholds:\n      ttft: 1s\n"), "model_regex"},
		{"empty regex", one("    model_regex: ''\n    thresholds:\n      ttft: 1s\n"), "model_regex: empty"},
		{"empty model", one("    models: ['']\n    thresholds:\n      ttft: 1s\n"), "empty model name"},
		{"two documents", "objectives:\n  - {name: x, target: 0.9, thresholds: {ttft: 1s}}\n---\nfoo: 1\n", "more than one YAML document"},
		{"not YAML", "objectives: [", "yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	var many strings.Builder
	many.WriteString("objectives:\n")
	for i := range MaxObjectives + 1 {
		many.WriteString("  - {name: o" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ", target: 0.9, thresholds: {ttft: 1s}}\n")
	}
	if _, err := Parse([]byte(many.String())); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("%d objectives: error %v", MaxObjectives+1, err)
	}
}

// TestReloader: a reload swaps a valid file in and keeps the current
// objectives when the new file is refused.
func TestReloader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "slo.yml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("objectives:\n  - {name: a, target: 0.9, thresholds: {ttft: 1s}}\n")
	var loads []string
	r, err := NewReloader(path, nil, func(s *Set, err error) {
		if err != nil {
			loads = append(loads, "error")
			return
		}
		loads = append(loads, strings.Join(s.Names(), ","))
	})
	if err != nil {
		t.Fatal(err)
	}
	write("objectives:\n  - {name: b, target: 0.9, thresholds: {ttft: 1s}}\n  - {name: c, target: 0.9, thresholds: {e2e: 1s}}\n")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	write("objectives:\n  - {name: d, target: 0.9, thresholds: {ttft: 1}}\n")
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("bad file: error %v, want one naming the file", err)
	}
	if got := strings.Join(r.Set().Names(), ","); got != "b,c" {
		t.Errorf("after a refused reload: objectives %s, want b,c", got)
	}
	if got := strings.Join(loads, " "); got != "a b,c error" {
		t.Errorf("loads %q", got)
	}
	if _, err := NewReloader(path, nil, nil); err == nil {
		t.Error("a bad file at start is accepted")
	}
}
