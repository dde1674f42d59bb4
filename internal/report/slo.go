package report

import (
	"fmt"
	"io"
	"strconv"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/slo"
)

// Attainment is one objective's verdicts on one model's requests.
type Attainment struct {
	Objective string
	Target    float64
	// Model is the model_name; "" for the requests attributed to no model
	// (judged only by objectives that apply to every model, and always
	// unknown: they have no exact value).
	Model string
	slo.Tally
}

// sloSummary judges every request against the objectives and fills
// Report.SLO: per model (in the summary's order), then per objective (in
// file order).
func (r *Report) sloSummary() {
	if r.Objectives == nil {
		return
	}
	type key struct{ model, objective string }
	tallies := map[key]*slo.Tally{}
	for i := range r.Requests {
		for _, j := range r.Objectives.Judge(&r.Requests[i]) {
			k := key{r.Requests[i].Model, j.Objective}
			if tallies[k] == nil {
				tallies[k] = &slo.Tally{}
			}
			tallies[k].Add(j.Result)
		}
	}
	for _, ms := range r.Summary.Models {
		for _, o := range r.Objectives.Objectives {
			if t := tallies[key{ms.Model, o.Name}]; t != nil {
				r.SLO = append(r.SLO, Attainment{Objective: o.Name, Target: o.Target, Model: ms.Model, Tally: *t})
			}
		}
	}
}

// ratio formats an optional ratio as a percentage.
func ratio(v float64, ok bool) string {
	if !ok {
		return dash
	}
	return strconv.FormatFloat(100*v, 'f', 2, 64) + "%"
}

// writeSLO is the text report's attainment table.
func writeSLO(w io.Writer, r *Report) {
	if r.Objectives == nil {
		return
	}
	fmt.Fprintf(w, "\nSLO attainment (%d objectives; attainment is over the requests whose needed values are exact; unknown: a needed value withheld, never counted as met):\n", len(r.Objectives.Objectives))
	if len(r.SLO) == 0 {
		fmt.Fprintln(w, "No request judged.")
		return
	}
	table(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "OBJECTIVE\tMODEL\tTARGET\tJUDGED\tMET\tMISSED\tUNKNOWN\tATTAINMENT\tMET OF ALL\tUNKNOWN SHARE")
		for _, a := range r.SLO {
			att, ok := a.Attainment()
			all, allOK := a.MetShare()
			unk, unkOK := a.UnknownShare()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", a.Objective, orDash(a.Model),
				ratio(a.Target, true), a.Total(), a.Met, a.Missed, a.Unknown, ratio(att, ok), ratio(all, allOK), ratio(unk, unkOK))
		}
	})
}

// sloJSON is the summary's "slo" member.
func sloJSON(r *Report) []object {
	out := make([]object, len(r.SLO))
	for i, a := range r.SLO {
		att, ok := a.Attainment()
		unk, unkOK := a.UnknownShare()
		o := object{{"slo", a.Objective}, {"model_name", nullString(a.Model)}, {"target", a.Target},
			{"judged", a.Total()}, {"met", a.Met}, {"missed", a.Missed}, {"unknown", a.Unknown},
			{"attainment", nil}, {"unknown_share", nil}}
		if ok {
			o[7].val = att
		}
		if unkOK {
			o[8].val = unk
		}
		out[i] = o
	}
	return out
}

// sloCSVHeader names the CSV's verdict columns: slo:NAME per objective.
func sloCSVHeader(r *Report) []string {
	var h []string
	for _, n := range r.Objectives.Names() {
		h = append(h, "slo:"+n)
	}
	return h
}

// appendSLOCSV appends one request's verdicts, in objective order.
func appendSLOCSV(row []string, r *Report, res *attribution.Result) []string {
	if r.Objectives == nil {
		return row
	}
	js := r.Objectives.Judge(res)
	for _, o := range r.Objectives.Objectives {
		cell := ""
		for _, j := range js {
			if j.Objective == o.Name {
				cell = string(j.Result)
			}
		}
		row = append(row, cell)
	}
	return row
}
