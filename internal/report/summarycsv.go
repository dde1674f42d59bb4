package report

import (
	"io"
	"strconv"
	"strings"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
)

// WriteSummaryCSV writes the summary as CSV (--format=summary-csv): one
// row per model and value key, the exact statistics beside the
// population's, header first. The cells are the JSON summary's (package
// documentation), a null an empty cell; a population percentile is two
// cells, the bounds of the server bucket it falls in (at_most empty for
// +Inf).
func WriteSummaryCSV(w io.Writer, r *Report) error {
	header := []string{"model_name", "metric", "exact_count", "exact_total", "exact_mean", "exact_p50", "exact_p90",
		"exact_p99", "exact_max", "withheld", "population_count", "population_total", "population_mean"}
	for _, p := range []string{"p50", "p90", "p99"} {
		header = append(header, "population_"+p+"_above", "population_"+p+"_at_most")
	}
	header = append(header, "coverage", "bias", "bias_warning")
	num := func(v float64) string { return string(appendJSONFloat(nil, v)) }
	return writeCSV(w, header, func(yield func([]string) bool) {
		for i := range r.Summary.Models {
			ms := &r.Summary.Models[i]
			for c, col := range columns {
				st := &ms.Metrics[c]
				row := []string{ms.Model, col.key, strconv.Itoa(st.Count), num(st.Total)}
				if st.Count > 0 {
					row = append(row, num(st.Mean), num(st.P50), num(st.P90), num(st.P99), num(st.Max))
				} else {
					row = append(row, "", "", "", "", "")
				}
				var withheld []string
				for _, reason := range attribution.WithheldReasons {
					if n := st.Withheld[reason]; n > 0 {
						withheld = append(withheld, string(reason)+"="+strconv.Itoa(n))
					}
				}
				row = append(row, strings.Join(withheld, ";"))
				if p := ms.Population[c]; p != nil {
					row = append(row, strconv.FormatUint(p.Count, 10), num(p.Total), num(p.Mean))
					for _, b := range []BucketRange{p.P50, p.P90, p.P99} {
						row = append(row, num(b.Above), num(b.AtMost)) // +Inf: empty, as JSON's null
					}
					cov, _ := ms.Coverage(c)
					row = append(row, num(cov))
					if b, ok := ms.Bias(c); ok {
						row = append(row, num(b))
					} else {
						row = append(row, "")
					}
				} else {
					row = append(row, make([]string, 11)...)
				}
				row = append(row, strconv.FormatBool(ms.BiasWarning(c)))
				if !yield(row) {
					return
				}
			}
		}
	})
}
