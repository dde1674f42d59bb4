package parser

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
)

// The builder: what the relevant lines mean for the domain. It pulls
// each line's label block and value from the lexer (lex.go), groups the
// samples into series (a family and a label set), rejects what
// Prometheus would reject (a repeated sample, a bucket without le), and
// assembles and checks the Snapshot.

// labelSet is one distinct label set (labels minus le) seen in the file.
type labelSet struct {
	off, n   int32   // canonical label text in builder.strs
	moff, mn int32   // unescaped model in builder.strs
	series   []int32 // per family index: the series with this label set, or -1
}

// seriesAcc accumulates one series while scanning.
type seriesAcc struct {
	fam        int32
	metric     Metric
	set        int32
	count, sum float64
	hasCount   bool
	hasSum     bool
	sorted     bool    // bucket lines so far came in increasing le order
	maxBound   float64 // largest le so far
	nb         int32   // bucket lines so far
}

type bucketEntry struct {
	series int32
	line   int32
	bound  float64
	count  float64
}

// blockCache remembers the last fully parsed label block, so that the next
// lines of the same label set, whose blocks are the same bytes except for
// the le value, skip label parsing.
type blockCache struct {
	set int32 // label set; -1: empty cache
	// Bucket form: pre + `le="` + bound + post; post starts at the closing
	// quote of le and ends with '}'.
	pre, post []byte
	hasLe     bool
	// Form without le, for the _sum and _count lines: noLePre + noLePost.
	noLePre, noLePost []byte
	hasNoLe           bool
}

// builder holds the series of one Scan; pooled, so its slices are reused.
type builder struct {
	strs     []byte // canonical label texts and models of all label sets
	sets     []labelSet
	series   []seriesAcc
	buckets  []bucketEntry // in line order
	unsorted bool          // some series got buckets out of le order
	cache    blockCache

	startTime    float64
	hasStartTime bool

	// Scratch space, kept across pooled uses.
	canon  []byte
	dups   []bucketEntry
	perm   []int32
	rank   []int32
	starts []int32
	has    []uint8 // per output series: bit 0 _count seen, bit 1 _sum seen
}

func (bd *builder) reset() {
	bd.strs = bd.strs[:0]
	bd.sets = bd.sets[:0]
	bd.series = bd.series[:0]
	bd.buckets = bd.buckets[:0]
	bd.unsorted = false
	bd.cache = blockCache{set: -1}
	bd.startTime, bd.hasStartTime = 0, false
}

// release drops the references to the caller's data before pooling, and
// the scratch space grown by an unusually large file.
func (bd *builder) release() {
	bd.cache = blockCache{set: -1}
	if cap(bd.buckets) > 1<<14 {
		bd.buckets, bd.dups = nil, nil
	}
}

// sample parses the rest of a relevant line, after its metric name.
func (bd *builder) sample(lx *lexer, sn sampleName, rest []byte) error {
	set := int32(-1)
	var bound float64
	var tail []byte // what follows the label block
	if c := &bd.cache; c.set >= 0 && len(rest) > 0 && rest[0] == '{' {
		if sn.part == partBucket {
			if c.hasLe {
				if le, t, ok := matchBucket(rest, c); ok {
					v, ok := parseFloat(le)
					if !ok || math.IsNaN(v) {
						return lx.syntaxErr("le label %q is not a number", le)
					}
					if v == 0 {
						v = 0 // le="-0" is the bound 0
					}
					set, bound, tail = c.set, v, t
				}
			}
		} else if c.hasNoLe && sn.part != partStartTime {
			a, b := len(c.noLePre), len(c.noLePost)
			if len(rest) >= a+b && bytes.Equal(rest[:a], c.noLePre) && bytes.Equal(rest[a:a+b], c.noLePost) {
				set, tail = c.set, rest[a+b:]
			}
		}
	}
	if set < 0 {
		var err error
		var labelled bool
		if set, bound, tail, labelled, err = bd.fullLabels(lx, sn, rest); err != nil {
			return err
		}
		if sn.part == partStartTime && labelled {
			// Checked, but another series than the process start time.
			_, err := lx.value(tail)
			return err
		}
	}
	val, err := lx.value(tail)
	if err != nil {
		return err
	}
	if sn.part == partStartTime {
		if bd.hasStartTime {
			return lx.syntaxErr("duplicate sample %s", processStartTime)
		}
		bd.startTime, bd.hasStartTime = val, true
		return nil
	}
	idx := bd.seriesFor(sn, set)
	sr := &bd.series[idx]
	switch sn.part {
	case partCount:
		if sr.hasCount {
			return lx.syntaxErr("duplicate _count sample of %s", bd.seriesName(sr))
		}
		sr.count, sr.hasCount = val, true
	case partSum:
		if sr.hasSum {
			return lx.syntaxErr("duplicate _sum sample of %s", bd.seriesName(sr))
		}
		sr.sum, sr.hasSum = val, true
	case partBucket:
		if sr.nb > 0 && !(bound > sr.maxBound) {
			// Out of order: only now can le repeat. Checked once, by
			// dupBucket, to stay O(n log n) on hostile input.
			sr.sorted = false
			bd.unsorted = true
		} else {
			sr.maxBound = bound
		}
		sr.nb++
		bd.buckets = append(bd.buckets, bucketEntry{series: idx, line: int32(lx.line), bound: bound, count: val})
	}
	return nil
}

// dupBucket returns the error for the first line that repeats a bucket
// (same series, same le) among series whose buckets came out of order.
func (bd *builder) dupBucket() error {
	if !bd.unsorted {
		return nil
	}
	bd.unsorted = false
	bd.dups = bd.dups[:0]
	for _, b := range bd.buckets {
		if !bd.series[b.series].sorted {
			bd.dups = append(bd.dups, b)
		}
	}
	slices.SortFunc(bd.dups, func(a, b bucketEntry) int {
		switch {
		case a.series != b.series:
			return int(a.series - b.series)
		case a.bound < b.bound:
			return -1
		case a.bound > b.bound:
			return 1
		}
		return int(a.line - b.line)
	})
	var first *bucketEntry
	var prev int32
	for k := 1; k < len(bd.dups); k++ {
		a, b := &bd.dups[k-1], &bd.dups[k]
		if a.series == b.series && a.bound == b.bound && (first == nil || b.line < first.line) {
			first, prev = b, a.line
		}
	}
	if first == nil {
		return nil
	}
	return &ScanError{Reason: ErrSyntax, Line: int(first.line), Msg: fmt.Sprintf(
		"duplicate bucket le=%v of %s (first on line %d)", first.bound, shortPrefix([]byte(bd.seriesName(&bd.series[first.series]))), prev)}
}

// matchBucket checks whether the label block at the start of rest is the
// cached bucket form with some le value; it returns that value and what
// follows the block. The le value must not contain a backslash or a quote, so the
// block parses exactly as the cached one.
func matchBucket(rest []byte, c *blockCache) (le, tail []byte, ok bool) {
	p := len(c.pre)
	if len(rest) < p+4 || !bytes.Equal(rest[:p], c.pre) || string(rest[p:p+4]) != `le="` {
		return nil, nil, false
	}
	v := rest[p+4:]
	q := 0
	for q < len(v) && v[q] != '"' { // le values are short: no IndexByte call
		if v[q] == '\\' {
			return nil, nil, false
		}
		q++
	}
	if !bytes.HasPrefix(v[q:], c.post) { // post starts with the quote
		return nil, nil, false
	}
	return v[:q], v[q+len(c.post):], true
}

// seriesFor returns the index of the series of family sn.fam with label
// set set, creating it.
func (bd *builder) seriesFor(sn sampleName, set int32) int32 {
	ls := &bd.sets[set]
	if idx := ls.series[sn.fam]; idx >= 0 {
		return idx
	}
	idx := int32(len(bd.series))
	ls.series[sn.fam] = idx
	bd.series = append(bd.series, seriesAcc{fam: int32(sn.fam), metric: sn.metric, set: set, sorted: true})
	return idx
}

func (bd *builder) seriesName(sr *seriesAcc) string {
	ls := bd.sets[sr.set]
	return famNames[sr.fam] + "{" + string(bd.strs[ls.off:ls.off+ls.n]) + "}"
}

// fullLabels parses the optional label block at the start of rest the way
// expfmt does, checks le, registers the label set and refreshes the block
// cache. tail is what follows the block. For process_start_time_seconds
// it only reports whether there are labels (set is then -1).
func (bd *builder) fullLabels(lx *lexer, sn sampleName, rest []byte) (set int32, bound float64, tail []byte, labelled bool, err error) {
	i := 0
	for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
		i++
	}
	if i == len(rest) || rest[i] != '{' {
		// No label block: the value follows (expfmt even accepts it glued
		// to the name, as in "x-1").
		if sn.part == partBucket {
			return -1, 0, nil, false, lx.syntaxErr("_bucket sample without le label")
		}
		if sn.part == partStartTime {
			return -1, 0, rest, false, nil
		}
		bd.cache = blockCache{set: -1}
		return bd.internSet(nil, nil), 0, rest, false, nil
	}
	blockStart := i
	end, err := lx.labels(rest, i+1)
	if err != nil {
		return -1, 0, nil, false, err
	}
	tail = rest[end:]
	ps := lx.pairs
	for a := 1; a < len(ps); a++ { // few labels: insertion sort by name
		for b := a; b > 0 && bytes.Compare(ps[b].name, ps[b-1].name) < 0; b-- {
			ps[b], ps[b-1] = ps[b-1], ps[b]
		}
	}
	leIdx := -1
	for k := range ps {
		if k > 0 && bytes.Equal(ps[k].name, ps[k-1].name) {
			return -1, 0, nil, false, lx.syntaxErr("duplicate label name %q", ps[k].name)
		}
		if string(ps[k].name) == "le" {
			leIdx = k
		}
	}
	switch sn.part {
	case partStartTime:
		return -1, 0, tail, len(ps) > 0, nil
	case partBucket:
		if leIdx < 0 {
			return -1, 0, nil, false, lx.syntaxErr("_bucket sample without le label")
		}
		v, ok := parseFloat(ps[leIdx].value)
		if !ok || math.IsNaN(v) {
			return -1, 0, nil, false, lx.syntaxErr("le label %q is not a number", ps[leIdx].value)
		}
		if v == 0 {
			v = 0 // le="-0" is the bound 0
		}
		bound = v
	default:
		if leIdx >= 0 {
			return -1, 0, nil, false, lx.syntaxErr("le label on a _sum or _count sample")
		}
	}
	// Canonical label text (sorted, le left out) and model.
	bd.canon = bd.canon[:0]
	var model []byte
	hasModel := false
	for k := range ps {
		if k == leIdx {
			continue
		}
		if len(bd.canon) > 0 {
			bd.canon = append(bd.canon, ',')
		}
		bd.canon = appendLabelName(bd.canon, ps[k].name)
		bd.canon = append(bd.canon, '=', '"')
		bd.canon = append(bd.canon, ps[k].value...)
		bd.canon = append(bd.canon, '"')
		switch string(ps[k].name) {
		case "model_name":
			model, hasModel = ps[k].value, true
		case "name":
			if !hasModel {
				model = ps[k].value
			}
		}
	}
	set = bd.internSet(bd.canon, model)
	// Refresh the cache from this block's bytes.
	block := rest[blockStart:end]
	c := &bd.cache
	*c = blockCache{set: set}
	if leIdx < 0 {
		c.noLePre, c.hasNoLe = block, true
	} else if lp := ps[leIdx]; bytes.HasPrefix(block[lp.start:], []byte(`le="`)) && bytes.IndexByte(lp.value, '\\') < 0 {
		c.pre, c.post, c.hasLe = block[:lp.start], block[lp.end-1:], true
		if block[lp.end] == ',' {
			c.noLePre, c.noLePost, c.hasNoLe = block[:lp.start], block[lp.end+1:], true
		}
	}
	return set, bound, tail, true, nil
}

// appendLabelName renders a label name: bare when it is a legacy name,
// otherwise quoted with the text format's escapes.
func appendLabelName(dst, name []byte) []byte {
	legacy := len(name) > 0
	for k, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || k > 0 && c >= '0' && c <= '9') {
			legacy = false
			break
		}
	}
	if legacy {
		return append(dst, name...)
	}
	dst = append(dst, '"')
	for _, c := range name {
		switch c {
		case '\\', '"':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// appendUnescaped appends the label value v, written escaped, unescaped.
func appendUnescaped(dst, v []byte) []byte {
	for k := 0; k < len(v); k++ {
		c := v[k]
		if c == '\\' && k+1 < len(v) {
			k++
			if c = v[k]; c == 'n' {
				c = '\n'
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// internSet returns the label set with canonical text canon, adding it.
func (bd *builder) internSet(canon, model []byte) int32 {
	for k := range bd.sets {
		if ls := &bd.sets[k]; bytes.Equal(bd.strs[ls.off:ls.off+ls.n], canon) {
			return int32(k)
		}
	}
	ls := labelSet{off: int32(len(bd.strs)), n: int32(len(canon))}
	bd.strs = append(bd.strs, canon...)
	ls.moff = int32(len(bd.strs))
	bd.strs = appendUnescaped(bd.strs, model)
	ls.mn = int32(len(bd.strs)) - ls.moff
	if k := len(bd.sets); k < cap(bd.sets) {
		ls.series = bd.sets[:k+1][k].series[:0] // reuse the pooled array
	}
	for range famNames {
		ls.series = append(ls.series, -1)
	}
	bd.sets = append(bd.sets, ls)
	return int32(len(bd.sets) - 1)
}

// build assembles the Snapshot with four allocations: the snapshot, its
// series, one array for all buckets and one string for all label texts and
// models. Series are ordered by metric, labels, then family name; buckets
// by le.
func (bd *builder) build() *Snapshot {
	snap := &Snapshot{ProcessStartTime: bd.startTime, HasProcessStartTime: bd.hasStartTime}
	n := len(bd.series)
	bd.has = bd.has[:0]
	if n == 0 {
		return snap
	}
	bd.perm = bd.perm[:0]
	for k := range n {
		bd.perm = append(bd.perm, int32(k))
	}
	slices.SortFunc(bd.perm, func(a, b int32) int {
		x, y := &bd.series[a], &bd.series[b]
		if x.metric != y.metric {
			return int(x.metric) - int(y.metric)
		}
		lx, ly := &bd.sets[x.set], &bd.sets[y.set]
		if c := bytes.Compare(bd.strs[lx.off:lx.off+lx.n], bd.strs[ly.off:ly.off+ly.n]); c != 0 {
			return c
		}
		return strings.Compare(famNames[x.fam], famNames[y.fam])
	})
	bd.rank = slices.Grow(bd.rank[:0], n)[:n]
	bd.starts = slices.Grow(bd.starts[:0], n+1)[:n+1]
	off := int32(0)
	for pos, k := range bd.perm {
		bd.rank[k] = int32(pos)
		bd.starts[pos] = off
		off += bd.series[k].nb
	}
	bd.starts[n] = off
	all := make([]Bucket, len(bd.buckets))
	// Place the buckets; starts[pos] advances as a fill pointer and is
	// restored below.
	for _, b := range bd.buckets {
		pos := bd.rank[b.series]
		all[bd.starts[pos]] = Bucket{UpperBound: b.bound, Count: b.count}
		bd.starts[pos]++
	}
	strs := string(bd.strs)
	out := make([]Series, n)
	for pos, k := range bd.perm {
		sr := &bd.series[k]
		end := bd.starts[pos]
		bs := all[end-sr.nb : end : end]
		if !sr.sorted {
			slices.SortFunc(bs, func(a, b Bucket) int {
				if a.UpperBound < b.UpperBound {
					return -1
				}
				if a.UpperBound > b.UpperBound {
					return 1
				}
				return 0
			})
		}
		if len(bs) == 0 {
			bs = nil
		}
		ls := &bd.sets[sr.set]
		out[pos] = Series{
			Metric:  sr.metric,
			Labels:  strs[ls.off : ls.off+ls.n],
			Model:   strs[ls.moff : ls.moff+ls.mn],
			Count:   sr.count,
			Sum:     sr.sum,
			Buckets: bs,
		}
		var h uint8
		if sr.hasCount {
			h |= 1
		}
		if sr.hasSum {
			h |= 2
		}
		bd.has = append(bd.has, h)
	}
	snap.Series = out
	return snap
}

// validate checks every series of the built snapshot (bd.has in the same
// order); the first problem in output order is reported as ErrIncomplete.
func (bd *builder) validate(snap *Snapshot) error {
	for k := range snap.Series {
		sr := &snap.Series[k]
		if msg := checkSeries(sr, bd.has[k]); msg != "" {
			return &ScanError{Reason: ErrIncomplete,
				Msg: fmt.Sprintf("series %s{%s}: %s", sr.Metric.Name(), shortPrefix([]byte(sr.Labels)), msg)}
		}
	}
	return nil
}

// checkSeries returns what makes a series unusable, or "". has: bit 0
// _count present, bit 1 _sum present.
func checkSeries(sr *Series, has uint8) string {
	switch {
	case has&1 == 0:
		return "no _count sample"
	case has&2 == 0:
		return "no _sum sample"
	case !validCount(sr.Count):
		return fmt.Sprintf("invalid _count %v", sr.Count)
	case len(sr.Buckets) == 0 || !math.IsInf(sr.Buckets[len(sr.Buckets)-1].UpperBound, 1):
		return "no +Inf bucket"
	}
	prev := 0.0
	for _, b := range sr.Buckets {
		if !validCount(b.Count) {
			return fmt.Sprintf("invalid count %v in bucket le=%v", b.Count, b.UpperBound)
		}
		if b.Count < prev {
			return fmt.Sprintf("bucket le=%v count %v is below the previous bucket's %v", b.UpperBound, b.Count, prev)
		}
		prev = b.Count
	}
	if prev != sr.Count {
		return fmt.Sprintf("+Inf bucket %v differs from _count %v", prev, sr.Count)
	}
	return ""
}

// validCount: counts are finite and not negative.
func validCount(v float64) bool { return v >= 0 && !math.IsInf(v, 1) }
