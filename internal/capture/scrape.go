package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Reasons a scrape of the upstream /metrics is not usable. They are the
// values of the reason label of the scrape and snapshot failure counters.
const (
	reasonTimeout   = "timeout"    // the scrape did not finish within --upstream.scrape-timeout
	reasonError     = "error"      // connection or transport error
	reasonStatus    = "bad_status" // HTTP status other than 200
	reasonEmpty     = "empty"      // 200 with an empty body
	reasonInvalid   = "invalid"    // not the Prometheus text format, or cut short
	reasonTooLarge  = "too_large"  // larger than the configured limit
	reasonNoScrape  = "no_scrape"  // no successful scrape was available when needed
	reasonWrite     = "write_error"
	reasonUnwritten = "not_written" // the pair was abandoned: see Info.AfterError
)

// scrape is one GET of the upstream metrics endpoint. Several requests
// share one scrape: whoever asks for a scrape while none is running starts
// one; whoever asks while one runs gets the next one, which starts when the
// running one ends. So at most one scrape is in flight at any time, and a
// scrape handed out by (*scraper).next always started after the call.
type scrape struct {
	done chan struct{} // closed when the fields below are set

	started   time.Time // when the GET was sent
	responded time.Time // when the response headers arrived; the content was generated before
	// data is the content of the snapshot files: the header line
	// (parser.ScrapeStartedPrefix, the start time) followed by body. body is the
	// complete, validated exposition as the upstream sent it, a slice of
	// data. Both are nil on failure.
	data, body []byte
	failure    string // one of the reason constants; "" on success
	err        error

	// e2eCount is the sum over all series of the finish histogram's count
	// (vllm:e2e_request_latency_seconds_count, or SGLang's); hasE2E is false
	// when the scrape has no such family.
	e2eCount float64
	hasE2E   bool

	// file is the name of a snapshot file holding body, once one is
	// written: further names are hard links to it.
	file atomic.Pointer[string]
}

func (s *scrape) ok() bool { return s.failure == "" }

// scraper runs the scrapes and remembers the most recent successful one.
type scraper struct {
	url      string
	client   *http.Client
	timeout  time.Duration
	maxBytes int64
	observe  func(s *scrape) // called once per finished scrape, before done is closed

	// budget estimates each scrape's cost to the upstream and, when its
	// share is positive, bounds the share of time the upstream spends
	// answering scrapes: a scrape waits for credit before it is sent.
	budget *budget
	// waited is called with how long a scrape waited for the budget;
	// spent with each scrape's estimated cost.
	waited, spent func(time.Duration)

	mu      sync.Mutex
	running *scrape // the scrape in flight (or waiting for the budget), nil if none
	sending bool    // running has been sent: callers join queued
	queued  *scrape // the scrape that starts when running ends, nil if nobody asked

	// latest is the successful scrape with the latest start. Because scrapes
	// never overlap, it is also the last one to have finished.
	latest atomic.Pointer[scrape]
}

// next returns a scrape that starts no earlier than the call. The caller
// waits on its done channel; the scrape ends within the scrape timeout.
func (sc *scraper) next() *scrape {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.running == nil {
		sc.running, sc.sending = &scrape{done: make(chan struct{})}, false
		go sc.run(sc.running)
		return sc.running
	}
	if !sc.sending {
		// Still waiting for the budget, not sent: it starts after this
		// call, so this caller shares it (coalescing).
		return sc.running
	}
	if sc.queued == nil {
		sc.queued = &scrape{done: make(chan struct{})}
	}
	return sc.queued
}

func (sc *scraper) run(s *scrape) {
	for s != nil {
		if sc.budget.bounded() {
			if d := sc.budget.wait(time.Now()); d > 0 {
				time.Sleep(d)
				if sc.waited != nil {
					sc.waited(d)
				}
			}
		}
		sc.mu.Lock()
		sc.sending = true
		sc.mu.Unlock()
		sc.do(s)
		if !s.started.IsZero() {
			if cost := sc.budget.spend(s.started, time.Since(s.started)); sc.spent != nil {
				sc.spent(cost)
			}
		}
		if s.ok() {
			sc.latest.Store(s)
		}
		if sc.observe != nil {
			sc.observe(s)
		}
		close(s.done)
		sc.mu.Lock()
		s, sc.queued = sc.queued, nil
		sc.running, sc.sending = s, false
		sc.mu.Unlock()
	}
}

// budget is a token bucket of the upstream's time: it fills at share
// seconds per second, up to burst, and every scrape takes its cost. A
// scrape is sent only with the bucket not in debt.
//
// The cost of a scrape is the shortest duration (sent to body read) of
// the last costWindow scrapes. A scrape's duration is at least the time
// the upstream spent rendering it, which hardly varies from one scrape to
// the next (the same families, 2-3 ms of Python for vLLM's); what varies
// is the wait in the upstream's event loop behind its own work, which is
// not time taken from it. Measured on the realistic upstream at 64
// streams, durations were 2-10 times the render time, and charging them
// whole left too few scrapes to attribute anything. When the upstream
// slows down (every recent scrape is slower), the cost rises and capture
// scrapes less often.
type budget struct {
	share float64       // of one core's time
	burst time.Duration // the most credit saved while scrapes are not needed

	mu     sync.Mutex
	credit time.Duration // may go negative: the debt of the last scrape
	at     time.Time     // when credit was last brought up to date
	recent [costWindow]time.Duration
	n      int // scrapes seen
}

const costWindow = 16

// maxBudgetWait bounds the wait for the budget: an upstream whose every
// scrape times out (1 s) would otherwise be scraped every 50 s at 2 %,
// and its recovery, and the proxy's shutdown, would wait that long.
const maxBudgetWait = 5 * time.Second

// bounded: the budget limits scrapes (a share of 0 or less, or no
// budget, only estimates their cost).
func (b *budget) bounded() bool { return b != nil && b.share > 0 }

func newBudget(share float64) *budget {
	return &budget{share: share, burst: time.Duration(share * float64(time.Second)), credit: time.Duration(share * float64(time.Second))}
}

// refill brings credit up to now; b.mu is held.
func (b *budget) refill(now time.Time) {
	if !b.at.IsZero() && now.After(b.at) {
		b.credit = min(b.burst, b.credit+time.Duration(float64(now.Sub(b.at))*b.share))
	}
	if now.After(b.at) {
		b.at = now
	}
}

// wait returns how long from now a scrape must wait for the bucket to be
// out of debt.
func (b *budget) wait(now time.Time) time.Duration {
	if !b.bounded() {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.credit >= 0 {
		return 0
	}
	return min(maxBudgetWait, time.Duration(float64(-b.credit)/b.share))
}

// spend takes the cost of a scrape of duration d from the bucket, and
// returns that cost.
func (b *budget) spend(started time.Time, d time.Duration) time.Duration {
	if b == nil {
		return d
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bounded() {
		b.refill(started)
	}
	b.recent[b.n%costWindow] = d
	b.n++
	cost := d
	for _, r := range b.recent[:min(b.n, costWindow)] {
		cost = min(cost, r)
	}
	b.credit -= cost
	return cost
}

func (sc *scraper) do(s *scrape) {
	ctx, cancel := context.WithTimeout(context.Background(), sc.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sc.url, nil)
	if err != nil {
		s.failure, s.err = reasonError, err
		return
	}
	// The classic text format: what the snapshot files hold. No
	// compression: it costs the server CPU and buys nothing on a local link.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	req.Header.Set("Accept-Encoding", "identity")
	s.started = time.Now()
	resp, err := sc.client.Do(req)
	if err != nil {
		s.fail(ctx, err)
		return
	}
	s.responded = time.Now()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.failure, s.err = reasonStatus, fmt.Errorf("metrics endpoint answered %s", resp.Status)
		return
	}
	if resp.ContentLength > sc.maxBytes {
		s.failure, s.err = reasonTooLarge, fmt.Errorf("metrics body of %d bytes exceeds %d", resp.ContentLength, sc.maxBytes)
		return
	}
	// The file content is read into one buffer behind the header line:
	// no copy. A known length is read into a buffer of exactly that size.
	var hdr [len(parser.ScrapeStartedPrefix) + len(time.RFC3339Nano) + 8]byte
	head := parser.AppendScrapeStarted(hdr[:0], s.started)
	var data []byte
	if cl := resp.ContentLength; cl > 0 {
		data = make([]byte, len(head)+int(cl))
		copy(data, head)
		if _, err := io.ReadFull(resp.Body, data[len(head):]); err != nil {
			s.fail(ctx, err)
			return
		}
	} else {
		buf := bytes.NewBuffer(append(make([]byte, 0, 64<<10), head...))
		n, err := buf.ReadFrom(io.LimitReader(resp.Body, sc.maxBytes+1))
		if err != nil {
			s.fail(ctx, err)
			return
		}
		if n > sc.maxBytes {
			s.failure, s.err = reasonTooLarge, fmt.Errorf("metrics body exceeds %d bytes", sc.maxBytes)
			return
		}
		data = buf.Bytes()
	}
	body := data[len(head):]
	e2e, has, err := checkExposition(body)
	if err != nil {
		s.failure, s.err = reasonInvalid, err
		if len(body) == 0 {
			s.failure = reasonEmpty
		}
		return
	}
	s.data, s.body, s.e2eCount, s.hasE2E = data, body, e2e, has
}

func (s *scrape) fail(ctx context.Context, err error) {
	s.failure, s.err = reasonError, err
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		s.failure = reasonTimeout
	}
}

// e2eFamilies are the finish histograms whose count tells that a request's
// finish observation has landed.
var e2eFamilies = [][]byte{
	[]byte("vllm:e2e_request_latency_seconds_count"),
	[]byte("sglang:e2e_request_latency_seconds_count"),
}

func isE2E(name []byte) bool {
	for _, fam := range e2eFamilies {
		if bytes.Equal(name, fam) {
			return true
		}
	}
	return false
}

var errEmpty = errors.New("empty exposition")

// checkExposition checks that body is a complete exposition in the
// Prometheus text format, line by line: comments, and samples made of a
// metric name, optional labels, a float value and an optional timestamp,
// each line ended by a newline. It rejects what a failing endpoint or a cut
// connection produces (empty bodies, HTML or JSON error pages, curl's error
// text, a last line without its newline) without building the families. It
// returns the summed count of the finish histogram.
func checkExposition(body []byte) (e2e float64, hasE2E bool, err error) {
	if len(body) == 0 {
		return 0, false, errEmpty
	}
	if body[len(body)-1] != '\n' {
		return 0, false, errors.New("exposition does not end with a newline")
	}
	samples := 0
	for lineNo := 1; len(body) > 0; lineNo++ {
		i := bytes.IndexByte(body, '\n')
		line := body[:i]
		body = body[i+1:]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(bytes.TrimSpace(line)) == 0 || line[0] == '#' {
			continue
		}
		name, value, err := splitSample(line, isE2E)
		if err != nil {
			return 0, false, fmt.Errorf("line %d: %w", lineNo, err)
		}
		samples++
		if isE2E(name) {
			e2e += value
			hasE2E = true
		}
	}
	if samples == 0 {
		return 0, false, errors.New("exposition has no samples")
	}
	return e2e, hasE2E, nil
}

// splitSample parses one sample line: name{labels} value [timestamp]. It
// parses the value only when wantValue is set; otherwise it only checks
// its syntax (the scan then allocates nothing).
func splitSample(line []byte, wantValue func(name []byte) bool) (name []byte, value float64, err error) {
	i := 0
	for i < len(line) && isNameByte(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return nil, 0, errors.New("sample line does not start with a metric name")
	}
	name = line[:i]
	if i < len(line) && line[i] == '{' {
		end, err := skipLabels(line, i)
		if err != nil {
			return nil, 0, err
		}
		i = end
	}
	rest := line[i:]
	if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return nil, 0, errors.New("no value after the metric name or labels")
	}
	val, rest := nextField(rest)
	ts, rest := nextField(rest)
	if len(val) == 0 || len(bytes.TrimSpace(rest)) != 0 {
		return nil, 0, errors.New("sample line needs a value and at most a timestamp")
	}
	if !isFloat(val) {
		return nil, 0, fmt.Errorf("bad sample value %q", val)
	}
	if len(ts) > 0 && !isInt(ts) {
		return nil, 0, fmt.Errorf("bad timestamp %q", ts)
	}
	if wantValue(name) {
		if value, err = strconv.ParseFloat(string(val), 64); err != nil {
			return nil, 0, fmt.Errorf("bad sample value: %w", err)
		}
	}
	return name, value, nil
}

// nextField skips blanks and returns the next blank-separated field.
func nextField(b []byte) (field, rest []byte) {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	i := 0
	for i < len(b) && b[i] != ' ' && b[i] != '\t' {
		i++
	}
	return b[:i], b[i:]
}

// isFloat accepts the values of the text format: decimal floats with an
// optional exponent, and NaN and ±Inf in any case.
func isFloat(b []byte) bool {
	if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
		b = b[1:]
	}
	if bytes.EqualFold(b, []byte("inf")) || bytes.EqualFold(b, []byte("infinity")) || bytes.EqualFold(b, []byte("nan")) {
		return true
	}
	digits := 0
	for len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		b, digits = b[1:], digits+1
	}
	if len(b) > 0 && b[0] == '.' {
		b = b[1:]
		for len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
			b, digits = b[1:], digits+1
		}
	}
	if digits == 0 {
		return false
	}
	if len(b) > 0 && (b[0] == 'e' || b[0] == 'E') {
		b = b[1:]
		if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
			b = b[1:]
		}
		return isDigits(b)
	}
	return len(b) == 0
}

func isInt(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	return isDigits(b)
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

func isNameByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		return true
	case c >= '0' && c <= '9':
		return !first
	}
	return false
}

// skipLabels returns the index just past the '}' closing the label set that
// opens at line[open]. Label values are quoted and may hold escaped quotes
// and any other byte, '}' included.
func skipLabels(line []byte, open int) (int, error) {
	for i := open + 1; i < len(line); i++ {
		switch line[i] {
		case '}':
			return i + 1, nil
		case '"':
			// A value: jump to its closing quote, one not escaped by an odd
			// number of backslashes.
			for {
				j := bytes.IndexByte(line[i+1:], '"')
				if j < 0 {
					return 0, errors.New("unterminated label set")
				}
				i += 1 + j
				k := i - 1
				for k > open && line[k] == '\\' {
					k--
				}
				if (i-1-k)%2 == 0 {
					break
				}
			}
		}
	}
	return 0, errors.New("unterminated label set")
}
