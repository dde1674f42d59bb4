// Package simulate is the ground truth for delta-exporter: a simulated
// vLLM server whose /metrics output looks like the real thing (Server),
// and a discrete-event load simulation that takes before/after (and
// optionally first and timeline) snapshots of it around every request,
// as the snapshot tools do, while recording what each request really was
// (Run, Truth).
//
// The point is exactness: a Truth holds the very float64 values that were
// added to the server's histogram sums, so a perfect attribution of a
// request whose window no other request touched recovers them to float
// rounding of the running sums (< 1e-9 s). Benchmarks measure how many
// requests the exporter gets exact, withholds or gets wrong against it.
//
// Servers differ in what their metrics mean. Profile names the servers the
// simulation imitates (profile.go): vLLM V1 in continuous time (the zero
// Semantics, the demo's model) and with step-synchronous batching
// (steps.go: one engine step's first-token and finish observations made
// together, with the step's timestamp), llm-d-inference-sim, SGLang, a
// server that observes late, afters taken before the finish is recorded,
// several API server processes, dropped observations, and random mixes.
// Truth.Missing names what a server never observed for a request.
//
// Rendering follows prometheus_client's text format byte for byte where it
// matters to a parser: Python float repr (with floatToGoString's exponent
// quirks), labels sorted so that le sits in the middle, _created gauge
// families, and the multiprocess layout with all _sum lines first.
// Metric facts are those of the team's VLLM_METRICS.md, section 3.
package simulate
