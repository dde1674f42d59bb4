package simulate

import (
	"encoding/json"
	"math"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// What Config.Capture adds: the proxy's view of each request, and the
// scrape times capture records. The proxy's clock is the simulation's.
// The small delays below (loopback hops, a scrape's duration, the
// transfer of its response) are drawn from crng so that runs without
// Capture are unchanged.

func (r *run) short(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.crng.Int64N(int64(hi-lo)+1))
}

func (r *run) observeDelay() time.Duration {
	return time.Duration(r.crng.Int64N(int64(r.cfg.ObserveDelay) + 1))
}

// arrive draws whether the request streams and when the proxy received it
// (a loopback hop before the server's arrival).
func (r *run) arrive(q *request) {
	q.stream, q.observed = true, true
	if !r.cfg.Capture {
		return
	}
	q.stream = r.crng.Float64() >= r.cfg.NonStreaming
	q.received = max(0, q.arrival-r.short(50*time.Microsecond, 400*time.Microsecond))
}

// observeFirst makes request i's TTFT observation at t (and, on a server
// that observes it then, its prefill time).
func (r *run) observeFirst(i int, t time.Duration) {
	q := &r.reqs[i]
	q.first = t
	model := r.cfg.Models[q.model]
	if r.cfg.Semantics.PrefillAtFirstToken {
		q.prefillVal = q.ttft + q.prefillLate.Seconds()
	}
	r.observing(q, t, func() {
		if q.drop != parser.TTFT && r.cfg.Server.Style.has(parser.TTFT) {
			r.srv.ObserveFirstToken(model, q.engine, q.ttft)
		}
		if r.cfg.Semantics.PrefillAtFirstToken && q.drop != parser.Prefill {
			r.srv.ObserveOne(model, q.engine, parser.Prefill, q.prefillVal)
		}
	})
	if r.cfg.Capture && q.stream {
		// The server sends the first chunk after the observation.
		q.firstByte = t + r.short(50*time.Microsecond, 500*time.Microsecond)
	}
	if r.cfg.FirstSnapshots && q.stream {
		at := t
		if r.cfg.Capture {
			// Capture starts a scrape when the first byte passes.
			at = q.firstByte + r.short(200*time.Microsecond, 1500*time.Microsecond)
		}
		r.push(at+r.renderTime(), evFirstSnap, i)
	}
}

// afterSnapshotAt is the earliest the after snapshot can be taken for a
// request whose finish was observed at t: then, or with Capture once the
// last response byte has passed.
func (r *run) afterSnapshotAt(q *request, t time.Duration) time.Duration {
	if !r.cfg.Capture {
		return t
	}
	// A one-token stream's first chunk may still be on its way.
	q.lastByte = max(q.firstByte, t+r.short(50*time.Microsecond, 500*time.Microsecond))
	if !q.stream {
		q.firstByte = q.lastByte
	}
	// The scrape starts after the last byte has passed (capture's after
	// joins the next scrape started after it); scrapeLine dates its start
	// up to 1 ms before the content, so the content is 1 ms later still.
	return q.lastByte + r.short(200*time.Microsecond, 1500*time.Microsecond) + time.Millisecond
}

// scrapeLine opens a snapshot whose content is generated at now (read
// over the spread before it) with capture's scrape-start line, and
// returns the time capture names it by: when the response arrived.
// Without Capture it returns now unchanged.
func (r *run) scrapeLine(b []byte, now time.Time, spread time.Duration) ([]byte, time.Time) {
	if !r.cfg.Capture {
		// A log-hook tool names the file by when it launched the scrape.
		return b, now.Add(-r.renderTime())
	}
	before, after := r.short(100*time.Microsecond, time.Millisecond), r.short(50*time.Microsecond, 500*time.Microsecond)
	if st := r.cfg.ScrapeTime; st > 0 {
		d := r.short(0, st)
		before = r.short(0, d)
		after = d - before
	}
	started := now.Add(-spread - before)
	if started.Before(r.startFloor) {
		// A first snapshot's scrape starts once the first byte passed
		// (its content, at now, is later still).
		started = r.startFloor
	}
	return parser.AppendScrapeStarted(b, started), now.Add(after)
}

// writeInfo writes the request's capture sidecar (the fields ingest
// reads; docs/capture.md has the whole format).
func (r *run) writeInfo(q *request) error {
	if !r.cfg.Capture || r.cfg.dry {
		return nil
	}
	at := func(d time.Duration) time.Time { return r.cfg.Start.Add(d).UTC() }
	info := map[string]any{
		"version":        1,
		"request_id":     q.id,
		"stream":         q.stream,
		"received_at":    at(q.received),
		"first_byte_at":  at(q.firstByte),
		"last_byte_at":   at(q.lastByte),
		"after_observed": q.observed,
		"usage":          map[string]int{"prompt_tokens": q.prompt, "completion_tokens": q.gen},
	}
	if r.cfg.ServerMetrics {
		f := q.finishValues
		ms := func(sec float64) float64 { return math.Round(sec*1e6) / 1e3 }
		m := map[string]any{
			"queue_time_ms":          ms(f.Queue),
			"time_to_first_token_ms": ms(f.Prefill),
			"generation_time_ms":     ms(f.Inference),
		}
		if q.gen > 1 {
			m["mean_itl_ms"] = ms(f.Decode / float64(q.gen-1))
		}
		if f.Inference > 0 {
			m["tokens_per_second"] = math.Round(float64(q.gen)/f.Inference*1000) / 1000
		}
		info["server_metrics"] = m
	}
	body, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return r.sink.Snapshot(parser.FormatName(q.id, parser.Info, at(q.received)), body)
}

// afterSeen reports whether a scrape at t shows a finish count above the
// request's before, as capture checks before it writes the after; it
// records the answer for the info sidecar.
func (r *run) afterSeen(q *request, t time.Duration) bool {
	hidden, _ := r.hiddenAt(t)
	q.observed = r.srv.finishCount(hidden) > q.beforeE2E
	return q.observed
}

// keptScrape is a scrape LatestBefore may hand a later request as its
// before: its file body, when its content was taken and when it
// completed, and the finish count it showed.
type keptScrape struct {
	body []byte
	at   time.Duration
	done time.Time
	e2e  uint64
}

// keep records the scrape just made (in r.buf) for LatestBefore.
func (r *run) keep(at time.Duration, done time.Time, e2e uint64) {
	k := &r.kept[r.keptN%len(r.kept)]
	r.keptN++
	k.body, k.at, k.done, k.e2e = append(k.body[:0], r.buf...), at, done, e2e
}

// latestBefore is, with LatestBefore, the scrape capture would write as
// q's before at t: the latest to complete before the proxy received q,
// if it completed within capture's idle interval; nil means a fresh
// scrape (as the idle loop's would be).
func (r *run) latestBefore(q *request, t time.Duration) *keptScrape {
	if !r.cfg.Capture || !r.cfg.LatestBefore {
		return nil
	}
	received := r.cfg.Start.Add(q.received)
	var best *keptScrape
	for i := range min(r.keptN, len(r.kept)) {
		k := &r.kept[i]
		if !k.done.After(received) && (best == nil || k.done.After(best.done)) {
			best = k
		}
	}
	if best == nil || r.cfg.Start.Add(t).Sub(best.done) > time.Second {
		return nil
	}
	return best
}
