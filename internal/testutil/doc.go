// Package testutil holds what the tests of several packages share: a
// writer of snapshot files from a simulated vLLM server, the exporter
// binary built once per test binary, a free loopback address and the
// simulator's truth files. Nothing outside _test.go files imports it.
//
// Its subpackages are larger test doubles: fakeupstream, an
// OpenAI-compatible inference server.
package testutil
