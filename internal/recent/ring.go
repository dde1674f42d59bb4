// Package recent keeps the last decided requests of `serve` and shows
// them: /requests, a server-rendered page with one bar per request
// (queue | prefill | decode to scale, TTFT marked), and /requests.json,
// the same rows for tools. The page needs no script and no external
// asset, so it works offline and behind the exporter's auth; everything
// taken from files (request ids, model names) reaches it through
// html/template's escaping.
package recent

import (
	"sync"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/slo"
)

// DefaultSize is how many requests the page keeps by default, and
// MaxSize the most it may keep (each entry is about a kilobyte).
const (
	DefaultSize = 200
	MaxSize     = 10000
)

// Entry is one decided request.
type Entry struct {
	Result  attribution.Result
	SLO     []slo.Judgement
	Decided time.Time
}

// Ring holds the last n entries. Add is called by the ingest goroutine,
// Entries by HTTP handlers.
type Ring struct {
	mu   sync.Mutex
	buf  []Entry
	next int
	full bool
}

// NewRing keeps the last n entries; n is clamped to [1, MaxSize].
func NewRing(n int) *Ring {
	return &Ring{buf: make([]Entry, min(max(n, 1), MaxSize))}
}

// Add records a decided request, dropping the oldest when full.
func (r *Ring) Add(e Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// Entries returns a copy of the entries, newest first.
func (r *Ring) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]Entry, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}
