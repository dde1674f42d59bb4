package ingest

import (
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
	"github.com/delta-exporter/delta-exporter/parser"
)

// info reads a capture sidecar (docs/capture.md). What it says narrows
// the request's candidates (docs/attribution.md): token counts are
// fingerprints; the server's own queue time (server_metrics) must agree
// with the queue observation; the proxy's receive, first-byte and last-byte times bound
// the server's TTFT and e2e from above, and bracket its arrival for the
// time checks (A6); capture's after and first scrapes dated past the last
// and first byte vouch for the request's windows (A1); an after that
// capture could not confirm keeps the request out of the finish matching; an after_error (no after will come)
// ends the request as unpaired as soon as its before is known, rather than
// after --pairing.ttl.
func (in *Ingester) info(name string, n parser.Name, data []byte) {
	var v struct {
		ReceivedAt    time.Time `json:"received_at"`
		FirstByteAt   time.Time `json:"first_byte_at"`
		LastByteAt    time.Time `json:"last_byte_at"`
		AfterObserved *bool     `json:"after_observed"`
		AfterError    string    `json:"after_error"`
		ServerID      string    `json:"server_id"`
		Model         string    `json:"model"`
		Stream        bool      `json:"stream"`
		ClientGone    bool      `json:"client_disconnected"`
		UpstreamError string    `json:"upstream_error"`
		Usage         *struct {
			PromptTokens     *int `json:"prompt_tokens"`
			CompletionTokens *int `json:"completion_tokens"`
		} `json:"usage"`
		// vLLM's per-request metrics object. Its queue_time_ms is the
		// engine's queue interval, the one the queue histogram observes;
		// its time_to_first_token_ms counts from scheduling, not arrival,
		// and is not used.
		ServerMetrics *struct {
			QueueTimeMs *float64 `json:"queue_time_ms"`
		} `json:"server_metrics"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		in.metrics.SnapshotRejected(name, snapfile.ParseError, err)
		in.log.Warn("info file rejected", "file", name, "err", err)
		return
	}
	if _, done := in.decided[n.RequestID]; done {
		return
	}
	// The info may be read before the before: in a scan sorted by name
	// times, its time (the proxy's receipt) can precede the before's.
	h := in.half(n.RequestID)
	// Capture suffixes the names of a request whose id the server gave
	// another request too ({server_id}+{8 hex}); the server's id is the
	// one to publish.
	if sid := v.ServerID; sid != "" && strings.HasPrefix(n.RequestID, sid+"+") {
		h.serverID = sid
	}
	if v.AfterError != "" {
		h.abandoned = true
		_ = in.dropAbandoned(n.RequestID, h)
	}
	if v.AfterObserved != nil && !*v.AfterObserved {
		h.finishUnobserved = true
	}
	h.afterObserved = v.AfterObserved != nil && *v.AfterObserved
	h.lastByte = v.LastByteAt
	if v.Stream {
		// A JSON body's first byte comes with its last: it says nothing
		// of the first token.
		h.firstByte = v.FirstByteAt
	}
	// The server's arrival is after capture received the request and
	// before the first response byte (the last, when none is recorded).
	h.arrivalLo, h.arrivalHi = v.ReceivedAt, v.FirstByteAt
	if h.arrivalHi.IsZero() {
		h.arrivalHi = v.LastByteAt
	}
	if !v.ReceivedAt.IsZero() {
		if d := v.FirstByteAt.Sub(v.ReceivedAt); !v.FirstByteAt.IsZero() && d > 0 {
			h.maxTTFT = d.Seconds()
		}
		if d := v.LastByteAt.Sub(v.ReceivedAt); !v.LastByteAt.IsZero() && d > 0 {
			h.maxE2E = d.Seconds()
		}
	}
	h.proxy = proxyTimes(v.Model, v.Stream, v.ClientGone || v.UpstreamError != "", v.ReceivedAt, v.FirstByteAt, v.LastByteAt)
	if sm := v.ServerMetrics; sm != nil && sm.QueueTimeMs != nil && *sm.QueueTimeMs >= 0 && !math.IsInf(*sm.QueueTimeMs, 0) {
		q := *sm.QueueTimeMs / 1000
		h.serverQueue = &q
	}
	if v.Usage == nil || v.Usage.PromptTokens == nil || v.Usage.CompletionTokens == nil {
		return
	}
	p, g := *v.Usage.PromptTokens, *v.Usage.CompletionTokens
	if p < 0 || g < 0 {
		return
	}
	h.tokens = &attribution.Tokens{Prompt: p, Generation: g}
}

// dropAbandoned publishes an abandoned request as unpaired once its before
// is known (an info without one waits for it: a stream's before is usually
// written, and named, before its info), and reports whether it did. A half
// with an after after all is paired as usual.
func (in *Ingester) dropAbandoned(id string, h *half) bool {
	if !h.abandoned || h.beforeName == "" || h.afterName != "" {
		return false
	}
	in.waiting.remove(id)
	in.givenUp(id, h)
	in.updatePending()
	return true
}

// proxyTimes are the client-side latencies of a response the proxy relayed
// whole: to its first byte for a stream (for a JSON body the first byte
// comes with the last, so it says nothing of the first token), to its last
// byte for any. A response cut short by either side has none.
func proxyTimes(model string, stream, cut bool, received, firstByte, lastByte time.Time) attribution.ProxyTimes {
	p := attribution.ProxyTimes{Model: model}
	if cut || received.IsZero() {
		return p
	}
	if d := firstByte.Sub(received); stream && !firstByte.IsZero() && d >= 0 {
		p.TTFT, p.HasTTFT = d.Seconds(), true
	}
	if d := lastByte.Sub(received); !lastByte.IsZero() && d >= 0 {
		p.E2E, p.HasE2E = d.Seconds(), true
	}
	return p
}
