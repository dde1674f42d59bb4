// Package e2e holds the end-to-end tests: the built delta-exporter binary
// on a real snapshot directory, scraped by a real Prometheus (Debian's
// prometheus package). It has no non-test code.
package e2e
