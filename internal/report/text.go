package report

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// dash marks a value that is not shown.
const dash = "—"

// textColumns are the values of the text table, in the order a reader
// follows a request: queue, prefill, decode, then the totals. Inference
// (prefill + decode) is left to the summary to keep rows narrow.
var textColumns = []int{
	int(parser.Queue), int(parser.Prefill), int(parser.Decode), int(parser.TTFT), int(parser.E2E),
	int(parser.PromptTokens), int(parser.GenerationTokens), int(parser.NumMetrics),
}

// WriteText writes the report for people: one row per request, then a
// summary per model, then the incomplete pairs and the unusable files.
// Seconds are shown with 4 decimals (0.1 ms); JSON and CSV carry every
// digit.
func WriteText(w io.Writer, r *Report) error {
	bw := bufio.NewWriter(w)
	writeRequests(bw, r)
	writeSummary(bw, r)
	writeSLO(bw, r)
	writeIncomplete(bw, r)
	writeFiles(bw, r)
	writeAssumptions(bw, r)
	return bw.Flush()
}

// table aligns the cells that fill writes (tab-separated, one row a line)
// and writes them to w without the padding tabwriter leaves after the last
// non-empty cell of a row.
func table(w io.Writer, fill func(tw io.Writer)) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fill(tw)
	tw.Flush()
	for line := range bytes.Lines(buf.Bytes()) {
		w.Write(bytes.TrimRight(line, " \n"))
		w.Write([]byte{'\n'})
	}
}

func writeRequests(w io.Writer, r *Report) {
	if len(r.Requests) == 0 {
		fmt.Fprintln(w, "No requests.")
		return
	}
	table(w, func(tw io.Writer) {
		fmt.Fprint(tw, "REQUEST\tMODEL\tSTARTED (UTC)")
		for _, c := range textColumns {
			fmt.Fprint(tw, "\t", columns[c].label)
		}
		fmt.Fprintln(tw, "\tOUTCOME")
		for i := range r.Requests {
			res := &r.Requests[i]
			started := dash
			if res.BeforeFile != "" {
				started = res.BeforeTime.UTC().Format("2006-01-02 15:04:05.000000")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s", res.RequestID, orDash(res.Model), started)
			for _, c := range textColumns {
				fmt.Fprint(tw, "\t", cell(res, columns[c]))
			}
			fmt.Fprintln(tw, "\t"+outcome(res))
		}
	})
}

// cell is one value of the table: the number when it is exact, "n/a" when
// the source has no such metric, else a dash with the reason. Rejected and
// unpaired requests show a bare dash: the reason is their outcome.
func cell(res *attribution.Result, c column) string {
	v := c.value(res)
	switch {
	case v.Exact:
		return formatValue(c, v.V)
	case v.Reason == attribution.ReasonAbsent:
		return "n/a"
	case res.Outcome == attribution.Rejected || res.Outcome == attribution.Unpaired:
		return dash
	default:
		return dash + " " + string(v.Reason)
	}
}

func formatValue(c column, v float64) string {
	if c.tokens() {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}

func outcome(res *attribution.Result) string {
	if res.Outcome == attribution.Rejected {
		return fmt.Sprintf("rejected (%s)", res.RejectReason)
	}
	return string(res.Outcome)
}

func orDash(s string) string {
	if s == "" {
		return dash
	}
	return s
}

func writeSummary(w io.Writer, r *Report) {
	s := &r.Summary
	fmt.Fprintf(w, "\nRequests: %d%s\n", s.Outcomes.Requests(), outcomesText(s.Outcomes))
	fmt.Fprintf(w, "Files: %d snapshots read, %d not used, %d ignored (not snapshot names)\n", r.SnapshotsRead, len(r.Rejected), r.Ignored)
	if e := r.Excluded; e.Total() > 0 {
		fmt.Fprintf(w, "Not shown (filters): %d (%d outside the time range, %d of other models, %d without an attributed model)\n",
			e.Total(), e.Time, e.Model, e.NoModel)
	}
	for i := range s.Models {
		ms := &s.Models[i]
		if ms.Model == "" {
			fmt.Fprintf(w, "\nNo attributed model: %d requests%s\n", ms.Outcomes.Requests(), outcomesText(ms.Outcomes))
		} else {
			fmt.Fprintf(w, "\nModel %s: %d requests%s\n", ms.Model, ms.Outcomes.Requests(), outcomesText(ms.Outcomes))
		}
		if !hasStats(ms) {
			writePopulation(w, ms)
			continue
		}
		table(w, func(tw io.Writer) {
			fmt.Fprintln(tw, "METRIC\tEXACT\tTOTAL\tMEAN\tP50\tP90\tP99\tMAX\tWITHHELD")
			for c, col := range columns {
				st := &ms.Metrics[c]
				fmt.Fprintf(tw, "%s\t%d", col.key, st.Count)
				if st.Count == 0 {
					fmt.Fprint(tw, strings.Repeat("\t"+dash, 6))
				} else {
					mean := strconv.FormatFloat(st.Mean, 'f', 4, 64)
					if col.tokens() {
						mean = strconv.FormatFloat(st.Mean, 'f', 1, 64)
					}
					fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\t%s\t%s", formatValue(col, st.Total), mean,
						formatValue(col, st.P50), formatValue(col, st.P90), formatValue(col, st.P99), formatValue(col, st.Max))
				}
				fmt.Fprintln(tw, "\t"+withheldText(st.Withheld))
			}
		})
		writePopulation(w, ms)
	}
}

// hasStats reports whether a model's metrics table would say anything.
func hasStats(ms *ModelSummary) bool {
	for _, st := range ms.Metrics {
		if st.Count > 0 || len(st.Withheld) > 0 {
			return true
		}
	}
	return false
}

// outcomesText is " — 3 exact, 1 unpaired" (only the outcomes present).
func outcomesText(o Outcomes) string {
	var parts []string
	for _, p := range []struct {
		n    int
		name string
	}{{o.Exact, "exact"}, {o.Partial, "partial"}, {o.Withheld, "withheld"}, {o.Rejected, "rejected"}, {o.Unpaired, "unpaired"}} {
		if p.n == 0 {
			continue
		}
		s := fmt.Sprintf("%d %s", p.n, p.name)
		if p.name == "rejected" {
			var why []string
			for _, reason := range attribution.RejectReasons {
				if n := o.RejectedBy[reason]; n > 0 {
					why = append(why, fmt.Sprintf("%s %d", reason, n))
				}
			}
			s += " (" + strings.Join(why, ", ") + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + dash + " " + strings.Join(parts, ", ")
}

func withheldText(m map[attribution.Reason]int) string {
	var parts []string
	for _, reason := range attribution.WithheldReasons {
		if n := m[reason]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", reason, n))
		}
	}
	return strings.Join(parts, ", ")
}

// writeIncomplete lists the requests that could not be attributed at all,
// with their files, so that none disappears from a report unnoticed.
func writeIncomplete(w io.Writer, r *Report) {
	var rows []*attribution.Result
	for i := range r.Requests {
		if o := r.Requests[i].Outcome; o == attribution.Rejected || o == attribution.Unpaired {
			rows = append(rows, &r.Requests[i])
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nIncomplete pairs (%d):\n", len(rows))
	table(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "REQUEST\tOUTCOME\tBEFORE\tAFTER")
		for _, res := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.RequestID, outcome(res), orDash(res.BeforeFile), orDash(res.AfterFile))
		}
	})
}

func writeFiles(w io.Writer, r *Report) {
	if len(r.Rejected) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFiles not used (%d):\n", len(r.Rejected))
	table(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "FILE\tREASON\tERROR")
		for _, f := range r.Rejected {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f.File, f.Reason, oneLine(f.Err))
		}
	})
}

// oneLine keeps an error message on its table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// writeAssumptions shows, per server process, what the data said about
// each attribution assumption, with the evidence of each contradiction.
func writeAssumptions(w io.Writer, r *Report) {
	for _, sa := range r.Assumptions {
		fmt.Fprintf(w, "\nAssumptions, server process started at %s:\n", orDash(sa.Epoch))
		table(w, func(tw io.Writer) {
			fmt.Fprintln(tw, "ASSUMPTION\tSTATE\tAGREED\tEVIDENCE")
			for _, st := range sa.Status {
				ev := ""
				if c := st.Contradiction; c != nil {
					ev = oneLine(c.Detail)
					if c.RequestID != "" {
						ev = c.RequestID + ": " + ev
					}
				}
				if st.Note != "" {
					ev = strings.TrimPrefix(ev+"; "+st.Note, "; ")
				}
				if w := st.Windows; w != nil {
					ev = strings.TrimPrefix(fmt.Sprintf("%s; windows vouched for by capture %d, by the flag %d, by nobody (kept out) %d",
						ev, w.Capture, w.Flag, w.Unvouched), "; ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", st.Assumption.Name(), st.State, st.Agreed, ev)
			}
		})
	}
}
