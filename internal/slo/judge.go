package slo

import (
	"fmt"
	"strings"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// Result is the verdict for one request and one objective. The values are
// the label values of llm_request_slo_total (docs/metrics.md).
type Result string

const (
	// Met: every value the objective needs is exact and within its threshold.
	Met Result = "met"
	// Missed: every value the objective needs is exact, and one is over
	// its threshold.
	Missed Result = "missed"
	// Unknown: a value the objective needs was withheld (or the server
	// does not have it). Even when another value is already over its
	// threshold: a request is judged only on exact values, all of them.
	Unknown Result = "unknown"
)

// Results lists the results, for pre-creating series.
var Results = []Result{Met, Missed, Unknown}

// Judgement is one objective's verdict on one request.
type Judgement struct {
	Objective string
	Result    Result
	// Why explains the verdict for people: for missed, the values over
	// their thresholds ("ttft 0.61s > 0.5s"); for unknown, the values
	// withheld and their reasons ("ttft: overlap").
	Why string
}

// Judge returns the verdict of every objective of s that applies to the
// request, in file order. A nil Set judges nothing.
func (s *Set) Judge(r *attribution.Result) []Judgement {
	if s == nil {
		return nil
	}
	var out []Judgement
	for i := range s.Objectives {
		o := &s.Objectives[i]
		if !o.Applies(r.Model) {
			continue
		}
		res, why := o.judge(r)
		out = append(out, Judgement{Objective: o.Name, Result: res, Why: why})
	}
	return out
}

func (o *Objective) judge(r *attribution.Result) (Result, string) {
	var over, withheld []string
	for v := Value(0); v < NumValues; v++ {
		limit := o.Thresholds[v]
		if limit == 0 {
			continue
		}
		x, st := value(r, v)
		switch st {
		case vacuous:
		case known:
			if x > limit.Seconds() {
				over = append(over, fmt.Sprintf("%s %ss > %s", v.Key(), formatSeconds(x), limit))
			}
		default:
			reason := string(st)
			withheld = append(withheld, v.Key()+": "+reason)
		}
	}
	switch {
	case len(withheld) > 0:
		return Unknown, strings.Join(withheld, ", ")
	case len(over) > 0:
		return Missed, strings.Join(over, ", ")
	}
	return Met, ""
}

// status says whether a value can be judged: known, vacuous, or the reason
// it cannot (the attribution's reason; "absent" when the server does not
// have the metric).
type status string

const (
	known   status = "known"
	vacuous status = "vacuous"
)

var metricOf = [NumValues]parser.Metric{Queue: parser.Queue, Prefill: parser.Prefill, Decode: parser.Decode, TTFT: parser.TTFT, E2E: parser.E2E}

// value is the request's value v in seconds, or why it cannot be judged.
// The time per output token of a one-token answer does not exist: vLLM's
// own goodput counts it as within any bound, and so does this (vacuous),
// but only when the decode time and the token count are both exact.
func value(r *attribution.Result, v Value) (float64, status) {
	x := r.TPOT
	if v != TPOT {
		x = r.Values[metricOf[v]]
	} else if g, d := r.Values[parser.GenerationTokens], r.Values[parser.Decode]; !x.Exact && g.Exact && d.Exact && g.V < 2 {
		return 0, vacuous
	}
	if x.Exact {
		return x.V, known
	}
	if x.Reason == attribution.ReasonNone {
		return 0, "withheld"
	}
	return 0, status(x.Reason)
}

func formatSeconds(s float64) string {
	d := time.Duration(s * 1e9)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.3f", s)
	default:
		return fmt.Sprintf("%.4f", s)
	}
}

// Tally counts the verdicts of one objective (per model, in reports).
type Tally struct {
	Met, Missed, Unknown int
}

// Add counts one verdict.
func (t *Tally) Add(r Result) {
	switch r {
	case Met:
		t.Met++
	case Missed:
		t.Missed++
	case Unknown:
		t.Unknown++
	}
}

// Total is the number of requests judged.
func (t Tally) Total() int { return t.Met + t.Missed + t.Unknown }

// Known is the number of requests with every needed value exact.
func (t Tally) Known() int { return t.Met + t.Missed }

// Attainment is the share of the known requests that met the objective;
// ok is false when none is known.
func (t Tally) Attainment() (ratio float64, ok bool) {
	if t.Known() == 0 {
		return 0, false
	}
	return float64(t.Met) / float64(t.Known()), true
}

// MetShare is the share of all judged requests known to have met the
// objective: unknown counts as not met, as the burn-rate alerts count it.
// It is a lower bound of the true attainment.
func (t Tally) MetShare() (ratio float64, ok bool) {
	if t.Total() == 0 {
		return 0, false
	}
	return float64(t.Met) / float64(t.Total()), true
}

// UnknownShare is the share of judged requests whose verdict is unknown.
func (t Tally) UnknownShare() (ratio float64, ok bool) {
	if t.Total() == 0 {
		return 0, false
	}
	return float64(t.Unknown) / float64(t.Total()), true
}
