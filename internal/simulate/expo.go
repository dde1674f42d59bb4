package simulate

import (
	"sort"
	"strings"
)

// This file holds the exposition machinery: metric families and series
// with their text lines rendered once at creation, so that a scrape only
// formats numbers. A 34 KB scrape is rendered thousands of times per
// simulation run.

type kind uint8

const (
	counterKind kind = iota
	gaugeKind
	histogramKind
	summaryKind
)

func (k kind) String() string {
	switch k {
	case counterKind:
		return "counter"
	case gaugeKind:
		return "gauge"
	case histogramKind:
		return "histogram"
	}
	return "summary"
}

type label struct{ name, value string }

// family is one metric family in output order.
type family struct {
	kind      kind
	bounds    []float64 // histograms only
	header    string    // "# HELP ...\n# TYPE ...\n"
	createdHd string    // header of the "<base>_created" gauge family; "" for none
	name      string    // exposed name (counters end in _total)
	base      string    // name without _total: what _created is appended to
	series    []*series
}

// series is one label set of a family.
type series struct {
	line        string   // counters and gauges: `name{labels} `
	bucketLines []string // histograms: one per bound, then +Inf
	countLine   string
	sumLine     string
	createdLine string

	value   float64
	bounds  []float64 // histograms: the family's bounds
	counts  []uint64  // per bucket, not cumulative; last is +Inf
	count   uint64
	sum     float64
	created float64
}

// newFamily builds a family. withCreated asks for the _created gauge family
// that prometheus_client prints after counters, histograms and summaries in
// single-process mode.
func newFamily(name, help string, k kind, bounds []float64, withCreated bool) *family {
	f := &family{kind: k, bounds: bounds, name: name, base: strings.TrimSuffix(name, "_total")}
	h := escapeHelp(help)
	f.header = "# HELP " + name + " " + h + "\n# TYPE " + name + " " + k.String() + "\n"
	if withCreated && k != gaugeKind {
		f.createdHd = "# HELP " + f.base + "_created " + h + "\n# TYPE " + f.base + "_created gauge\n"
	}
	return f
}

// add appends a series with the given labels (any order) and returns it.
func (f *family) add(labels []label, created float64) *series {
	s := &series{created: created}
	switch f.kind {
	case counterKind, gaugeKind:
		s.line = f.name + renderLabels(labels, nil) + " "
	case histogramKind:
		s.bounds = f.bounds
		s.bucketLines = make([]string, len(f.bounds)+1)
		for i, b := range f.bounds {
			s.bucketLines[i] = f.name + "_bucket" + renderLabels(labels, &label{"le", goFloat(b)}) + " "
		}
		s.bucketLines[len(f.bounds)] = f.name + "_bucket" + renderLabels(labels, &label{"le", "+Inf"}) + " "
		s.counts = make([]uint64, len(f.bounds)+1)
		s.countLine = f.name + "_count" + renderLabels(labels, nil) + " "
		s.sumLine = f.name + "_sum" + renderLabels(labels, nil) + " "
	case summaryKind:
		s.countLine = f.name + "_count" + renderLabels(labels, nil) + " "
		s.sumLine = f.name + "_sum" + renderLabels(labels, nil) + " "
	}
	if f.createdHd != "" {
		s.createdLine = f.base + "_created" + renderLabels(labels, nil) + " "
	}
	f.series = append(f.series, s)
	return s
}

// observe records one observation, choosing the bucket as
// prometheus_client does (bisect_left: the first bound >= v).
func (s *series) observe(v float64) { s.observeN(v, 1, v) }

// observeN records n observations of value v whose total is sum.
func (s *series) observeN(v float64, n uint64, sum float64) {
	i := searchBound(s.bounds, v)
	s.counts[i] += n
	s.count += n
	s.sum += sum
}

func searchBound(bounds []float64, v float64) int { return sort.SearchFloat64s(bounds, v) }

// shown reports whether a lazy server shows the series: a histogram or
// counter once it has been touched (gauges always).
func (s *series) shown(k kind, lazy bool) bool {
	switch {
	case !lazy:
		return true
	case k == histogramKind || k == summaryKind:
		return s.count > 0
	case k == counterKind:
		return s.value != 0
	}
	return true
}

// appendText renders the family. multiproc selects prometheus_client's
// multiprocess collector layout: a histogram's _sum lines of all label sets
// come first, then each label set's buckets and _count. lazy leaves out
// the series never touched, and the family when none is left.
func (f *family) appendText(b []byte, multiproc, lazy bool) []byte {
	if lazy {
		var any bool
		for _, s := range f.series {
			if s.shown(f.kind, true) {
				any = true
				break
			}
		}
		if !any {
			return b
		}
	}
	b = append(b, f.header...)
	switch f.kind {
	case counterKind, gaugeKind:
		for _, s := range f.series {
			if !s.shown(f.kind, lazy) {
				continue
			}
			b = append(b, s.line...)
			b = appendGoFloat(b, s.value)
			b = append(b, '\n')
		}
	case histogramKind:
		if multiproc {
			for _, s := range f.series {
				if s.shown(f.kind, lazy) {
					b = appendSum(b, s)
				}
			}
		}
		for _, s := range f.series {
			if !s.shown(f.kind, lazy) {
				continue
			}
			var acc uint64
			for i, c := range s.counts {
				acc += c
				b = append(b, s.bucketLines[i]...)
				b = appendCount(b, acc)
				b = append(b, '\n')
			}
			b = append(b, s.countLine...)
			b = appendCount(b, acc)
			b = append(b, '\n')
			if !multiproc {
				b = appendSum(b, s)
			}
		}
	case summaryKind:
		for _, s := range f.series {
			if !s.shown(f.kind, lazy) {
				continue
			}
			b = append(b, s.countLine...)
			b = appendCount(b, s.count)
			b = append(b, '\n')
			b = appendSum(b, s)
		}
	}
	if f.createdHd != "" && len(f.series) > 0 {
		b = append(b, f.createdHd...)
		for _, s := range f.series {
			b = append(b, s.createdLine...)
			b = appendGoFloat(b, s.created)
			b = append(b, '\n')
		}
	}
	return b
}

func appendSum(b []byte, s *series) []byte {
	b = append(b, s.sumLine...)
	b = appendGoFloat(b, s.sum)
	return append(b, '\n')
}

// renderLabels renders {a="x",b="y"} sorted by label name, as
// prometheus_client does (which is why le lands in the middle of vLLM's
// {engine,le,model_name}). extra, if not nil, is added to labels.
func renderLabels(labels []label, extra *label) string {
	all := make([]label, 0, len(labels)+1)
	all = append(all, labels...)
	if extra != nil {
		all = append(all, *extra)
	}
	if len(all) == 0 {
		return ""
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].name < all[j].name })
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range all {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(l.name)
		sb.WriteString(`="`)
		sb.WriteString(escapeLabel(l.value))
		sb.WriteByte('"')
	}
	sb.WriteByte('}')
	return sb.String()
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
