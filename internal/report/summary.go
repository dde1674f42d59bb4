package report

import (
	"cmp"
	"slices"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// column is one per-request value of a report.
type column struct {
	// key names the value in JSON, CSV and the summary. It is the
	// exporter's family suffix (parser.Metric.Name), except for TTFT,
	// which the JSON contract of the report names ttft_seconds.
	key string
	// label heads the column in the text table.
	label  string
	metric parser.Metric // meaningless when tpot
	tpot   bool
}

// numColumns is the number of per-request values: the metrics, then TPOT.
const numColumns = int(parser.NumMetrics) + 1

// columns are the per-request values in JSON and CSV order.
var columns = func() [numColumns]column {
	var cs [numColumns]column
	labels := [parser.NumMetrics]string{
		parser.TTFT: "TTFT", parser.Queue: "QUEUE", parser.Prefill: "PREFILL", parser.Decode: "DECODE",
		parser.Inference: "INFER", parser.E2E: "E2E", parser.PromptTokens: "PROMPT", parser.GenerationTokens: "GEN",
	}
	for m := parser.Metric(0); m < parser.NumMetrics; m++ {
		cs[m] = column{key: m.Name(), label: labels[m], metric: m}
	}
	cs[parser.TTFT].key = "ttft_seconds"
	cs[parser.NumMetrics] = column{key: "time_per_output_token_seconds", label: "TPOT", tpot: true}
	return cs
}()

func (c column) value(r *attribution.Result) attribution.Value {
	if c.tpot {
		return r.TPOT
	}
	return r.Values[c.metric]
}

// tokens reports whether the column counts tokens (integers).
func (c column) tokens() bool { return !c.tpot && c.metric.IsTokens() }

// Summary aggregates the requests of a report.
type Summary struct {
	Outcomes Outcomes
	// Models has one entry per attributed model_name, by name, then one
	// with Model "" for the requests attributed to no model (unpaired,
	// rejected, withheld entirely) when there are any.
	Models []ModelSummary
}

// Outcomes counts requests by outcome.
type Outcomes struct {
	Exact, Partial, Withheld, Rejected, Unpaired int
	// RejectedBy splits Rejected by reason (restart, counter_reset,
	// duplicate, bad_snapshot).
	RejectedBy map[attribution.Reason]int
}

// Requests is the number of requests counted.
func (o Outcomes) Requests() int { return o.Exact + o.Partial + o.Withheld + o.Rejected + o.Unpaired }

func (o *Outcomes) add(r *attribution.Result) {
	switch r.Outcome {
	case attribution.Exact:
		o.Exact++
	case attribution.Partial:
		o.Partial++
	case attribution.Withheld:
		o.Withheld++
	case attribution.Rejected:
		o.Rejected++
		if o.RejectedBy == nil {
			o.RejectedBy = map[attribution.Reason]int{}
		}
		o.RejectedBy[r.RejectReason]++
	case attribution.Unpaired:
		o.Unpaired++
	}
}

// ModelSummary aggregates the requests of one model.
type ModelSummary struct {
	Model    string
	Outcomes Outcomes
	// Metrics are in column order (the metrics, then TPOT).
	Metrics [numColumns]Stats
	// Population is, in the same order, the server's own histogram over
	// every request (nil: none; always nil for TPOT, which the server
	// does not observe per request).
	Population [numColumns]*PopulationStats
}

// Stats describes the exact values of one metric. Withheld values never
// enter them: a statistic of exact values is exact.
type Stats struct {
	// Count is the number of exact values; the other fields are 0 when
	// it is 0.
	Count int
	// Percentiles are nearest-rank: P50 is the smallest value with at
	// least half of the values at or below it, so every statistic is a
	// value some request really had (or their total or mean).
	Total, Mean, P50, P90, P99, Max float64
	// Withheld counts the values not published for requests that were
	// attributed (outcome exact, partial or withheld), by reason:
	// missing, overlap, inconsistent. Values the source does not have
	// (absent) are not counted, nor are rejected and unpaired requests,
	// which Outcomes counts.
	Withheld map[attribution.Reason]int
}

func summarize(reqs []attribution.Result) Summary {
	var s Summary
	byModel := map[string][]*attribution.Result{}
	for i := range reqs {
		r := &reqs[i]
		s.Outcomes.add(r)
		byModel[r.Model] = append(byModel[r.Model], r)
	}
	models := make([]string, 0, len(byModel))
	for m := range byModel {
		models = append(models, m)
	}
	for _, m := range models {
		s.Models = append(s.Models, summarizeModel(m, byModel[m]))
	}
	sortModels(s.Models)
	return s
}

// sortModels orders named models by name, the unattributed group last.
func sortModels(ms []ModelSummary) {
	slices.SortFunc(ms, func(x, y ModelSummary) int {
		a, b := x.Model, y.Model
		if (a == "") != (b == "") {
			if a == "" {
				return 1
			}
			return -1
		}
		return cmp.Compare(a, b)
	})
}

func summarizeModel(model string, reqs []*attribution.Result) ModelSummary {
	ms := ModelSummary{Model: model}
	vals := make([]float64, 0, len(reqs))
	for _, r := range reqs {
		ms.Outcomes.add(r)
	}
	for c, col := range columns {
		st := &ms.Metrics[c]
		vals = vals[:0]
		for _, r := range reqs {
			v := col.value(r)
			switch {
			case v.Exact:
				vals = append(vals, v.V)
			case v.Reason == attribution.ReasonAbsent:
			case r.Outcome == attribution.Exact || r.Outcome == attribution.Partial || r.Outcome == attribution.Withheld:
				if st.Withheld == nil {
					st.Withheld = map[attribution.Reason]int{}
				}
				st.Withheld[v.Reason]++
			}
		}
		st.fill(vals)
	}
	return ms
}

// fill computes the statistics of vals, which it sorts.
func (st *Stats) fill(vals []float64) {
	st.Count = len(vals)
	if st.Count == 0 {
		return
	}
	slices.Sort(vals)
	for _, v := range vals {
		st.Total += v
	}
	st.Mean = st.Total / float64(st.Count)
	st.P50, st.P90, st.P99 = nearestRank(vals, 50), nearestRank(vals, 90), nearestRank(vals, 99)
	st.Max = vals[len(vals)-1]
}

// nearestRank is the p-th percentile of sorted (non-empty) values: the
// value of rank ceil(p/100 * n), computed in integers so that 90% of 10
// is rank 9, not 10 by a rounding error.
func nearestRank(sorted []float64, p int) float64 {
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}
