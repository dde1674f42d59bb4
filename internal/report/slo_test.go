package report

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/slo"
)

// TestGoldenSLO: with objectives, the text report adds the attainment per
// model and objective, the JSON summary an "slo" list and the CSV a
// verdict column per objective; the HTML report shows them too. The
// verdicts that are not unknown agree with the truth, and a rejected or
// unpaired request (no model) is unknown for every objective.
func TestGoldenSLO(t *testing.T) {
	objectives, err := slo.Load(filepath.Join(goldenDir, "slo.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"overlapping", "damaged"} {
		t.Run(name, func(t *testing.T) {
			r, err := Run(context.Background(), Config{FS: os.DirFS(filepath.Join(goldenDir, name)), TrustAfters: true, Objectives: objectives})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				ext   string
				write func(io.Writer, *Report) error
			}{{"txt", WriteText}, {"json", WriteJSON}, {"csv", WriteCSV}, {"html", WriteHTML}} {
				var b bytes.Buffer
				if err := f.write(&b, r); err != nil {
					t.Fatal(err)
				}
				compareGolden(t, filepath.Join(goldenDir, name+".slo."+f.ext), b.Bytes())
			}
			truth := map[string]slo.Tally{}
			for _, tr := range readTruth(t, name) {
				for oi := range objectives.Objectives {
					o := &objectives.Objectives[oi]
					if !o.Applies(tr.Model) {
						continue
					}
					ok := tr.TTFT <= o.Thresholds[slo.TTFT].Seconds() || o.Thresholds[slo.TTFT] == 0
					ok = ok && (o.Thresholds[slo.E2E] == 0 || tr.E2E <= o.Thresholds[slo.E2E].Seconds())
					if o.Thresholds[slo.TPOT] != 0 && tr.GenerationTokens >= 2 {
						ok = ok && tr.Decode/float64(tr.GenerationTokens-1) <= o.Thresholds[slo.TPOT].Seconds()
					}
					byID := truth[o.Name+"/"+tr.RequestID]
					if ok {
						byID.Add(slo.Met)
					} else {
						byID.Add(slo.Missed)
					}
					truth[o.Name+"/"+tr.RequestID] = byID
				}
			}
			unknown := 0
			for i := range r.Requests {
				res := &r.Requests[i]
				for _, j := range objectives.Judge(res) {
					want, ok := truth[j.Objective+"/"+res.RequestID]
					switch {
					case j.Result == slo.Unknown:
						unknown++
					case !ok:
						t.Errorf("%s %s: %s, but the truth has no such request for it", j.Objective, res.RequestID, j.Result)
					case (j.Result == slo.Met) != (want.Met == 1):
						t.Errorf("%s %s: %s, truth %+v", j.Objective, res.RequestID, j.Result, want)
					}
				}
			}
			if unknown == 0 {
				t.Error("no unknown verdict: the scenario should show withheld values")
			}
		})
	}
}
