package recent

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/internal/waterfall"
	"github.com/delta-exporter/delta-exporter/parser"
)

// value is one per-request value of a row.
type value struct {
	Key   string // the report's JSON key: ttft_seconds, ...
	Label string // column heading
	V     float64
	Exact bool
	// Reason is why it is not shown (withheld reason, "absent", or the
	// request's reject reason).
	Reason string
	tokens bool
}

// Text is the cell as shown: the number (0.1 ms below 10 s), or a dash.
func (v value) Text() string {
	switch {
	case !v.Exact:
		return "—"
	case v.tokens:
		return strconv.FormatFloat(v.V, 'f', 0, 64)
	case v.V >= 100:
		return strconv.FormatFloat(v.V, 'f', 1, 64)
	case v.V >= 10:
		return strconv.FormatFloat(v.V, 'f', 3, 64)
	}
	// Six characters at most below 100 s, so the column stays narrow.
	return strconv.FormatFloat(v.V, 'f', 4, 64)
}

type valueColumn struct {
	key, label string
	metric     parser.Metric
	tpot       bool
}

// valueColumns are the values of a row, in the order a request goes
// through them.
var valueColumns = []valueColumn{
	{"queue_seconds", "queue", parser.Queue, false},
	{"prefill_seconds", "prefill", parser.Prefill, false},
	{"decode_seconds", "decode", parser.Decode, false},
	{"ttft_seconds", "TTFT", parser.TTFT, false},
	{"e2e_seconds", "e2e", parser.E2E, false},
	{"prompt_tokens", "prompt", parser.PromptTokens, false},
	{"generation_tokens", "gen", parser.GenerationTokens, false},
	{"time_per_output_token_seconds", "TPOT", 0, true},
}

// row is one request as the page and the JSON show it.
type row struct {
	ID           string
	Model        string
	Outcome      string
	RejectReason string
	Started      time.Time // the before file's time; zero without one
	Decided      time.Time
	Values       []value
	SLO          []slo.Judgement
	Bar          waterfall.Bar
}

// Withheld lists the values withheld, with their reasons. Values the
// server does not have (absent) are not withheld; a rejected or unpaired
// request lists none: its outcome is the reason for all of them.
func (r *row) Withheld() []value {
	if r.Outcome == string(attribution.Rejected) || r.Outcome == string(attribution.Unpaired) {
		return nil
	}
	var out []value
	for _, v := range r.Values {
		if !v.Exact && v.Reason != string(attribution.ReasonAbsent) {
			out = append(out, v)
		}
	}
	return out
}

func newRow(e *Entry) row {
	res := &e.Result
	r := row{ID: res.RequestID, Model: res.Model, Outcome: string(res.Outcome), RejectReason: string(res.RejectReason),
		Decided: e.Decided, SLO: e.SLO, Bar: waterfall.Layout(res)}
	if res.BeforeFile != "" {
		r.Started = res.BeforeTime
	}
	for _, c := range valueColumns {
		v := res.TPOT
		if !c.tpot {
			v = res.Values[c.metric]
		}
		r.Values = append(r.Values, value{Key: c.key, Label: c.label, V: v.V, Exact: v.Exact, Reason: string(v.Reason),
			tokens: !c.tpot && c.metric.IsTokens()})
	}
	return r
}

// query is what the page was asked for: filters and order.
type query struct {
	Model   string // "" all
	Outcome string // "" all
	Sort    string // a sort key
	Desc    bool
	Refresh int // seconds; 0 off
}

const defaultRefresh = 5

// sortKeys are the columns a page can be sorted by.
var sortKeys = func() []string {
	keys := []string{"decided", "started", "id", "model", "outcome"}
	for _, c := range valueColumns {
		keys = append(keys, c.key)
	}
	return append(keys, "slo")
}()

func parseQuery(v url.Values) query {
	q := query{Model: v.Get("model"), Outcome: v.Get("outcome"), Sort: v.Get("sort"), Desc: v.Get("order") != "asc", Refresh: defaultRefresh}
	if !slices.Contains(sortKeys, q.Sort) {
		q.Sort, q.Desc = "decided", true
	}
	if s := v.Get("refresh"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 3600 {
			q.Refresh = n
		}
	}
	return q
}

// values encodes q, with sort and order replaced when given.
func (q query) values() url.Values {
	v := url.Values{}
	if q.Model != "" {
		v.Set("model", q.Model)
	}
	if q.Outcome != "" {
		v.Set("outcome", q.Outcome)
	}
	v.Set("sort", q.Sort)
	if q.Desc {
		v.Set("order", "desc")
	} else {
		v.Set("order", "asc")
	}
	v.Set("refresh", strconv.Itoa(q.Refresh))
	return v
}

// rows filters and sorts the entries as q asks. A value that is not shown
// sorts after every shown value, whatever the order.
func (q query) rows(entries []Entry) []row {
	rows := make([]row, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		if q.Model != "" && e.Result.Model != q.Model {
			continue
		}
		if q.Outcome != "" && string(e.Result.Outcome) != q.Outcome {
			continue
		}
		rows = append(rows, newRow(e))
	}
	col := slices.IndexFunc(valueColumns, func(c valueColumn) bool { return c.key == q.Sort })
	slices.SortStableFunc(rows, func(a, b row) int {
		if col >= 0 {
			va, vb := a.Values[col], b.Values[col]
			if va.Exact != vb.Exact {
				if va.Exact {
					return -1
				}
				return 1
			}
			return q.dir(cmp.Compare(va.V, vb.V))
		}
		var c int
		switch q.Sort {
		case "started":
			c = a.Started.Compare(b.Started)
		case "id":
			c = cmp.Compare(a.ID, b.ID)
		case "model":
			c = cmp.Compare(a.Model, b.Model)
		case "outcome":
			c = cmp.Compare(a.Outcome, b.Outcome)
		case "slo":
			c = cmp.Compare(sloRank(a.SLO), sloRank(b.SLO))
		default:
			c = a.Decided.Compare(b.Decided)
		}
		return q.dir(c)
	})
	return rows
}

func (q query) dir(c int) int {
	if q.Desc {
		return -c
	}
	return c
}

// sloRank orders requests by their worst verdict: missed, then unknown,
// then met, then not judged.
func sloRank(js []slo.Judgement) int {
	rank := 0
	for _, j := range js {
		switch j.Result {
		case slo.Missed:
			rank = max(rank, 3)
		case slo.Unknown:
			rank = max(rank, 2)
		case slo.Met:
			rank = max(rank, 1)
		}
	}
	return rank
}

// models are the distinct model names of the entries, sorted, for the
// filter's choices.
func models(entries []Entry) []string {
	var out []string
	for i := range entries {
		if m := entries[i].Result.Model; m != "" {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// outcomes are the outcomes a filter can choose.
func outcomes() []string {
	out := make([]string, len(attribution.Outcomes))
	for i, o := range attribution.Outcomes {
		out[i] = string(o)
	}
	return out
}

// withheldText is "ttft_seconds: overlap, e2e_seconds: missing".
func withheldText(vs []value) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Label + ": " + v.Reason
	}
	return strings.Join(parts, ", ")
}
