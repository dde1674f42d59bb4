// Package testutil holds what the tests of several packages share: a
// writer of snapshot files from a simulated vLLM server (Snapshots), the
// exporter binary built once per test binary (Exporter), a free loopback
// address, the simulator's truth files, the hostile strings the HTML
// pages are tested with, and Missing, which skips a test for a tool the
// machine lacks, or fails it in CI. Only tests and their helpers (such as
// internal/browser) import it.
//
// Its subpackages are larger test doubles: fakeupstream, an
// OpenAI-compatible inference server.
package testutil
