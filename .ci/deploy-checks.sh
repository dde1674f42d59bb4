#!/bin/sh
# Checks of the Prometheus rules, run by .ci/run after
# `apt-get install -y prometheus` (Debian's package provides promtool).
# The Go tests in deploy/ run the same commands and more (dashboard
# queries, metric names against a real scrape, manifests, Dockerfile).
set -eu
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
	echo "deploy-checks: promtool not found; install the Debian package prometheus" >&2
	exit 1
fi
promtool --version 2>&1 | head -n 1

echo "deploy-checks: promtool check rules"
promtool check rules deploy/prometheus/*.yml

echo "deploy-checks: promtool test rules"
promtool test rules deploy/prometheus/tests/*.yml

echo "deploy-checks: promtool test rules (SLO burn-rate alerts)"
promtool test rules deploy/prometheus/slo-tests/*.yml

# Prometheus 3.x's promtool (built by .ci/run): the same rules and unit
# tests, and the example configuration as shipped (Debian's promtool
# predates its 3.x settings; the Go test checks it without them).
if [ -n "${DELTA_PROMTOOL3:-}" ]; then
	"$DELTA_PROMTOOL3" --version 2>&1 | head -n 1
	echo "deploy-checks: promtool 3 check rules, test rules, check config"
	"$DELTA_PROMTOOL3" check rules deploy/prometheus/*.yml
	"$DELTA_PROMTOOL3" test rules deploy/prometheus/tests/*.yml
	"$DELTA_PROMTOOL3" test rules deploy/prometheus/slo-tests/*.yml
	"$DELTA_PROMTOOL3" check config deploy/prometheus/config/prometheus.yml
fi
