#!/usr/bin/env bash
# Cheap guard for the speed claims that matter most (README, Performance):
# ratios measured in one run on the same machine, never absolute times.
#   - the selective scanner vs os.ReadFile of the same realistic scrape
#   - ingest (scan + attribution point) vs os.ReadFile
#   - the scanner's allocation bound (TestScanAllocs, which -race skips)
# Each ratio is the best of 3 runs, so that a noisy neighbour does not fail
# it; the limits sit above the README's measured ranges (scan/read 0.5-1.5,
# ingest/read 1.4 against a 2x target) but far below what a regression to a
# general parser costs (expfmt/read 18-63).
set -euo pipefail
cd "$(dirname "$0")/.."

SCAN_LIMIT=${SCAN_LIMIT:-3}
INGEST_LIMIT=${INGEST_LIMIT:-3}

echo "== allocations (without -race)"
go test -count=1 -run '^TestScanAllocs$' ./parser

out=$(go test -run '^$' -bench '^(BenchmarkRatio|BenchmarkIngestVsReadFile)$' -benchtime 2000x -count 3 ./parser ./internal/attribution)
echo "$out" | grep -E '^Benchmark'
best() { echo "$out" | awk -v unit="$1" '{for (i = 2; i <= NF; i++) if ($i == unit) print $(i-1)}' | sort -g | head -1; }
scan=$(best scan/read)
ingest=$(best ingest/read)
[ -n "$scan" ] && [ -n "$ingest" ] || { echo "bench-ratios: no ratio in the benchmark output"; exit 1; }
echo "best scan/read $scan (limit $SCAN_LIMIT), best ingest/read $ingest (limit $INGEST_LIMIT)"
awk -v s="$scan" -v sl="$SCAN_LIMIT" -v i="$ingest" -v il="$INGEST_LIMIT" 'BEGIN { exit !(s <= sl && i <= il) }' ||
  { echo "bench-ratios: a speed ratio is over its limit"; exit 1; }
