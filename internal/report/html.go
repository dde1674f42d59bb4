package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/internal/waterfall"
)

//go:embed report.html
var reportHTML string

var htmlReport = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct":          func(v float64) string { return strconv.FormatFloat(100*v, 'f', 2, 64) + "%" },
	"stat":         statText,
	"withheldText": withheldText,
	"share":        share,
	"utc":          func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") },
}).Parse(reportHTML))

// placeStyle places an element from start, length long, as percentages
// of span. Only numbers formatted here reach the style attribute.
func placeStyle(span, start, length float64) template.CSS {
	return template.CSS(fmt.Sprintf("left:%.4f%%;width:%.4f%%", waterfall.Percent(start, span), waterfall.Percent(length, span)))
}

// statText is a summary statistic as the text report writes it.
func statText(c column, st Stats, v float64) string {
	if st.Count == 0 {
		return dash
	}
	return formatValue(c, v)
}

// Key names the column in templates.
func (c column) Key() string { return c.key }

// htmlBins is the number of bars of each family's histogram.
const htmlBins = 24

type htmlBin struct {
	Lo, Hi float64
	Count  int
	Height float64 // percent of the tallest bin
}

type htmlFamily struct {
	Key    string
	Tokens bool
	Count  int
	// Log: the bins are of equal ratio from Min (the smallest positive
	// value) to Max; else of equal width from 0 to Max.
	Log      bool
	Min, Max float64
	Bins     []htmlBin
}

// htmlWaterfallRow is one request of the waterfall: its bar placed on the
// run's time axis.
type htmlWaterfallRow struct {
	Res      *attribution.Result
	Bar      waterfall.Bar
	Marks    []htmlMark
	Withheld string
	SLO      []slo.Judgement
}

// htmlMark is one element of a waterfall row: the e2e outline, a phase,
// or the TTFT mark.
type htmlMark struct {
	Class   string
	Style   template.CSS
	Seconds float64
}

type htmlModel struct {
	*ModelSummary
	Columns []column
}

type htmlData struct {
	R          *Report
	Models     []htmlModel
	Families   []htmlFamily
	Rows       []htmlWaterfallRow
	Span       float64 // seconds covered by the waterfall
	Start      time.Time
	NoStart    int // requests left out of the waterfall: no start time
	Withheld   []htmlWithheld
	Columns    []column
	Objectives bool
}

type htmlWithheld struct {
	Key    string
	Counts map[attribution.Reason]int
	Text   string
}

// WriteHTML writes the report as one self-contained HTML page (no script,
// no external asset): the summary per model, a histogram per family, a
// waterfall of every request by start time, and what was withheld and why.
// Everything taken from the files is escaped by html/template.
func WriteHTML(w io.Writer, r *Report) error {
	d := htmlData{R: r, Columns: columns[:], Objectives: r.Objectives != nil}
	for i := range r.Summary.Models {
		d.Models = append(d.Models, htmlModel{&r.Summary.Models[i], columns[:]})
	}
	for _, c := range columns {
		d.Families = append(d.Families, histogram(c, r.Requests))
		counts := map[attribution.Reason]int{}
		for i := range r.Summary.Models {
			for reason, n := range r.Summary.Models[i].Metrics[columnIndex(c.key)].Withheld {
				counts[reason] += n
			}
		}
		if len(counts) > 0 {
			d.Withheld = append(d.Withheld, htmlWithheld{Key: c.key, Counts: counts, Text: withheldText(counts)})
		}
	}
	var end time.Time
	for i := range r.Requests {
		res := &r.Requests[i]
		if res.BeforeFile == "" {
			d.NoStart++
			continue
		}
		if d.Start.IsZero() || res.BeforeTime.Before(d.Start) {
			d.Start = res.BeforeTime
		}
		bar := waterfall.Layout(res)
		if e := res.BeforeTime.Add(time.Duration(bar.Extent() * 1e9)); e.After(end) {
			end = e
		}
		if res.AfterTime.After(end) {
			end = res.AfterTime
		}
		row := htmlWaterfallRow{Res: res, Bar: bar, SLO: r.Objectives.Judge(res)}
		var withheld []string
		for _, c := range columns {
			if v := c.value(res); !v.Exact && v.Reason != attribution.ReasonAbsent {
				withheld = append(withheld, c.key+": "+string(v.Reason))
			}
		}
		row.Withheld = strings.Join(withheld, ", ")
		d.Rows = append(d.Rows, row)
	}
	if len(d.Rows) > 0 {
		d.Span = max(end.Sub(d.Start).Seconds(), 1e-3)
	}
	for i := range d.Rows {
		row := &d.Rows[i]
		at := row.Res.BeforeTime.Sub(d.Start).Seconds()
		mark := func(class string, start, length, seconds float64) {
			row.Marks = append(row.Marks, htmlMark{Class: class, Style: placeStyle(d.Span, at+start, length), Seconds: seconds})
		}
		if row.Bar.HasE2E {
			mark("e2e", 0, row.Bar.E2E, row.Bar.E2E)
		}
		for _, s := range row.Bar.Segments {
			mark("seg "+s.Phase, s.Start, s.Len, s.Len)
		}
		if row.Bar.HasTTFT {
			mark("ttft", row.Bar.TTFT, 0, row.Bar.TTFT)
		}
	}
	return htmlReport.Execute(w, d)
}

func columnIndex(key string) int {
	for i, c := range columns {
		if c.key == key {
			return i
		}
	}
	panic("report: no column " + key)
}

// histogram bins the exact values of one column: equal bins from 0 to the
// largest value, or, when the values span more than a factor of 20 (a
// latency's long tail), bins of equal ratio from the smallest to the
// largest, so that the bulk is not one bar.
func histogram(c column, reqs []attribution.Result) htmlFamily {
	f := htmlFamily{Key: c.key, Tokens: c.tokens()}
	var vals []float64
	lo := math.Inf(1)
	for i := range reqs {
		if v := c.value(&reqs[i]); v.Exact && !math.IsNaN(v.V) && !math.IsInf(v.V, 0) {
			vals = append(vals, v.V)
			f.Max = max(f.Max, v.V)
			if v.V > 0 {
				lo = min(lo, v.V)
			}
		}
	}
	f.Count = len(vals)
	if f.Count == 0 {
		return f
	}
	edge := func(i int) float64 { return float64(i) * max(f.Max, 1e-9) / htmlBins }
	bin := func(v float64) int { return int(v / max(f.Max, 1e-9) * htmlBins) }
	if !math.IsInf(lo, 1) && f.Max/lo > 20 {
		f.Log, f.Min = true, lo
		ratio := math.Log(f.Max / lo)
		edge = func(i int) float64 { return lo * math.Exp(float64(i)*ratio/htmlBins) }
		bin = func(v float64) int {
			if v <= lo {
				return 0
			}
			return int(math.Log(v/lo) / ratio * htmlBins)
		}
	}
	f.Bins = make([]htmlBin, htmlBins)
	for i := range f.Bins {
		f.Bins[i].Lo, f.Bins[i].Hi = edge(i), edge(i+1)
	}
	tallest := 0
	for _, v := range vals {
		i := min(max(bin(v), 0), htmlBins-1)
		f.Bins[i].Count++
		tallest = max(tallest, f.Bins[i].Count)
	}
	for i := range f.Bins {
		f.Bins[i].Height = 100 * float64(f.Bins[i].Count) / float64(tallest)
	}
	return f
}

// share is one of an attainment's ratios as a percentage.
func share(a Attainment, which string) string {
	switch which {
	case "attainment":
		return ratio(a.Attainment())
	case "met":
		return ratio(a.MetShare())
	}
	return ratio(a.UnknownShare())
}
