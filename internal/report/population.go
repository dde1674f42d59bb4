package report

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/parser"
)

// BiasThreshold is when a report warns that the exact sample is biased:
// its mean differs from the mean of all requests (the server's own
// histogram) by more than this fraction of the latter. Requests that can
// be attributed exactly are those that ran in quieter moments, so under
// load their latencies run low; 10% is well beyond the sampling noise of
// a few hundred exact values and well below the bias seen at 32 requests
// in flight (issue #15: the exact TTFT p90 12% low).
const BiasThreshold = 0.10

// PopulationStats is the server's own histogram of one family over the
// report's snapshots: every request the server observed, exact or not
// (package population).
type PopulationStats struct {
	Count       uint64
	Total, Mean float64
	// P50, P90 and P99 are the server's buckets in which the nearest-rank
	// percentile falls: the histogram cannot say where inside.
	P50, P90, P99 BucketRange
}

// BucketRange is one bucket of the server's histogram: values above
// Above and at most AtMost (+Inf for the last bucket). The first bucket
// starts at 0: the families are durations and token counts.
type BucketRange struct {
	Above, AtMost float64
}

// bucketOf returns the server bucket holding the nearest-rank p-th
// percentile.
func bucketOf(h *population.Hist, p int) BucketRange {
	lo, hi := h.PercentileBucket(p)
	return BucketRange{Above: lo, AtMost: hi}
}

func populationStats(h *population.Hist) *PopulationStats {
	if h == nil || h.Count == 0 {
		return nil
	}
	return &PopulationStats{Count: h.Count, Total: h.Sum, Mean: h.Sum / float64(h.Count),
		P50: bucketOf(h, 50), P90: bucketOf(h, 90), P99: bucketOf(h, 99)}
}

// Coverage is the share of the population's observations of column c
// that were published exact; ok is false without a population.
func (ms *ModelSummary) Coverage(c int) (float64, bool) {
	p := ms.Population[c]
	if p == nil {
		return 0, false
	}
	return float64(ms.Metrics[c].Count) / float64(p.Count), true
}

// Bias is the exact sample's mean over the population's mean for column
// c; ok is false without both.
func (ms *ModelSummary) Bias(c int) (float64, bool) {
	p := ms.Population[c]
	if p == nil || ms.Metrics[c].Count == 0 || p.Mean == 0 {
		return 0, false
	}
	return ms.Metrics[c].Mean / p.Mean, true
}

// BiasWarning reports whether the exact sample's mean of column c differs
// from the population's by more than BiasThreshold.
func (ms *ModelSummary) BiasWarning(c int) bool {
	b, ok := ms.Bias(c)
	return ok && math.Abs(b-1) > BiasThreshold
}

// populationIn feeds the snapshots a report's time filter keeps to the
// population: --since and --until select snapshots by the time in their
// names, as they select requests by their before file's.
type populationIn struct {
	pop          *population.Population
	since, until time.Time
}

// ObserveSnapshots ignores gone files: a report reads the directory once.
func (p populationIn) ObserveSnapshots(seen []ingest.SeenSnapshot, _ []string) {
	for _, s := range seen {
		if (!p.since.IsZero() && s.Time.Before(p.since)) || (!p.until.IsZero() && !s.Time.Before(p.until)) {
			continue
		}
		p.pop.Observe(s.Time, s.Snapshot)
	}
}

// addPopulation attaches the population's histograms to the summary's
// models; a model the population has and no request was attributed to
// gets a summary of its own. --model keeps that model's population only.
func addPopulation(s *Summary, hists map[population.HistKey]population.Hist, f Filter) {
	byModel := map[string]*[parser.NumMetrics]*population.Hist{}
	for k, h := range hists {
		if f.Model != "" && k.Model != f.Model {
			continue
		}
		if byModel[k.Model] == nil {
			byModel[k.Model] = &[parser.NumMetrics]*population.Hist{}
		}
		byModel[k.Model][k.Metric] = &h
	}
	for i := range s.Models {
		ms := &s.Models[i]
		if hs := byModel[ms.Model]; hs != nil && ms.Model != "" {
			for m, h := range hs {
				ms.Population[m] = populationStats(h)
			}
			delete(byModel, ms.Model)
		}
	}
	for model, hs := range byModel {
		ms := ModelSummary{Model: model}
		for m, h := range hs {
			ms.Population[m] = populationStats(h)
		}
		s.Models = append(s.Models, ms)
	}
	sortModels(s.Models)
}

// populationJSON is what the JSON summary says of column c's population
// beside its exact statistics (package documentation).
func populationJSON(ms *ModelSummary, c int) object {
	p := ms.Population[c]
	if p == nil {
		return object{{"population", nil}, {"coverage", nil}, {"bias", nil}, {"bias_warning", false}}
	}
	bucket := func(r BucketRange) object {
		return object{{"above", r.Above}, {"at_most", r.AtMost}} // +Inf is written as null
	}
	po := object{{"count", p.Count}, {"total", p.Total}, {"mean", p.Mean},
		{"p50", bucket(p.P50)}, {"p90", bucket(p.P90)}, {"p99", bucket(p.P99)}}
	o := object{{"population", po}}
	cov, _ := ms.Coverage(c)
	o = append(o, member{"coverage", cov})
	if b, ok := ms.Bias(c); ok {
		o = append(o, member{"bias", b})
	} else {
		o = append(o, member{"bias", nil})
	}
	return append(o, member{"bias_warning", ms.BiasWarning(c)})
}

// writePopulation writes, after a model's exact statistics, the server's
// own histogram of every family beside them: how many requests it
// observed, the share published exact, both means and their ratio, and
// the server buckets its percentiles fall in. Then a warning per family
// whose exact mean is off by more than BiasThreshold.
func writePopulation(w io.Writer, ms *ModelSummary) {
	has := false
	for _, p := range ms.Population {
		has = has || p != nil
	}
	if !has {
		return
	}
	fmt.Fprintln(w, "All requests, from the server's own histograms (percentiles: the server bucket they fall in):")
	var warnings []string
	table(w, func(tw io.Writer) {
		fmt.Fprintln(tw, "METRIC\tALL\tEXACT\tCOVERAGE\tMEAN ALL\tMEAN EXACT\tBIAS\tP50 IN\tP90 IN\tP99 IN")
		for c, col := range columns {
			p := ms.Population[c]
			if p == nil {
				continue
			}
			cov, _ := ms.Coverage(c)
			meanExact, bias := dash, dash
			if b, ok := ms.Bias(c); ok {
				meanExact = formatMean(col, ms.Metrics[c].Mean)
				bias = strconv.FormatFloat(b, 'f', 2, 64)
				if ms.BiasWarning(c) {
					bias += " !"
					warnings = append(warnings, fmt.Sprintf("Warning: %s: the exact values' mean is %+.0f%% off the mean of all requests (threshold %.0f%%): the exact sample is biased; use the population for percentiles.",
						col.key, (b-1)*100, BiasThreshold*100))
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f%%\t%s\t%s\t%s\t%s\t%s\t%s\n", col.key, p.Count, ms.Metrics[c].Count, cov*100,
				formatMean(col, p.Mean), meanExact, bias, bucketText(p.P50), bucketText(p.P90), bucketText(p.P99))
		}
	})
	for _, line := range warnings {
		fmt.Fprintln(w, line)
	}
}

func formatMean(col column, v float64) string {
	if col.tokens() {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}

// bucketText is "(0.25, 0.5]".
func bucketText(r BucketRange) string {
	g := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	if math.IsInf(r.AtMost, 1) {
		return "(" + g(r.Above) + ", +Inf)"
	}
	return "(" + g(r.Above) + ", " + g(r.AtMost) + "]"
}
