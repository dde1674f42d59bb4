package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// maxSSELine bounds one server-sent-event line kept to read the id, usage
// and metrics; longer lines are passed on but not read.
const maxSSELine = 1 << 20

// maxIDLines is how many data lines of a stream are read looking for the
// id before giving up (vLLM puts it in the first).
const maxIDLines = 8

// An inference request is followed by two goroutines that share none of
// its state:
//
//   - The serving goroutine (ServeHTTP, and the ReverseProxy it calls,
//     which calls modifyResponse, errorHandler and the bodyWatcher in the
//     same goroutine) owns the request's tracker. It notes what the
//     response shows as the bytes pass.
//   - The recorder goroutine (record) writes the request's files. It owns
//     a recorder, built only from values the serving goroutine sends it:
//     the arrival, when it is started; then messages on a channel, a
//     stream's id as soon as it is known, and what the response showed
//     once it is over.
//
// The recorder never holds the tracker, only the copies it was sent. What
// a copy refers to (the body, usage, srvMet, the first scrape) nobody
// changes once it is sent, and the tracker lets go of the body it hands
// over. No variable is written by one goroutine and read by the other, so
// no data race between them is possible whatever the timing. The channel
// keeps the order of the messages, so the recorder cannot take a stream
// whose id came first for one whose end came first.
//
// What both use is the Proxy's, safe for concurrent use (the scraper, the
// writer, the metrics, usedIDs), and scrapes, which are not changed once
// done is closed.

// arrival is what is known of an inference request when it arrives.
type arrival struct {
	receivedAt time.Time
	method     string
	path       string
	before     *scrape // the latest successful scrape then; nil: none yet
}

// seen is what the response showed, as far as it has been read. The
// recorder is sent copies. apply replaces usage and srvMet instead of
// changing them, and the body is sent only once it is whole.
type seen struct {
	refused     string // the request was not forwarded: its outcome (Proxy.readBody)
	status      int    // upstream status; 0 if none came
	unavailable bool   // the upstream could not be reached
	clientGone  bool   // the client left before the end of the response
	bodyErr     error
	stream      bool // text/event-stream response
	encoded     bool // compressed body: not read
	firstByteAt time.Time
	lastByteAt  time.Time
	first       *scrape

	rawID    string
	model    string
	usage    *Usage
	srvMet   map[string]any
	body     []byte // non-streaming body, up to MaxBodyCapture
	bodyFull bool   // body was cut at MaxBodyCapture
}

// message is what the serving goroutine sends the recorder: for a stream
// whose id shows before its end, one with the id and the first scrape
// (rawID and first, nothing else set); for every request, one once the
// response is over, last.
type message struct {
	seen
	over bool // the response is over: every field is final
}

// tracker follows one request in the goroutine serving it, and only
// there (see above).
type tracker struct {
	p         *Proxy
	ctx       context.Context // the client's request context
	inference bool
	arrival
	seen

	idLines  int
	partial  []byte // start of an SSE line not ended yet
	skipping bool   // inside an SSE line too long to keep
	// toRecorder carries the messages to the recorder goroutine; nil until
	// it is started, when there is work for it: when a stream's id is
	// known, or when the response is over.
	toRecorder chan<- message
}

// done runs when ServeHTTP returns (or unwinds from ReverseProxy's abort
// panic): every serving-side field is final.
func (t *tracker) done() {
	kind := "other"
	if t.inference {
		kind = "inference"
	}
	t.p.m.requests.WithLabelValues(kind, t.outcome()).Inc()
	if t.inference {
		t.p.inFlight.Add(-1)
		t.p.m.inFlight.Dec()
		t.send(message{seen: t.seen, over: true})
		t.body = nil // the recorder's now
	}
}

// send sends m to the recorder, starting it on the first message.
// ServeHTTP counted it in the proxy's wait group. The channel has room for
// every message still to come (an early id and the end, or the end
// alone), so send never waits for the recorder.
func (t *tracker) send(m message) {
	if t.toRecorder == nil {
		room := 2
		if m.over {
			room = 1
		}
		ch := make(chan message, room)
		t.toRecorder = ch
		go t.p.record(t.arrival, ch)
	}
	t.toRecorder <- m
}

func (s *seen) outcome() string {
	switch {
	case s.refused != "":
		return s.refused
	case s.unavailable:
		return outcomeUnavailable
	case s.clientGone:
		return outcomeClientGone
	case s.status < 200 || s.status > 299:
		return outcomeErrorStatus
	case s.bodyErr != nil:
		return outcomeUpstreamBody
	}
	return outcomeOK
}

// bodyWatcher wraps an inference response body: it notes the first and
// last byte, starts the first scrape, and reads the id, usage and metrics
// as the bytes pass. It is read and closed by the serving goroutine.
//
// Nothing it does delays a chunk on its way to the client: ReverseProxy
// writes (and flushes) each chunk Read returns before it calls Read again,
// so the work on a stream's chunk (starting the first scrape, parsing the
// events, starting the goroutine that writes the files) waits in pending
// until the next Read or Close, when the chunk has been passed on.
type bodyWatcher struct {
	rc  io.ReadCloser
	t   *tracker
	eof bool // Read has returned an error, or Close was called

	pending    []byte // stream bytes passed on but not looked at yet
	firstStart bool   // the first scrape is due
}

func (b *bodyWatcher) Read(p []byte) (int, error) {
	b.catchUp()
	n, err := b.rc.Read(p)
	t := b.t
	if n > 0 {
		if t.firstByteAt.IsZero() {
			t.firstByteAt = time.Now()
			// The server observed TTFT before sending this byte: a scrape
			// started from now on contains it.
			b.firstStart = t.stream
		}
		if !t.encoded {
			if t.stream {
				b.pending = append(b.pending, p[:n]...)
			} else {
				t.consumeBody(p[:n])
			}
		}
	}
	if err != nil && !b.eof {
		b.eof = true
		t.lastByteAt = time.Now()
		if err != io.EOF {
			if t.ctx.Err() != nil {
				t.clientGone = true
			} else {
				t.bodyErr = err
			}
		}
	}
	return n, err
}

// catchUp does the work on the bytes passed on since the last call.
func (b *bodyWatcher) catchUp() {
	t := b.t
	if b.firstStart {
		b.firstStart = false
		t.first = t.p.scr.next()
	}
	if len(b.pending) > 0 {
		t.consumeSSE(b.pending)
		b.pending = b.pending[:0]
	}
}

// Close is called by ReverseProxy when the copy ends. Before the end of
// the body that means the client side failed: the client went away.
func (b *bodyWatcher) Close() error {
	b.catchUp()
	if !b.eof {
		b.eof = true
		b.t.lastByteAt = time.Now()
		b.t.clientGone = true
	}
	return b.rc.Close()
}

func (t *tracker) consumeBody(data []byte) {
	if t.bodyFull {
		return
	}
	room := t.p.cfg.MaxBodyCapture - len(t.body)
	if len(data) > room {
		data = data[:room]
		t.bodyFull = true
	}
	t.body = append(t.body, data...)
}

func (t *tracker) consumeSSE(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			if !t.skipping {
				if len(t.partial)+len(data) > maxSSELine {
					t.partial, t.skipping = t.partial[:0], true
				} else {
					t.partial = append(t.partial, data...)
				}
			}
			return
		}
		line := data[:i]
		data = data[i+1:]
		if t.skipping {
			t.skipping = false
			continue
		}
		if len(t.partial) > 0 {
			if len(t.partial)+len(line) > maxSSELine {
				t.partial = t.partial[:0]
				continue
			}
			t.partial = append(t.partial, line...)
			line = t.partial
		}
		t.sseLine(line)
		t.partial = t.partial[:0]
	}
}

var (
	dataPrefix  = []byte("data:")
	doneMarker  = []byte("[DONE]")
	usageKey    = []byte(`"usage"`)
	metricsKey  = []byte(`"metrics"`)
	responseKey = []byte(`"response"`)
)

func (t *tracker) sseLine(line []byte) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	payload, ok := bytes.CutPrefix(line, dataPrefix)
	if !ok {
		return
	}
	payload = bytes.TrimLeft(payload, " ")
	if len(payload) == 0 || bytes.Equal(payload, doneMarker) {
		return
	}
	if t.rawID == "" && t.idLines < maxIDLines {
		t.idLines++
		t.takeFields(payload)
		if t.rawID != "" {
			// The recorder writes the before and first files at once.
			t.send(message{seen: seen{rawID: t.rawID, first: t.first}})
		}
		return
	}
	if bytes.Contains(payload, usageKey) || bytes.Contains(payload, metricsKey) || bytes.Contains(payload, responseKey) {
		t.takeFields(payload)
	}
}

// respFields is what capture reads from a response body or stream event.
// Chat and text completions carry these at the top level; the Responses
// API nests them in "response".
type respFields struct {
	ID       string         `json:"id"`
	Model    string         `json:"model"`
	Usage    *usageJSON     `json:"usage"`
	Metrics  map[string]any `json:"metrics"`
	Response *struct {
		ID      string         `json:"id"`
		Model   string         `json:"model"`
		Usage   *usageJSON     `json:"usage"`
		Metrics map[string]any `json:"metrics"`
	} `json:"response"`
}

type usageJSON struct {
	PromptTokens     *int `json:"prompt_tokens"`
	CompletionTokens *int `json:"completion_tokens"`
	TotalTokens      *int `json:"total_tokens"`
	InputTokens      *int `json:"input_tokens"`
	OutputTokens     *int `json:"output_tokens"`
}

func (u *usageJSON) usage() *Usage {
	if u == nil {
		return nil
	}
	pick := func(a, b *int) (int, bool) {
		if a != nil {
			return *a, true
		}
		if b != nil {
			return *b, true
		}
		return 0, false
	}
	pt, okP := pick(u.PromptTokens, u.InputTokens)
	ct, okC := pick(u.CompletionTokens, u.OutputTokens)
	if !okP && !okC {
		return nil
	}
	out := &Usage{PromptTokens: pt, CompletionTokens: ct}
	if u.TotalTokens != nil {
		out.TotalTokens = *u.TotalTokens
	}
	return out
}

// takeFields reads the fields from one JSON object. Type errors in fields
// capture does not need leave the others filled; a body that is not JSON
// leaves them all unset.
func (s *seen) takeFields(data []byte) {
	var f respFields
	if err := json.Unmarshal(data, &f); err != nil && !isTypeError(err) {
		return
	}
	s.apply(&f)
}

func (s *seen) apply(f *respFields) {
	id, model, usage, met := f.ID, f.Model, f.Usage.usage(), f.Metrics
	if r := f.Response; r != nil {
		if id == "" {
			id = r.ID
		}
		if model == "" {
			model = r.Model
		}
		if usage == nil {
			usage = r.Usage.usage()
		}
		if met == nil {
			met = r.Metrics
		}
	}
	if s.rawID == "" {
		s.rawID = id
	}
	if s.model == "" {
		s.model = model
	}
	if usage != nil {
		s.usage = usage
	}
	if met != nil {
		s.srvMet = met
	}
}

// readBody takes the fields from a non-streaming body. A body cut at
// MaxBodyCapture is read as far as it goes: the id comes first in the
// OpenAI format.
func (s *seen) readBody() {
	if s.stream || s.encoded || len(s.body) == 0 {
		return
	}
	if !s.bodyFull {
		s.takeFields(s.body)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(s.body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return
	}
	var f respFields
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			break
		}
		var dst any
		switch key {
		case "id":
			dst = &f.ID
		case "model":
			dst = &f.Model
		default:
			dst = new(json.RawMessage)
		}
		if err := dec.Decode(dst); err != nil {
			break
		}
	}
	s.apply(&f)
}

// recorder writes one request's files, in a goroutine of its own (record).
// It owns everything it holds: the arrival and copies of what the
// response showed, sent by the serving goroutine.
type recorder struct {
	p *Proxy
	arrival
	seen
}

// record writes the request's files from the messages the serving
// goroutine sends. For a stream whose id is known early it writes the
// before and first files at once, so readers learn of the request while it
// runs. Otherwise nothing is written until the after scrape is secured, so
// a failing metrics endpoint leaves no half pair. Last come the info
// sidecar, then the after file.
func (p *Proxy) record(a arrival, msgs <-chan message) {
	defer p.wg.Done()
	r := &recorder{p: p, arrival: a}
	info := &Info{Version: InfoVersion, Method: r.method, Path: r.path, ReceivedAt: r.receivedAt.UTC()}
	// The messages come in the order they were sent: a stream's id, when
	// it showed before the end, comes first, however soon the end follows.
	m := <-msgs
	early := !m.over
	if early {
		r.seen = m.seen
		r.setID(info)
		r.writeOpening(info)
		m = <-msgs
	}
	r.seen = m.seen
	switch {
	case r.refused != "", r.unavailable, r.status == 0 && !r.clientGone:
		return // the request did not reach the server
	case r.status != 0 && (r.status < 200 || r.status > 299):
		return // an error answer: the server observed no request
	}
	if !early {
		r.readBody()
		r.setID(info)
	}
	info.Model = r.model
	info.Stream = r.stream
	info.Status = r.status
	info.ClientDisconnected = r.clientGone
	if r.bodyErr != nil {
		info.UpstreamError = r.bodyErr.Error()
	}
	info.FirstByteAt = utc(r.firstByteAt)
	info.LastByteAt = utc(r.lastByteAt)
	info.Usage = r.usage
	info.ServerMetrics = r.srvMet

	var after *scrape
	switch {
	case r.before == nil:
		if !early {
			p.m.failed.WithLabelValues(string(parser.Before), reasonNoScrape).Inc()
		}
		info.AfterError = "no scrape of the upstream metrics had succeeded when the request arrived"
	case early && info.Before == nil:
		info.AfterError = "the before snapshot could not be written"
	default:
		var observed bool
		var failure string
		after, observed, failure = r.awaitAfter()
		if after == nil {
			info.AfterError = "no scrape of the upstream metrics succeeded after the response: " + failure
			p.m.failed.WithLabelValues(string(parser.After), failure).Inc()
			break
		}
		info.AfterObserved = observed
		if !early {
			r.writeOpening(info)
			if info.Before == nil {
				after = nil
				info.AfterError = "the before snapshot could not be written"
			}
		}
	}
	if after == nil {
		p.m.failed.WithLabelValues(string(parser.After), reasonUnwritten).Inc()
	}
	r.writeClosing(info, after)
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

func (r *recorder) setID(info *Info) {
	if r.rawID == "" {
		info.RequestID, info.IDSource = generatedID(), "generated"
		return
	}
	id := SanitizeID(r.rawID)
	if id != r.rawID {
		r.p.m.idsSanitized.Inc()
	}
	info.RequestID, info.IDSource = r.p.usedIDs.claim(id, time.Now()), "response"
	if info.RequestID != id {
		// Another request had this id: these names carry a suffix.
		r.p.m.idsReused.Inc()
		info.ServerID = id
	}
	if info.RequestID != r.rawID {
		raw := r.rawID
		if len(raw) > 1024 {
			raw = raw[:1024]
		}
		info.UpstreamID = raw
	}
}

// writeOpening writes the before file and, for streams, the first file.
func (r *recorder) writeOpening(info *Info) {
	p := r.p
	if r.before == nil {
		p.m.failed.WithLabelValues(string(parser.Before), reasonNoScrape).Inc()
		return
	}
	info.Before = p.writeSnapshot(info.RequestID, parser.Before, r.before)
	if info.Before == nil || r.first == nil {
		return
	}
	<-r.first.done
	if !r.first.ok() {
		p.m.failed.WithLabelValues(string(parser.First), r.first.failure).Inc()
		return
	}
	info.First = p.writeSnapshot(info.RequestID, parser.First, r.first)
}

// writeClosing writes the info sidecar, then the after file (when after
// is not nil): a reader that sees the after can rely on the info being
// there. The after is first written to a temporary file, so that the info
// can tell whether it will exist.
func (r *recorder) writeClosing(info *Info, after *scrape) {
	p := r.p
	var tmp temp
	if after != nil {
		p.m.afterWaitSeconds.Observe(after.started.Sub(r.lastByteAt).Seconds())
		if !info.AfterObserved {
			p.m.afterUnobserved.Inc()
		}
		name := snapshotName(info.RequestID, parser.After, after)
		var err error
		if tmp, err = p.files.prepareScrape(name, after); err != nil {
			p.writeFailed(parser.After, name, err)
			info.AfterError = "writing the after snapshot failed"
		} else {
			info.After = ref(name, after)
		}
	}
	infoData, err := json.MarshalIndent(info, "", "  ")
	if err == nil {
		infoData = append(infoData, '\n')
		name := parser.FormatName(info.RequestID, parser.Info, r.receivedAt)
		if err = p.files.write(name, infoData); err != nil {
			p.writeFailed(parser.Info, name, err)
		} else {
			p.wrote(parser.Info)
		}
	}
	if tmp.name != "" && err != nil {
		// Without its info the after is not written: a reader that sees
		// an after relies on the info being there. The request's before,
		// if written, waits for --pairing.ttl in the exporter.
		p.files.discard(tmp)
		p.m.failed.WithLabelValues(string(parser.After), reasonUnwritten).Inc()
		return
	}
	if tmp.name != "" {
		if err := p.files.commit(tmp, info.After.File); err != nil {
			p.writeFailed(parser.After, info.After.File, err)
		} else {
			after.file.CompareAndSwap(nil, &info.After.File)
			p.wrote(parser.After)
		}
	}
}

// awaitAfter scrapes, starting after the end of the response, until the
// finish histogram's count is above the before's, polling with growing
// pauses for at most AfterTimeout. On timeout it returns the last
// successful scrape with observed=false; with no successful scrape it
// returns nil and the last failure reason.
func (r *recorder) awaitAfter() (after *scrape, observed bool, failure string) {
	p := r.p
	deadline := time.Now().Add(p.cfg.AfterTimeout)
	pause := 2 * time.Millisecond
	for {
		s := p.scr.next()
		<-s.done
		if s.ok() {
			after = s
			if !s.hasE2E {
				return s, false, "" // the server has no finish histogram to wait for
			}
			if s.e2eCount > r.before.e2eCount || (!r.before.hasE2E && s.e2eCount > 0) {
				return s, true, ""
			}
		} else {
			failure = s.failure
		}
		left := time.Until(deadline)
		if left <= 0 {
			return after, false, failure
		}
		timer := time.NewTimer(min(pause, left))
		<-timer.C
		pause = min(2*pause, 100*time.Millisecond)
	}
}

func ref(name string, s *scrape) *SnapshotRef {
	r := &SnapshotRef{File: name, ScrapeStartedAt: s.started.UTC(), ScrapeDoneAt: s.responded.UTC()}
	if s.hasE2E {
		c := s.e2eCount
		r.E2ECount = &c
	}
	return r
}

// writeSnapshot writes scrape s as the stage file of id, counting the
// result; it returns the reference, nil on failure.
func (p *Proxy) writeSnapshot(id string, stage parser.Stage, s *scrape) *SnapshotRef {
	name := snapshotName(id, stage, s)
	if err := p.files.writeScrape(name, s); err != nil {
		p.writeFailed(stage, name, err)
		return nil
	}
	p.wrote(stage)
	return ref(name, s)
}

// writeFailed counts a failed write. It logs a warning on the first
// failure after a success (a full disk fails every write) and debug lines
// after that.
func (p *Proxy) writeFailed(stage parser.Stage, name string, err error) {
	p.m.failed.WithLabelValues(string(stage), reasonWrite).Inc()
	if p.writeFailing.Swap(true) {
		p.log.Debug("writing snapshot failed", "stage", string(stage), "file", name, "err", err)
		return
	}
	p.log.Warn("writing snapshot failed", "stage", string(stage), "file", name, "err", err)
}

func (p *Proxy) wrote(stage parser.Stage) {
	p.m.written.WithLabelValues(string(stage)).Inc()
	if p.writeFailing.Swap(false) {
		p.log.Info("writing snapshots works again")
	}
}

func isTypeError(err error) bool {
	var te *json.UnmarshalTypeError
	return errors.As(err, &te)
}
