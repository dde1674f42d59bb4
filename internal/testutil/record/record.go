// Package record keeps what the ingester reports, for tests: a Recorder's
// Publish is an ingest.Config's Results, and the Recorder is its Metrics.
// It replaces the fakes each test package used to write.
//
// It imports neither ingest nor the packages that use it, so that
// ingest's own tests can use it too.
package record

import (
	"fmt"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
)

// Recorder keeps every result and count. It is not safe for concurrent
// use: read it from the goroutine that drives the ingester, or once the
// ingester is done.
type Recorder struct {
	// Results are the results published, in order.
	Results []attribution.Result
	// ByID is the last result published under each request id.
	ByID map[string]attribution.Result
	// Read counts the snapshot files read and used.
	Read int
	// Rejected counts the unusable files by reason; Rejections lists them.
	Rejected   map[snapfile.RejectReason]int
	Rejections []Rejection
	// Ignored counts the directory entries not used, by reason.
	Ignored map[snapfile.IgnoreReason]int
	// FutureDated counts the files dated ahead of the ingester's clock.
	FutureDated int
	// Unpaired and Attributing are the requests held, as last set.
	Unpaired, Attributing int
	// Assumptions are the server processes' assumption states, as last set.
	Assumptions []attribution.ServerAssumptions
}

// Rejection is one unusable file.
type Rejection struct {
	File   string
	Reason snapfile.RejectReason
	Err    error
}

func (r Rejection) String() string { return fmt.Sprintf("%s: %s: %v", r.File, r.Reason, r.Err) }

// New returns an empty Recorder.
func New() *Recorder {
	return &Recorder{ByID: map[string]attribution.Result{}, Rejected: map[snapfile.RejectReason]int{},
		Ignored: map[snapfile.IgnoreReason]int{}}
}

// Once returns a Recorder that fails t, when the test ends, if a request
// id was published twice, unless both times as rejected (a duplicate id
// rejects both requests): the ingester decides each request once.
func Once(t testing.TB) *Recorder {
	r := New()
	t.Cleanup(func() {
		if ids := r.Repeated(); len(ids) > 0 {
			t.Errorf("published more than once: %v", ids)
		}
	})
	return r
}

// Repeated returns the request ids published more than once, other than
// those rejected every time, in the order of their second publication.
func (r *Recorder) Repeated() []string {
	seen := map[string]attribution.Outcome{}
	var ids []string
	for _, res := range r.Results {
		old, dup := seen[res.RequestID]
		seen[res.RequestID] = res.Outcome
		if dup && (old != attribution.Rejected || res.Outcome != attribution.Rejected) {
			ids = append(ids, res.RequestID)
		}
	}
	return ids
}

// IDs returns the request ids of Results, in order.
func (r *Recorder) IDs() []string {
	ids := make([]string, len(r.Results))
	for i, res := range r.Results {
		ids[i] = res.RequestID
	}
	return ids
}

// Publish keeps a decided request (ingest.Config.Results).
func (r *Recorder) Publish(res attribution.Result) {
	r.Results = append(r.Results, res)
	r.ByID[res.RequestID] = res
}

// NoRejections fails t if a file was rejected, naming the first few.
func (r *Recorder) NoRejections(t testing.TB) {
	t.Helper()
	if n := len(r.Rejections); n > 0 {
		t.Errorf("%d files rejected: %v", n, r.Rejections[:min(n, 10)])
	}
}

// SnapshotRead counts a file read (ingest.Metrics).
func (r *Recorder) SnapshotRead() { r.Read++ }

// SnapshotRejected keeps an unusable file (ingest.Metrics).
func (r *Recorder) SnapshotRejected(file string, reason snapfile.RejectReason, err error) {
	r.Rejected[reason]++
	r.Rejections = append(r.Rejections, Rejection{File: file, Reason: reason, Err: err})
}

// FileIgnored counts an entry not used (ingest.Metrics).
func (r *Recorder) FileIgnored(reason snapfile.IgnoreReason) { r.Ignored[reason]++ }

// SnapshotFutureDated counts a file dated ahead (ingest.Metrics).
func (r *Recorder) SnapshotFutureDated() { r.FutureDated++ }

// SetPending keeps the numbers of held requests (ingest.Metrics).
func (r *Recorder) SetPending(unpaired, attributing int) {
	r.Unpaired, r.Attributing = unpaired, attributing
}

// SetAssumptions keeps the assumption states (ingest.Metrics).
func (r *Recorder) SetAssumptions(a []attribution.ServerAssumptions) { r.Assumptions = a }
