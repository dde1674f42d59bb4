package report

import (
	"encoding/csv"
	"io"
	"iter"
	"math"
	"strconv"
	"strings"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
)

// WriteCSV writes one row per request with the columns of the JSON
// requests, header first. A null is an empty cell; "withheld" holds
// metric=reason pairs separated by ';'. With objectives, a column
// slo:NAME per objective holds met, missed or unknown (empty when the
// objective does not apply to the request's model).
func WriteCSV(w io.Writer, r *Report) error {
	header := []string{"request_id", "model_name", "before_file", "after_file", "started_at", "outcome", "reject_reason"}
	for _, c := range columns {
		header = append(header, c.key)
	}
	header = append(header, "withheld")
	header = append(header, sloCSVHeader(r)...)
	return writeCSV(w, header, func(yield func([]string) bool) {
		row := make([]string, 0, len(header))
		for i := range r.Requests {
			res := &r.Requests[i]
			started := ""
			if res.BeforeFile != "" {
				started = FormatTime(res.BeforeTime)
			}
			row = append(row[:0], res.RequestID, res.Model, res.BeforeFile, res.AfterFile, started,
				string(res.Outcome), string(res.RejectReason))
			var withheld []string
			for _, c := range columns {
				v := c.value(res)
				row = append(row, csvValue(c, v))
				if !v.Exact {
					withheld = append(withheld, c.key+"="+string(v.Reason))
				}
			}
			row = append(row, strings.Join(withheld, ";"))
			row = appendSLOCSV(row, r, res)
			if !yield(row) {
				return
			}
		}
	})
}

// writeCSV writes the header, then each row of rows (which may reuse one
// slice: a row is written before the next is made), and reports the
// first error.
func writeCSV(w io.Writer, header []string, rows iter.Seq[[]string]) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	for row := range rows {
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvValue writes numbers as the JSON output does, so both formats carry
// the same digits.
func csvValue(c column, v attribution.Value) string {
	if !v.Exact {
		return ""
	}
	if c.tokens() {
		return strconv.FormatInt(int64(math.Round(v.V)), 10)
	}
	if math.IsNaN(v.V) || math.IsInf(v.V, 0) {
		return ""
	}
	return string(appendJSONFloat(nil, v.V))
}
