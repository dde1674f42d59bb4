package attribution

import (
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Outcome is what became of one request. The values are the label values
// of delta_exporter_requests_total (docs/metrics.md).
type Outcome string

const (
	// Exact: every metric the source exposes was published for the request.
	Exact Outcome = "exact"
	// Partial: some metrics were published, the others withheld.
	Partial Outcome = "partial"
	// Withheld: no metric could be attributed exactly.
	Withheld Outcome = "withheld"
	// Rejected: the request's snapshots are unusable (see RejectReason).
	Rejected Outcome = "rejected"
	// Unpaired: a before without an after (expired) or an after without a before.
	Unpaired Outcome = "unpaired"
)

// Outcomes lists every outcome, for pre-initialising counters.
var Outcomes = []Outcome{Exact, Partial, Withheld, Rejected, Unpaired}

// Reason says why a value was withheld or a request rejected.
type Reason string

// Reasons a single value is withheld.
const (
	// ReasonNone: the value is exact.
	ReasonNone Reason = ""
	// ReasonAbsent: the source does not expose this metric at all (e.g.
	// SGLang has no prefill histogram). Not counted as withheld.
	ReasonAbsent Reason = "absent"
	// ReasonMissing: no observation landed in the request's window.
	ReasonMissing Reason = "missing"
	// ReasonOverlap: several observations could be the request's, and some
	// snapshot separates them: which one is the request's is unknown.
	// When no snapshot separates them it is ReasonSimultaneous.
	ReasonOverlap Reason = "overlap"
	// ReasonInconsistent: the snapshots contradict each other or the
	// attribution's assumptions (docs/attribution.md).
	ReasonInconsistent Reason = "inconsistent"
	// ReasonUnconfirmed: the value needs an assumption about the server
	// that its data have not confirmed, or have contradicted
	// (docs/attribution.md, "Assumptions").
	ReasonUnconfirmed Reason = "unconfirmed"
	// ReasonUnvouched: nothing vouches that the request's window holds its
	// own observation (A1): the snapshot tool's protocol did not (capture
	// does, request by request), nor did the user
	// (--attribution.trust-afters). The window is kept out of the
	// matching (docs/attribution.md, "What A1 rests on").
	ReasonUnvouched Reason = "unvouched"
)

// WithheldReasons lists the reasons counted in delta_exporter_values_withheld_total.
var WithheldReasons = []Reason{ReasonMissing, ReasonOverlap, ReasonInconsistent, ReasonUnconfirmed, ReasonSimultaneous, ReasonUnvouched}

// Reasons a whole request is rejected.
const (
	RejectRestart      Reason = "restart"
	RejectCounterReset Reason = "counter_reset"
	RejectDuplicate    Reason = "duplicate"
	RejectBadSnapshot  Reason = "bad_snapshot"
)

// RejectReasons lists the reasons counted in delta_exporter_request_rejections_total.
var RejectReasons = []Reason{RejectRestart, RejectCounterReset, RejectDuplicate, RejectBadSnapshot}

// Value is one per-request value: exact, or withheld with a reason.
type Value struct {
	V      float64
	Exact  bool
	Reason Reason
}

// Result is the decision for one request.
type Result struct {
	RequestID string
	// Model is the model_name of the series the request's observations
	// were attributed to; "" when none was.
	Model        string
	Outcome      Outcome
	RejectReason Reason // for Rejected
	Values       [parser.NumMetrics]Value
	// TPOT is the derived mean time per output token:
	// decode / (generation tokens - 1), exact when both are exact and
	// generation tokens >= 2.
	TPOT Value
	// BeforeTime and AfterTime are the times in the snapshot names.
	BeforeTime, AfterTime time.Time
	BeforeFile, AfterFile string
	// Proxy is what capture measured of the request on the client's side,
	// whatever the attribution decided.
	Proxy ProxyTimes
}

// ProxyTimes are a request's latencies as the proxy in front of the server
// saw them (capture's info sidecar): client-side, exact for what the proxy
// observed, known for every request the proxy completed. They are not the
// server's values: they include the network and the proxy's hop, and
// exclude nothing the server measures.
type ProxyTimes struct {
	// Model is the model the response named ("" if none).
	Model string
	// TTFT is the time from receiving the request to the first response
	// byte of a streaming response; E2E to its last byte. Seconds.
	TTFT, E2E       float64
	HasTTFT, HasE2E bool
}

// NewRejected is the result for a request whose snapshots are unusable.
func NewRejected(r *Request, reason Reason) Result {
	res := Result{RequestID: r.ID, Outcome: Rejected, RejectReason: reason,
		BeforeTime: r.BeforeTime, AfterTime: r.AfterTime, BeforeFile: r.BeforeFile, AfterFile: r.AfterFile, Proxy: r.Proxy}
	for m := range res.Values {
		res.Values[m].Reason = reason
	}
	res.TPOT.Reason = reason
	return res
}

// NewUnpaired is the result for half a pair that never found its other half.
func NewUnpaired(r *Request) Result {
	res := NewRejected(r, "unpaired")
	res.Outcome = Unpaired
	res.RejectReason = ""
	return res
}

// finish derives TPOT and the outcome from the values.
func (res *Result) finish() {
	d, g := res.Values[parser.Decode], res.Values[parser.GenerationTokens]
	switch {
	case d.Exact && g.Exact && g.V >= 2:
		res.TPOT = Value{V: d.V / (g.V - 1), Exact: true}
	case d.Exact && g.Exact:
		res.TPOT = Value{Reason: ReasonAbsent} // one-token answer: no TPOT
	case !d.Exact && d.Reason != ReasonAbsent:
		res.TPOT = Value{Reason: d.Reason}
	case !g.Exact && g.Reason != ReasonAbsent:
		res.TPOT = Value{Reason: g.Reason}
	default:
		res.TPOT = Value{Reason: ReasonAbsent}
	}
	exact, applicable := 0, 0
	for _, v := range res.Values {
		if v.Reason == ReasonAbsent {
			continue
		}
		applicable++
		if v.Exact {
			exact++
		}
	}
	switch {
	case applicable > 0 && exact == applicable:
		res.Outcome = Exact
	case exact > 0:
		res.Outcome = Partial
	default:
		res.Outcome = Withheld
	}
}
