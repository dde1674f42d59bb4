// Package deploy holds no code: it is the home of the deployment assets
// (Grafana dashboard, Prometheus rules and scrape config, Kubernetes
// manifests) and of the tests that check them against the real exporter.
//
// The tests build ./cmd/delta-exporter, scrape it, and require every metric
// name a dashboard query or a rule uses to be one the exporter exposes; they
// run promtool on the rules and their unit tests. promtool missing is a skip
// locally and a failure when the CI environment variable is set.
package deploy
