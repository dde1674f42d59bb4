package parser

import (
	"errors"
	"fmt"
	"slices"
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
	return snap, slices.Clone(s.b.has), err
}

var scannerPool = sync.Pool{New: func() any { return &scanner{} }}

// scanner is one Scan: the lexer finds the relevant lines and their
// tokens, the builder turns them into series. Pooled, so the slices of
// both are reused.
type scanner struct {
	lx lexer
	b  builder
}

// release drops the references to the caller's data before pooling, and
// the scratch space grown by an unusually large file.
func (s *scanner) release() {
	s.lx.release()
	s.b.release()
}

// maxQuoted bounds what an error quotes of the input: the error is logged,
// and a bad line can be megabytes long.
const maxQuoted = 200

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
	s.lx.reset(data)
	s.b.reset()
	if err := s.scan(data); err != nil {
		return nil, err
	}
	snap := s.b.build()
	return snap, s.b.validate(snap)
}

func (s *scanner) scan(data []byte) error {
	if isBlank(data) {
		return &ScanError{Reason: ErrEmpty}
	}
	if data[len(data)-1] != '\n' {
		return &ScanError{Reason: ErrIncomplete, Msg: "data does not end with a newline"}
	}
	for {
		sn, rest, ok := s.lx.next()
		if !ok {
			break
		}
		if err := s.b.sample(&s.lx, sn, rest); err != nil {
			if dup := s.b.dupBucket(); dup != nil {
				return dup // on an earlier line
			}
			return err
		}
	}
	if err := s.b.dupBucket(); err != nil {
		return err
	}
	// A server's scrape without any per-request family yet (a fresh
	// server that exposes a histogram only from its first observation,
	// and no process_start_time_seconds) is a snapshot of zero counts.
	if len(s.b.series) == 0 && !s.b.hasStartTime && !s.lx.sawServer {
		return &ScanError{Reason: ErrNoFamilies}
	}
	return nil
}
