#!/usr/bin/env bash
# bench-report.sh — how fast is `delta-exporter report` next to `cat` and
# the snapshot method's parse script (scripts/seed_parse.py)?
#
# It generates PAIRS realistic request pairs (vLLM V1 with the python_*,
# process_* and http_* families around the vllm ones; one model, one
# engine, one request in flight on average) into a temporary directory,
# warms the page cache, then times, best of RUNS each:
#
#   cat DIR/* > /dev/null
#   python3 scripts/seed_parse.py DIR > /dev/null
#   delta-exporter report --format=json DIR > /dev/null
#
# and prints each time as a ratio to cat's, plus the CPU time and peak RSS
# of one run (on a shared machine CPU time is the steadier figure: the
# report reads on all cores, cat and python on one). Peak RSS is also
# measured on a directory 4 times smaller, to show how memory grows with
# the number of pairs: file contents are never all held at once, but the
# attribution timeline keeps a few numbers per snapshot until the end.
#
# Usage: scripts/bench-report.sh [PAIRS]     (default 2000; RUNS=5)
#        DELTA_EXPORTER=path/to/binary scripts/bench-report.sh   (time that
#        build instead of building ./cmd/delta-exporter)
# Targets (issue 3): report <= 1.5x cat, python >= 2x report.
set -euo pipefail

pairs=${1:-2000}
runs=${RUNS:-5}
if [ -n "${DELTA_EXPORTER:-}" ]; then
	DELTA_EXPORTER=$(realpath "$DELTA_EXPORTER")
fi
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dir=$tmp/snapshots
small=$tmp/small

bin=${DELTA_EXPORTER:-$tmp/delta-exporter}
if [ -z "${DELTA_EXPORTER:-}" ]; then
	go build -o "$bin" ./cmd/delta-exporter
fi
go build -o "$tmp/gendata" ./internal/simulate/cmd/gendata
"$tmp/gendata" -out "$dir" -truth "$tmp/truth.json" -requests "$pairs" -inflight 1 -padding -seed 1 >/dev/null
"$tmp/gendata" -out "$small" -truth "$tmp/truth-small.json" -requests $((pairs / 4)) -inflight 1 -padding -seed 2 >/dev/null

files=$(find "$dir" -type f | wc -l)
bytes=$(du -sb "$dir" | cut -f1)

# The report must have seen every request, or its speed means nothing.
seen=$("$bin" report --format=json "$dir" |
	python3 -c 'import json,sys; print(len(json.load(sys.stdin)["requests"]))')
if [ "$seen" != "$pairs" ]; then
	echo "bench-report: the report lists $seen requests, want $pairs" >&2
	exit 1
fi

# Warm the page cache.
cat "$dir"/* >/dev/null
cat "$small"/* >/dev/null

now() { date +%s%N; }

# best CMD... : the least wall time of $runs runs, in nanoseconds.
best() {
	local min= start end i
	for ((i = 0; i < runs; i++)); do
		start=$(now)
		"$@" >/dev/null
		end=$(now)
		if [ -z "$min" ] || [ $((end - start)) -lt "$min" ]; then
			min=$((end - start))
		fi
	done
	echo "$min"
}

# usage CMD... : "CPU-seconds peak-RSS-KB" of one run. CPU time (user +
# system) does not depend on what else the machine runs, unlike wall time:
# worth a look on a shared machine.
usage() {
	if /usr/bin/time -f '%U %S %M' -o "$tmp/usage" true 2>/dev/null; then
		/usr/bin/time -f '%U %S %M' -o "$tmp/usage" "$@" >/dev/null
		tail -1 "$tmp/usage" | awk '{ print $1 + $2, $3 }'
		return
	fi
	python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime, r.ru_maxrss)' "$@"
}

catdir() { cat "$1"/* >/dev/null; }

t_cat=$(best catdir "$dir")
t_py=$(best python3 scripts/seed_parse.py "$dir")
t_rep=$(best "$bin" report --format=json "$dir")

read -r c_cat r_cat < <(usage sh -c 'cat "$1"/* >/dev/null' sh "$dir")
read -r c_py r_py < <(usage python3 scripts/seed_parse.py "$dir")
read -r c_rep r_rep < <(usage "$bin" report --format=json "$dir")
read -r _ r_rep_small < <(usage "$bin" report --format=json "$small")

awk -v pairs="$pairs" -v files="$files" -v bytes="$bytes" -v runs="$runs" -v cores="$(nproc)" \
	-v tc="$t_cat" -v tp="$t_py" -v tr="$t_rep" \
	-v rc="$r_cat" -v rp="$r_py" -v rr="$r_rep" -v rs="$r_rep_small" \
	-v cc="$c_cat" -v cp="$c_py" -v cr="$c_rep" -v load="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '?')" 'BEGIN {
	printf "%d pairs, %d files, %.1f MB (%.1f KB a file), %d cores (load %s), warm cache, best of %d\n\n",
		pairs, files, bytes / 1e6, bytes / files / 1e3, cores, load, runs
	printf "%-36s %8s %7s %9s %10s\n", "", "seconds", "x cat", "CPU s", "peak RSS"
	printf "%-36s %8.3f %7.2f %9.2f %7.1f MB\n", "cat", tc / 1e9, 1, cc, rc / 1024
	printf "%-36s %8.3f %7.2f %9.2f %7.1f MB\n", "python3 scripts/seed_parse.py", tp / 1e9, tp / tc, cp, rp / 1024
	printf "%-36s %8.3f %7.2f %9.2f %7.1f MB\n", "delta-exporter report --format=json", tr / 1e9, tr / tc, cr, rr / 1024
	printf "\nreport vs python: %.2fx faster (target >= 2)\n", tp / tr
	printf "report vs cat:    %.2fx the time (target <= 1.5)\n", tr / tc
	printf "report peak RSS:  %.1f MB for %d pairs, %.1f MB for %d pairs (%.2fx)\n",
		rr / 1024, pairs, rs / 1024, int(pairs / 4), rr / rs
}'
