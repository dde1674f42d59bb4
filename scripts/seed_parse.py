#!/usr/bin/env python3
"""Speed anchor for `delta-exporter report`: the snapshot method's parse script.

This is a RE-IMPLEMENTATION written from the description of the original
(DraconicLegend/bettervllmlog, parse_metrics_snapshots.py, summarised in
VLLM_METRICS.md section 2), not the original code, which we do not have.
It does what the description says, the way the description says it:

* pairs files by searching `_before_` / `_after_` in the name; the request
  id is everything before that marker;
* reads each file whole and takes, with a precompiled regular expression,
  the FIRST `vllm:request_prefill_time_seconds_sum{...}`,
  `vllm:request_decode_time_seconds_sum{...}` and
  `vllm:time_to_first_token_seconds_sum{...}` line, whatever its labels;
* prints after - before as the request's prefill, decode and TTFT, then
  totals and averages.

Like the original it checks no _count, so overlapping requests are summed
silently: its numbers are only as right as the requests were sequential.
scripts/bench-report.sh times it against `cat` and `delta-exporter report`.

Usage: seed_parse.py DIR
"""

import os
import re
import sys

NUMBER = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))"
PATTERNS = {
    "prefill": re.compile(r"vllm:request_prefill_time_seconds_sum\{[^}]*\}\s+" + NUMBER),
    "decode": re.compile(r"vllm:request_decode_time_seconds_sum\{[^}]*\}\s+" + NUMBER),
    "ttft": re.compile(r"vllm:time_to_first_token_seconds_sum\{[^}]*\}\s+" + NUMBER),
}


def parse_file(path):
    """The first value of each pattern in the file, or None."""
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        content = f.read()
    values = {}
    for key, pattern in PATTERNS.items():
        m = pattern.search(content)
        values[key] = float(m.group(1)) if m else None
    return values


def main(argv):
    if len(argv) != 2:
        print("usage: seed_parse.py DIR", file=sys.stderr)
        return 2
    directory = argv[1]
    pairs = {}
    for name in os.listdir(directory):
        for stage in ("before", "after"):
            marker = "_" + stage + "_"
            if marker in name:
                request_id = name.split(marker)[0]
                pairs.setdefault(request_id, {})[stage] = os.path.join(directory, name)
                break

    totals = {key: 0.0 for key in PATTERNS}
    counted = 0
    for request_id in sorted(pairs):
        files = pairs[request_id]
        if "before" not in files or "after" not in files:
            print(f"{request_id}: incomplete pair, skipped")
            continue
        before = parse_file(files["before"])
        after = parse_file(files["after"])
        if any(before[k] is None or after[k] is None for k in PATTERNS):
            print(f"{request_id}: metrics not found, skipped")
            continue
        delta = {k: after[k] - before[k] for k in PATTERNS}
        for k in PATTERNS:
            totals[k] += delta[k]
        counted += 1
        print(f"{request_id}: prefill {delta['prefill']:.4f} s, decode {delta['decode']:.4f} s, "
              f"TTFT {delta['ttft']:.4f} s")

    print(f"\n{counted} requests")
    for key in PATTERNS:
        mean = totals[key] / counted if counted else 0.0
        print(f"{key}: total {totals[key]:.4f} s, average {mean:.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
