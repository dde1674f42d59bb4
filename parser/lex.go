package parser

import (
	"bytes"
	"fmt"
	"sort"
	"unicode/utf8"
)

// The lexer: the exposition format's lines and tokens. It knows which
// sample names are relevant (sampleNames), nothing of how samples make a
// series. It finds the relevant lines by their metric name and hands the
// rest of each to the builder (build.go), which pulls
// the label block (labels) and the value (value) from it. It owns the
// line number, so every ErrSyntax names its line. The split follows
// Prometheus's textparse (a lexer of tokens, a parser that builds
// series), except that irrelevant lines are never tokenised: next skips
// them on their first bytes, which is where the scanner's speed comes
// from.

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

// pair is one label of a fully parsed label block.
type pair struct {
	name       []byte // unescaped
	value      []byte // as written (escaped), without quotes
	start, end int    // span in the block: name start, after the closing quote
}

// lexer walks the lines of one scrape.
type lexer struct {
	data []byte
	pos  int // start of the next line
	line int // 1-based number of the line last returned by next
	// sawServer: a sample of a server's own namespace (vllm:, sglang:)
	// was seen, relevant or not.
	sawServer bool

	// The last metric name looked up, and its meaning.
	lastName []byte
	lastSN   sampleName
	lastOK   bool

	// Scratch space of labels, kept across pooled uses.
	pairs []pair
	names []byte // unescaped label names of the line being parsed
}

func (l *lexer) reset(data []byte) {
	l.data, l.pos, l.line = data, 0, 0
	l.sawServer = false
	l.lastName, l.lastOK = nil, false
}

// release drops the references to the caller's data before pooling.
func (l *lexer) release() {
	l.data = nil
	l.pairs = l.pairs[:0]
	l.lastName = nil
}

// next returns the next relevant line: its sample name and the rest of
// the line after the name. ok is false at the end of the data, which
// must end with '\n'. Irrelevant lines are skipped on their first bytes.
func (l *lexer) next() (sn sampleName, rest []byte, ok bool) {
	data := l.data
	for pos := l.pos; pos < len(data); {
		nl := bytes.IndexByte(data[pos:], '\n')
		line := data[pos : pos+nl]
		pos += nl + 1
		l.line++
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
			l.sawServer = true
		case 's':
			if !bytes.HasPrefix(line, []byte("sglang:")) {
				continue
			}
			l.sawServer = true
		case 'p':
			if !bytes.HasPrefix(line, []byte(processStartTime)) {
				continue
			}
		default:
			continue
		}
		// The metric name: the longest run of unquoted name bytes. Runs of
		// lines share it, so compare with the last one before hashing.
		n := len(l.lastName)
		if n > 0 && len(line) >= n && bytes.Equal(line[:n], l.lastName) && (len(line) == n || !nameChar[line[n]]) {
			if !l.lastOK {
				continue
			}
			sn = l.lastSN
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
			l.lastName, l.lastSN, l.lastOK = line[:n], sn, ok
			if !ok {
				continue
			}
		}
		rest = line[n:]
		if len(rest) > 0 && rest[0] == '"' {
			continue // name continued in quotes: not an unquoted relevant name
		}
		l.pos = pos
		return sn, rest, true
	}
	l.pos = len(data)
	return sampleName{}, nil, false
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

func (l *lexer) syntaxErr(msg string, args ...any) error {
	for i, a := range args {
		switch v := a.(type) {
		case string:
			args[i] = shortPrefix([]byte(v))
		case []byte:
			args[i] = shortPrefix(v)
		}
	}
	return &ScanError{Reason: ErrSyntax, Line: l.line, Msg: fmt.Sprintf(msg, args...)}
}

// labels parses the labels of rest[i:] (i is just after '{') up to
// '}' into l.pairs (their names unescaped into l.names), and returns the
// index after '}'. It
// follows expfmt's grammar: blanks around names, '=', values and commas; a
// trailing comma; names unquoted or (partly) quoted, with \\, \" and \n
// escapes in quotes; quoted values with the same escapes; names and values
// valid UTF-8; no __name__ label.
func (l *lexer) labels(rest []byte, i int) (int, error) {
	l.pairs = l.pairs[:0]
	l.names = l.names[:0]
	blockStart := i - 1
	for {
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) {
			return 0, l.syntaxErr("unterminated label set")
		}
		if rest[i] == '}' {
			return i + 1, nil
		}
		// Label name, as expfmt's readTokenAsLabelName reads it.
		start := i
		if c := rest[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '"') {
			return 0, l.syntaxErr("invalid label name")
		}
		nameOff := len(l.names)
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
					return 0, l.syntaxErr("invalid escape sequence '\\%c' in label name", c)
				}
				l.names = append(l.names, c)
				escaped = false
			case c == '"':
				quoted = !quoted
				closed = !quoted
			case c == '\\':
				escaped = true
			default:
				l.names = append(l.names, c)
			}
			i++
			if closed {
				break
			}
			if i == len(rest) {
				return 0, l.syntaxErr("unterminated label name")
			}
			if !quoted && !labelNameCont(rest[i]) {
				break
			}
		}
		name := l.names[nameOff:len(l.names):len(l.names)]
		if len(name) == 0 {
			return 0, l.syntaxErr("invalid label name")
		}
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) || rest[i] != '=' {
			return 0, l.syntaxErr("expected '=' after label name %q", name)
		}
		i++
		if string(name) == "__name__" {
			return 0, l.syntaxErr("label name \"__name__\" is reserved")
		}
		if !utf8.Valid(name) {
			return 0, l.syntaxErr("invalid label name %q", name)
		}
		// Label value.
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) || rest[i] != '"' {
			return 0, l.syntaxErr("expected '\"' at start of label value")
		}
		i++
		vs := i
		for {
			if i == len(rest) {
				return 0, l.syntaxErr("unterminated label value")
			}
			c := rest[i]
			if c == '"' {
				break
			}
			if c == '\\' {
				i++
				if i == len(rest) {
					return 0, l.syntaxErr("unterminated label value")
				}
				if d := rest[i]; d != '\\' && d != '"' && d != 'n' {
					return 0, l.syntaxErr("invalid escape sequence '\\%c' in label value", d)
				}
			}
			i++
		}
		value := rest[vs:i]
		i++
		if !utf8.Valid(value) {
			return 0, l.syntaxErr("invalid label value %q", value)
		}
		l.pairs = append(l.pairs, pair{name: name, value: value, start: start - blockStart, end: i - blockStart})
		for i < len(rest) && (rest[i] == ' ' || rest[i] == '\t') {
			i++
		}
		if i == len(rest) {
			return 0, l.syntaxErr("unterminated label set")
		}
		switch rest[i] {
		case ',':
			i++
		case '}':
			return i + 1, nil
		default:
			return 0, l.syntaxErr("unexpected end of label value %q", value)
		}
	}
}

func labelNameCont(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '"'
}

// value parses what follows the label block: blanks, the value, and
// optionally blanks and an integer timestamp ending the line.
func (l *lexer) value(tail []byte) (float64, error) {
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
		return 0, l.syntaxErr("expected a float as value, got %q", tail[i:j])
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
		return 0, l.syntaxErr("expected an integer timestamp, got %q", tail[j:e])
	}
	if e != len(tail) {
		return 0, l.syntaxErr("spurious text after the timestamp: %q", tail[e:])
	}
	return val, nil
}
