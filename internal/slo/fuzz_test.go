package slo

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: any bytes are refused with an error or give a Set that keeps
// the file's promises (bounded, unique valid names, targets in (0, 1), at
// least one positive threshold each); never a panic.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"../../testdata/report/slo.yml"} {
		if b, err := os.ReadFile(filepath.Clean(name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("objectives:\n  - {name: a, target: 0.9, model_regex: 'x.*', models: [m], thresholds: {ttft: 1s, time_per_output_token: 5ms}}\n"))
	f.Add([]byte("objectives:\n  - {name: a, target: 0.9, thresholds: {ttft: 1}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(b)
		if err != nil {
			return
		}
		if len(s.Objectives) == 0 || len(s.Objectives) > MaxObjectives {
			t.Fatalf("%d objectives", len(s.Objectives))
		}
		seen := map[string]bool{}
		for _, o := range s.Objectives {
			if !nameRE.MatchString(o.Name) || seen[o.Name] || !(o.Target > 0 && o.Target < 1) {
				t.Fatalf("objective %+v", o)
			}
			seen[o.Name] = true
			n := 0
			for _, d := range o.Thresholds {
				if d < 0 {
					t.Fatalf("negative threshold in %+v", o)
				}
				if d > 0 {
					n++
				}
			}
			if n == 0 {
				t.Fatalf("no threshold in %+v", o)
			}
		}
	})
}
