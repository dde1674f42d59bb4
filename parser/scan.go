package parser

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// Reasons for which Scan rejects a snapshot. Scan's errors are *ScanError
// values wrapping exactly one of them, so callers count rejected files with
// errors.Is.
var (
	// ErrEmpty: the file is empty or holds only whitespace.
	ErrEmpty = errors.New("empty snapshot")
	// ErrSyntax: a line of a relevant family is not a valid exposition
	// line, or repeats a sample of the same series. The error names the
	// line.
	ErrSyntax = errors.New("invalid exposition line")
	// ErrIncomplete: the file does not hold a complete, self-consistent
	// scrape: it does not end with '\n' (still being written, or cut), or
	// a relevant series lacks its _count, _sum or +Inf bucket, or its
	// buckets are not cumulative, or its +Inf bucket differs from _count.
	ErrIncomplete = errors.New("incomplete snapshot")
	// ErrNoFamilies: the file is readable but holds neither a relevant
	// histogram, nor process_start_time_seconds, nor any sample of a
	// server's namespace (vllm:, sglang:): another server's metrics, an
	// HTML or curl error page, binary junk.
	ErrNoFamilies = errors.New("no relevant metric families")
)

// ScanError is the error returned by Scan.
type ScanError struct {
	Reason error  // ErrEmpty, ErrSyntax, ErrIncomplete or ErrNoFamilies
	Line   int    // 1-based line of the offending sample; 0 if not about one line
	Msg    string // what is wrong
}

func (e *ScanError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%v: line %d: %s", e.Reason, e.Line, e.Msg)
	}
	if e.Msg == "" {
		return e.Reason.Error()
	}
	return fmt.Sprintf("%v: %s", e.Reason, e.Msg)
}

// Unwrap returns the reason, so errors.Is(err, ErrSyntax) works.
func (e *ScanError) Unwrap() error { return e.Reason }

// part is which sample of a histogram series a line carries.
type part uint8

const (
	partBucket part = iota
	partSum
	partCount
	partStartTime // process_start_time_seconds
)

// sampleName describes one relevant sample name (X_bucket, X_sum, X_count
// of a source family X, or process_start_time_seconds).
type sampleName struct {
	fam    int // index into famNames; -1 for process_start_time_seconds
	metric Metric
	part   part
}

const processStartTime = "process_start_time_seconds"

var (
	famNames    = sortedSources()
	sampleNames = buildSampleNames()
)

func sortedSources() []string {
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func buildSampleNames() map[string]sampleName {
	m := make(map[string]sampleName, 3*len(famNames)+1)
	for i, f := range famNames {
		met := sources[f]
		m[f+"_bucket"] = sampleName{i, met, partBucket}
		m[f+"_sum"] = sampleName{i, met, partSum}
		m[f+"_count"] = sampleName{i, met, partCount}
	}
	m[processStartTime] = sampleName{-1, 0, partStartTime}
	return m
}

// nameChar marks the bytes of an unquoted metric name: [A-Za-z0-9_:].
var nameChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'], t[':'] = true, true
	return t
}()

// Scan extracts from one Prometheus text-format scrape the histogram series
// of the per-request source families (see SourceFamilies) and
// process_start_time_seconds. It reads only the lines it needs: a line is
// relevant when its metric name, read as an unquoted name (the longest run
// of [A-Za-z0-9_:] after leading blanks, not followed by '"'), is X_bucket,
// X_sum or X_count of a source family X, or process_start_time_seconds.
// Relevant lines are parsed and checked as strictly as expfmt parses them
// (label syntax and escapes, UTF-8, duplicate label names, float values,
// integer timestamps); all other lines are skipped unparsed.
//
// Accepted: any order of lines and of labels within a line (multiprocess
// output puts all _sum lines first; le may be anywhere in the label set),
// leading blanks (the indented AIBrix docs sample), optional timestamps,
// the float forms of the text format ("1.0", "8.128902e+06", "+Inf",
// "NaN"), a trailing "# EOF". A series is the family plus its labels other
// than le (Series.Labels: sorted by name; label values as written, so
// escaped; label names bare, or quoted when not legacy names); its Model is
// the model_name label, else the name label (SGLang's first version).
// Every series must have _count, _sum and a +Inf bucket equal to _count,
// with non-decreasing, non-negative bucket counts. Series are ordered by
// Metric, then Labels, then family name; buckets by le (le="-0" is 0).
//
// What Scan does not validate, where expfmt would fail:
//   - comment lines (# HELP, # TYPE, anything else after '#'): never read.
//     TYPE is not used: a relevant family is recognised by its sample
//     names, whatever TYPE (if any) says;
//   - lines of other families: only their name is read;
//   - lines in the quoted-name syntax ({"name",...}, "name"{...}): never
//     relevant, even for a relevant name (clients quote only names that are
//     not valid unquoted, which ours are);
//   - process_start_time_seconds lines with labels: checked, then ignored
//     (only the unlabelled one is the process start time).
//
// Where Scan is stricter than expfmt's TextParser (which assembles
// histograms leniently): a repeated sample (same series and part, or same
// le) is ErrSyntax, as Prometheus' scrape rejects it; a _bucket line must
// have one le label with a non-NaN float value, and _sum/_count lines none
// (ErrSyntax); a missing final '\n' and the series checks above are
// ErrIncomplete.
//
// Errors are *ScanError wrapping ErrEmpty, ErrSyntax, ErrIncomplete or
// ErrNoFamilies, checked in that order (a file cut in the middle of a line
// is ErrIncomplete, not ErrSyntax); ErrSyntax names the first offending
// line. A curl error message saved as a file is ErrNoFamilies
// (ErrIncomplete if it lacks the final newline). A file cut exactly
// between two families cannot be told from a complete one: the text format
// has no end marker.
//
// The snapshot shares nothing with data. Scan is safe for concurrent use.
func Scan(data []byte) (*Snapshot, error) {
	s := scannerPool.Get().(*scanner)
	defer func() {
		s.release()
		scannerPool.Put(s)
	}()
	snap, err := s.run(data)
	if err != nil {
		return nil, err
	}
	snap.ScrapeStarted = scrapeStarted(data)
	return snap, nil
}

// scanPartial is Scan keeping what it found when the per-series checks
// fail (series lacking parts included): tests and golden files use it on
// the excerpt samples. has[i] tells which parts Series[i] had: bit 0
// _count, bit 1 _sum. snap is nil when the error is not ErrIncomplete
// about a series.
func scanPartial(data []byte) (snap *Snapshot, has []uint8, err error) {
	s := &scanner{}
	snap, err = s.run(data)
	if snap == nil {
		return nil, nil, err
	}
	return snap, slices.Clone(s.has), err
}

var scannerPool = sync.Pool{New: func() any { return &scanner{} }}

// labelSet is one distinct label set (labels minus le) seen in the file.
type labelSet struct {
	off, n   int32   // canonical label text in scanner.strs
	moff, mn int32   // unescaped model in scanner.strs
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

// pair is one label of a fully parsed label block.
type pair struct {
	name       []byte // unescaped
	value      []byte // as written (escaped), without quotes
	start, end int    // span in the block: name start, after the closing quote
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

// scanner holds the state of one Scan; pooled, so its slices are reused.
type scanner struct {
	line     int
	strs     []byte // canonical label texts and models of all label sets
	sets     []labelSet
	series   []seriesAcc
	buckets  []bucketEntry // in line order
	unsorted bool          // some series got buckets out of le order
	cache    blockCache

	startTime    float64
	hasStartTime bool
	// sawServer: a sample of a server's own namespace (vllm:, sglang:)
	// was seen, relevant or not.
	sawServer bool

	// The last metric name looked up, and its meaning.
	lastName []byte
	lastSN   sampleName
	lastOK   bool

	// Scratch space, kept across pooled uses.
	pairs  []pair
	names  []byte // unescaped label names of the line being parsed
	canon  []byte
	dups   []bucketEntry
	perm   []int32
	rank   []int32
	starts []int32
	has    []uint8 // per output series: bit 0 _count seen, bit 1 _sum seen
}

// release drops the references to the caller's data before pooling, and
// the scratch space grown by an unusually large file.
func (s *scanner) release() {
	s.pairs = s.pairs[:0]
	s.cache = blockCache{set: -1}
	s.lastName = nil
	if cap(s.buckets) > 1<<14 {
		s.buckets, s.dups = nil, nil
	}
}

// maxQuoted bounds what an error quotes of the input: the error is logged,
// and a bad line can be megabytes long.
const maxQuoted = 200

func (s *scanner) syntaxErr(msg string, args ...any) error {
	for i, a := range args {
		switch v := a.(type) {
		case string:
			args[i] = shortPrefix([]byte(v))
		case []byte:
			args[i] = shortPrefix(v)
		}
	}
	return &ScanError{Reason: ErrSyntax, Line: s.line, Msg: fmt.Sprintf(msg, args...)}
}

// shortPrefix returns at most maxQuoted bytes of b (cut on a rune
// boundary when b is UTF-8), marked with "…" when cut.
func shortPrefix(b []byte) string {
	if len(b) <= maxQuoted {
		return string(b)
	}
	cut := maxQuoted
	for cut > maxQuoted-utf8.UTFMax && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "…"
}

// run scans data and builds the snapshot. On a per-series problem it
// returns both the snapshot and the ErrIncomplete error.
func (s *scanner) run(data []byte) (*Snapshot, error) {
	s.line = 0
	s.strs = s.strs[:0]
	s.sets = s.sets[:0]
	s.series = s.series[:0]
	s.buckets = s.buckets[:0]
	s.unsorted = false
	s.cache = blockCache{set: -1}
	s.startTime, s.hasStartTime = 0, false
	s.sawServer = false
	s.lastName, s.lastOK = nil, false
	if err := s.scan(data); err != nil {
		return nil, err
	}
	snap := s.build()
	return snap, s.validate(snap)
}

func (s *scanner) scan(data []byte) error {
	if isBlank(data) {
		return &ScanError{Reason: ErrEmpty}
	}
	if data[len(data)-1] != '\n' {
		return &ScanError{Reason: ErrIncomplete, Msg: "data does not end with a newline"}
	}
	for pos := 0; pos < len(data); {
		nl := bytes.IndexByte(data[pos:], '\n')
		line := data[pos : pos+nl]
		pos += nl + 1
		s.line++
		if len(line) == 0 {
			continue
		}
		c := line[0]
		if c == ' ' || c == '\t' {
			i := 1
			for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
				i++
			}
			line = line[i:]
			if len(line) == 0 {
				continue
			}
			c = line[0]
		}
		// Cheap prefix check: every relevant name starts with one of these.
		switch c {
		case 'v':
			if !bytes.HasPrefix(line, []byte("vllm:")) {
				continue
			}
			s.sawServer = true
		case 's':
			if !bytes.HasPrefix(line, []byte("sglang:")) {
				continue
			}
			s.sawServer = true
		case 'p':
			if !bytes.HasPrefix(line, []byte(processStartTime)) {
				continue
			}
		default:
			continue
		}
		// The metric name: the longest run of unquoted name bytes. Runs of
		// lines share it, so compare with the last one before hashing.
		var sn sampleName
		n := len(s.lastName)
		if n > 0 && len(line) >= n && bytes.Equal(line[:n], s.lastName) && (len(line) == n || !nameChar[line[n]]) {
			if !s.lastOK {
				continue
			}
			sn = s.lastSN
		} else {
			n = 0
			for n < len(line) && nameChar[line[n]] {
				n++
			}
			var ok bool
			// Relevant names end in _bucket, _count, _sum or _seconds:
			// spare the map lookup for _total, _created and most gauges.
			if last := line[n-1]; last == 't' || last == 'm' || last == 's' {
				sn, ok = sampleNames[string(line[:n])]
			}
			s.lastName, s.lastSN, s.lastOK = line[:n], sn, ok
			if !ok {
				continue
			}
		}
		rest := line[n:]
		if len(rest) > 0 && rest[0] == '"' {
			continue // name continued in quotes: not an unquoted relevant name
		}
		if err := s.sample(sn, rest); err != nil {
			if dup := s.dupBucket(); dup != nil {
				return dup // on an earlier line
			}
			return err
		}
	}
	if err := s.dupBucket(); err != nil {
		return err
	}
	// A server's scrape without any per-request family yet (a fresh
	// server that exposes a histogram only from its first observation,
	// and no process_start_time_seconds) is a snapshot of zero counts.
	if len(s.series) == 0 && !s.hasStartTime && !s.sawServer {
		return &ScanError{Reason: ErrNoFamilies}
	}
	return nil
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// sample parses the rest of a relevant line, after its metric name.
func (s *scanner) sample(sn sampleName, rest []byte) error {
	set := int32(-1)
	var bound float64
	var tail []byte // what follows the label block
	if c := &s.cache; c.set >= 0 && len(rest) > 0 && rest[0] == '{' {
		if sn.part == partBucket {
			if c.hasLe {
				if le, t, ok := matchBucket(rest, c); ok {
					v, ok := parseFloat(le)
					if !ok || math.IsNaN(v) {
						return s.syntaxErr("le label %q is not a number", le)
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
		if set, bound, tail, labelled, err = s.fullLabels(sn, rest); err != nil {
			return err
		}
		if sn.part == partStartTime && labelled {
			// Checked, but another series than the process start time.
			_, err := s.value(tail)
			return err
		}
	}
	val, err := s.value(tail)
	if err != nil {
		return err
	}
	if sn.part == partStartTime {
		if s.hasStartTime {
			return s.syntaxErr("duplicate sample %s", processStartTime)
		}
		s.startTime, s.hasStartTime = val, true
		return nil
	}
	idx := s.seriesFor(sn, set)
	sr := &s.series[idx]
	switch sn.part {
	case partCount:
		if sr.hasCount {
			return s.syntaxErr("duplicate _count sample of %s", s.seriesName(sr))
		}
		sr.count, sr.hasCount = val, true
	case partSum:
		if sr.hasSum {
			return s.syntaxErr("duplicate _sum sample of %s", s.seriesName(sr))
		}
		sr.sum, sr.hasSum = val, true
	case partBucket:
		if sr.nb > 0 && !(bound > sr.maxBound) {
			// Out of order: only now can le repeat. Checked once, by
			// dupBucket, to stay O(n log n) on hostile input.
			sr.sorted = false
			s.unsorted = true
		} else {
			sr.maxBound = bound
		}
		sr.nb++
		s.buckets = append(s.buckets, bucketEntry{series: idx, line: int32(s.line), bound: bound, count: val})
	}
	return nil
}

// dupBucket returns the error for the first line that repeats a bucket
// (same series, same le) among series whose buckets came out of order.
func (s *scanner) dupBucket() error {
	if !s.unsorted {
		return nil
	}
	s.unsorted = false
	s.dups = s.dups[:0]
	for _, b := range s.buckets {
		if !s.series[b.series].sorted {
			s.dups = append(s.dups, b)
		}
	}
	slices.SortFunc(s.dups, func(a, b bucketEntry) int {
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
	for k := 1; k < len(s.dups); k++ {
		a, b := &s.dups[k-1], &s.dups[k]
		if a.series == b.series && a.bound == b.bound && (first == nil || b.line < first.line) {
			first, prev = b, a.line
		}
	}
	if first == nil {
		return nil
	}
	return &ScanError{Reason: ErrSyntax, Line: int(first.line), Msg: fmt.Sprintf(
		"duplicate bucket le=%v of %s (first on line %d)", first.bound, shortPrefix([]byte(s.seriesName(&s.series[first.series]))), prev)}
}

// value parses what follows the label block: blanks, the value, and
// optionally blanks and an integer timestamp ending the line.
func (s *scanner) value(tail []byte) (float64, error) {
	i := 0
	for i < len(tail) && (tail[i] == ' ' || tail[i] == '\t') {
		i++
	}
	j := i
	for j < len(tail) && tail[j] != ' ' && tail[j] != '\t' {
		j++
	}
	val, ok := parseFloat(tail[i:j])
	if !ok {
		return 0, s.syntaxErr("expected a float as value, got %q", tail[i:j])
	}
	if j == len(tail) {
		return val, nil
	}
	for j < len(tail) && (tail[j] == ' ' || tail[j] == '\t') {
		j++
	}
	e := j
	for e < len(tail) && tail[e] != ' ' && tail[e] != '\t' {
		e++
	}
	if !parseTimestamp(tail[j:e]) {
		return 0, s.syntaxErr("expected an integer timestamp, got %q", tail[j:e])
	}
	if e != len(tail) {
		return 0, s.syntaxErr("spurious text after the timestamp: %q", tail[e:])
	}
	return val, nil
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
func (s *scanner) seriesFor(sn sampleName, set int32) int32 {
	ls := &s.sets[set]
	if idx := ls.series[sn.fam]; idx >= 0 {
		return idx
	}
	idx := int32(len(s.series))
	ls.series[sn.fam] = idx
	s.series = append(s.series, seriesAcc{fam: int32(sn.fam), metric: sn.metric, set: set, sorted: true})
	return idx
}

func (s *scanner) seriesName(sr *seriesAcc) string {
	ls := s.sets[sr.set]
	return famNames[sr.fam] + "{" + string(s.strs[ls.off:ls.off+ls.n]) + "}"
}

// fullLabels parses the optional label block at the start of rest the way
// expfmt does, checks le, registers the label set and refreshes the block
// cache. tail is what follows the block. For process_start_time_seconds
// it only reports whether there are labels (set is then -1).
func (s *scanner) fullLabels(sn sampleName, rest []byte) (set int32, bound float64, tail []byte, labelled bool, err error) {
	i := 0
	for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
		i++
	}
	s.pairs = s.pairs[:0]
	s.names = s.names[:0]
	if i == len(rest) || rest[i] != '{' {
		// No label block: the value follows (expfmt even accepts it glued
		// to the name, as in "x-1").
		if sn.part == partBucket {
			return -1, 0, nil, false, s.syntaxErr("_bucket sample without le label")
		}
		if sn.part == partStartTime {
			return -1, 0, rest, false, nil
		}
		s.cache = blockCache{set: -1}
		return s.internSet(nil, nil), 0, rest, false, nil
	}
	blockStart := i
	end, err := s.parseBlock(rest, i+1)
	if err != nil {
		return -1, 0, nil, false, err
	}
	tail = rest[end:]
	ps := s.pairs
	for a := 1; a < len(ps); a++ { // few labels: insertion sort by name
		for b := a; b > 0 && bytes.Compare(ps[b].name, ps[b-1].name) < 0; b-- {
			ps[b], ps[b-1] = ps[b-1], ps[b]
		}
	}
	leIdx := -1
	for k := range ps {
		if k > 0 && bytes.Equal(ps[k].name, ps[k-1].name) {
			return -1, 0, nil, false, s.syntaxErr("duplicate label name %q", ps[k].name)
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
			return -1, 0, nil, false, s.syntaxErr("_bucket sample without le label")
		}
		v, ok := parseFloat(ps[leIdx].value)
		if !ok || math.IsNaN(v) {
			return -1, 0, nil, false, s.syntaxErr("le label %q is not a number", ps[leIdx].value)
		}
		if v == 0 {
			v = 0 // le="-0" is the bound 0
		}
		bound = v
	default:
		if leIdx >= 0 {
			return -1, 0, nil, false, s.syntaxErr("le label on a _sum or _count sample")
		}
	}
	// Canonical label text (sorted, le left out) and model.
	s.canon = s.canon[:0]
	var model []byte
	hasModel := false
	for k := range ps {
		if k == leIdx {
			continue
		}
		if len(s.canon) > 0 {
			s.canon = append(s.canon, ',')
		}
		s.canon = appendLabelName(s.canon, ps[k].name)
		s.canon = append(s.canon, '=', '"')
		s.canon = append(s.canon, ps[k].value...)
		s.canon = append(s.canon, '"')
		switch string(ps[k].name) {
		case "model_name":
			model, hasModel = ps[k].value, true
		case "name":
			if !hasModel {
				model = ps[k].value
			}
		}
	}
	set = s.internSet(s.canon, model)
	// Refresh the cache from this block's bytes.
	block := rest[blockStart:end]
	c := &s.cache
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

// parseBlock parses the labels of rest[i:] (i is just after '{') up to
// '}', appending them to s.pairs, and returns the index after '}'. It
// follows expfmt's grammar: blanks around names, '=', values and commas; a
// trailing comma; names unquoted or (partly) quoted, with \\, \" and \n
// escapes in quotes; quoted values with the same escapes; names and values
// valid UTF-8; no __name__ label.
func (s *scanner) parseBlock(rest []byte, i int) (int, error) {
	blockStart := i - 1
	for {
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) {
			return 0, s.syntaxErr("unterminated label set")
		}
		if rest[i] == '}' {
			return i + 1, nil
		}
		// Label name, as expfmt's readTokenAsLabelName reads it.
		start := i
		if c := rest[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '"') {
			return 0, s.syntaxErr("invalid label name")
		}
		nameOff := len(s.names)
		quoted, escaped := false, false
		for {
			c := rest[i]
			closed := false
			switch {
			case escaped:
				switch c {
				case '\\', '"':
				case 'n':
					c = '\n'
				default:
					return 0, s.syntaxErr("invalid escape sequence '\\%c' in label name", c)
				}
				s.names = append(s.names, c)
				escaped = false
			case c == '"':
				quoted = !quoted
				closed = !quoted
			case c == '\\':
				escaped = true
			default:
				s.names = append(s.names, c)
			}
			i++
			if closed {
				break
			}
			if i == len(rest) {
				return 0, s.syntaxErr("unterminated label name")
			}
			if !quoted && !labelNameCont(rest[i]) {
				break
			}
		}
		name := s.names[nameOff:len(s.names):len(s.names)]
		if len(name) == 0 {
			return 0, s.syntaxErr("invalid label name")
		}
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) || rest[i] != '=' {
			return 0, s.syntaxErr("expected '=' after label name %q", name)
		}
		i++
		if string(name) == "__name__" {
			return 0, s.syntaxErr("label name \"__name__\" is reserved")
		}
		if !utf8.Valid(name) {
			return 0, s.syntaxErr("invalid label name %q", name)
		}
		// Label value.
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) || rest[i] != '"' {
			return 0, s.syntaxErr("expected '\"' at start of label value")
		}
		i++
		vs := i
		for {
			if i == len(rest) {
				return 0, s.syntaxErr("unterminated label value")
			}
			c := rest[i]
			if c == '"' {
				break
			}
			if c == '\\' {
				i++
				if i == len(rest) {
					return 0, s.syntaxErr("unterminated label value")
				}
				if d := rest[i]; d != '\\' && d != '"' && d != 'n' {
					return 0, s.syntaxErr("invalid escape sequence '\\%c' in label value", d)
				}
			}
			i++
		}
		value := rest[vs:i]
		i++
		if !utf8.Valid(value) {
			return 0, s.syntaxErr("invalid label value %q", value)
		}
		s.pairs = append(s.pairs, pair{name: name, value: value, start: start - blockStart, end: i - blockStart})
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) {
			return 0, s.syntaxErr("unterminated label set")
		}
		switch rest[i] {
		case ',':
			i++
		case '}':
			return i + 1, nil
		default:
			return 0, s.syntaxErr("unexpected end of label value %q", value)
		}
	}
}

func labelNameCont(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '"'
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
func (s *scanner) internSet(canon, model []byte) int32 {
	for k := range s.sets {
		if ls := &s.sets[k]; bytes.Equal(s.strs[ls.off:ls.off+ls.n], canon) {
			return int32(k)
		}
	}
	ls := labelSet{off: int32(len(s.strs)), n: int32(len(canon))}
	s.strs = append(s.strs, canon...)
	ls.moff = int32(len(s.strs))
	s.strs = appendUnescaped(s.strs, model)
	ls.mn = int32(len(s.strs)) - ls.moff
	if k := len(s.sets); k < cap(s.sets) {
		ls.series = s.sets[:k+1][k].series[:0] // reuse the pooled array
	}
	for range famNames {
		ls.series = append(ls.series, -1)
	}
	s.sets = append(s.sets, ls)
	return int32(len(s.sets) - 1)
}

// build assembles the Snapshot with four allocations: the snapshot, its
// series, one array for all buckets and one string for all label texts and
// models. Series are ordered by metric, labels, then family name; buckets
// by le.
func (s *scanner) build() *Snapshot {
	snap := &Snapshot{ProcessStartTime: s.startTime, HasProcessStartTime: s.hasStartTime}
	n := len(s.series)
	s.has = s.has[:0]
	if n == 0 {
		return snap
	}
	s.perm = s.perm[:0]
	for k := range n {
		s.perm = append(s.perm, int32(k))
	}
	slices.SortFunc(s.perm, func(a, b int32) int {
		x, y := &s.series[a], &s.series[b]
		if x.metric != y.metric {
			return int(x.metric) - int(y.metric)
		}
		lx, ly := &s.sets[x.set], &s.sets[y.set]
		if c := bytes.Compare(s.strs[lx.off:lx.off+lx.n], s.strs[ly.off:ly.off+ly.n]); c != 0 {
			return c
		}
		return strings.Compare(famNames[x.fam], famNames[y.fam])
	})
	s.rank = slices.Grow(s.rank[:0], n)[:n]
	s.starts = slices.Grow(s.starts[:0], n+1)[:n+1]
	off := int32(0)
	for pos, k := range s.perm {
		s.rank[k] = int32(pos)
		s.starts[pos] = off
		off += s.series[k].nb
	}
	s.starts[n] = off
	all := make([]Bucket, len(s.buckets))
	// Place the buckets; starts[pos] advances as a fill pointer and is
	// restored below.
	for _, b := range s.buckets {
		pos := s.rank[b.series]
		all[s.starts[pos]] = Bucket{UpperBound: b.bound, Count: b.count}
		s.starts[pos]++
	}
	strs := string(s.strs)
	out := make([]Series, n)
	for pos, k := range s.perm {
		sr := &s.series[k]
		end := s.starts[pos]
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
		ls := &s.sets[sr.set]
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
		s.has = append(s.has, h)
	}
	snap.Series = out
	return snap
}

// validate checks every series of the built snapshot (s.has in the same
// order); the first problem in output order is reported as ErrIncomplete.
func (s *scanner) validate(snap *Snapshot) error {
	for k := range snap.Series {
		sr := &snap.Series[k]
		if msg := checkSeries(sr, s.has[k]); msg != "" {
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
