// Package report reads a whole snapshot directory once and renders what
// the exporter would publish for every request in it, as a table (text), a
// document for other tools (JSON) or a spreadsheet (CSV). It replaces the
// parse script of the snapshot method. It does no attribution of its own:
// the directory is read by package ingest, exactly as `serve` reads it at
// startup, and this package only collects, filters, summarises and writes
// the results.
//
// # The JSON document
//
// `delta-exporter report --format=json` writes one object. Other tools
// read it; fields are only ever added.
//
//	{
//	  "requests": [
//	    {
//	      "request_id": "chatcmpl-…",
//	      "model_name": "Qwen/Qwen3-VL-30B-A3B-Instruct",  // null: no attributed model
//	      "before_file": "…_before_20251006_101427_370123.txt", // null: none
//	      "after_file": "…_after_20251006_101428_112233.txt",   // null: none
//	      "started_at": "2025-10-06T10:14:27.370123Z", // the before file's time (UTC); null without one
//	      "outcome": "exact",        // exact, partial, withheld, rejected, unpaired
//	      "reject_reason": null,     // rejected: restart, counter_reset, duplicate, bad_snapshot
//	      "ttft_seconds": 0.123,
//	      "queue_seconds": 0.0004,
//	      "prefill_seconds": 0.05,
//	      "decode_seconds": 1.2,
//	      "inference_seconds": 1.25,
//	      "e2e_seconds": 1.26,
//	      "prompt_tokens": 123,      // integers
//	      "generation_tokens": 45,
//	      "time_per_output_token_seconds": 0.0273, // decode / (generation_tokens - 1)
//	      "withheld": {}             // value key -> reason, for every null value
//	    }
//	  ],
//	  "summary": { … },
//	  "assumptions": [ … ]
//	}
//
// A value is a number only when it is exact for that request (see
// docs/attribution.md); otherwise it is null and "withheld" gives the
// reason: missing, overlap, simultaneous (its observation is one of
// several no snapshot separates), inconsistent or unconfirmed (the value
// needs an assumption this server's data have not confirmed); absent when the server does
// not have the metric (SGLang has no prefill histogram; a one-token answer
// has no TPOT); the reject reason for a rejected request and "unpaired"
// for a half without its other half.
//
// Requests are ordered by start time, then id. The summary holds:
//
//	"requests": 14,                         // requests listed
//	"outcomes": {"exact": 10, "partial": 1, "withheld": 1, "rejected": 1, "unpaired": 1},
//	"rejected_by_reason": {"bad_snapshot": 1},
//	"excluded": {"time": 0, "model": 0, "no_model": 0}, // left out by --since/--until/--model
//	"snapshots": {
//	  "read": 26,                           // snapshot files parsed
//	  "rejected": [{"file": "…", "reason": "empty", "error": "empty snapshot"}],
//	  "ignored": 1                          // entries whose names are not snapshot names
//	},
//	"bias_warning_threshold": 0.1,          // see bias_warning
//	"models": [                             // by name; model_name null last
//	  {"model_name": "…", "requests": 12, "outcomes": {…}, "rejected_by_reason": {…},
//	   "metrics": {
//	     "ttft_seconds": {"count": 10, "total": 1.9, "mean": 0.19, "p50": 0.17,
//	                      "p90": 0.3, "p99": 0.41, "max": 0.41, "withheld": {"overlap": 2},
//	                      "population": {"count": 40, "total": 9.1, "mean": 0.2275,
//	                                     "p50": {"above": 0.1, "at_most": 0.25},
//	                                     "p90": {"above": 0.25, "at_most": 0.5},
//	                                     "p99": {"above": 0.5, "at_most": 0.75}},
//	                      "coverage": 0.25, "bias": 0.835, "bias_warning": true},
//	     …                                  // every value key, in request order
//	   }}
//	]
//
// Statistics are over exact values only (null when count is 0);
// percentiles are nearest-rank, so each is a value a request really had.
//
// "population" is the server's own histogram of the family over the
// directory's snapshots: every request the server observed between the
// first and the last snapshot of each server process, exact or not
// (package population; --since/--until select snapshots by the time in
// their names, --model the model). Its count, total and mean are exact;
// its percentiles are not values but the server bucket the nearest-rank
// percentile falls in: above "above" and at most "at_most" (null: +Inf);
// the first bucket starts at 0. null when the server has no such
// histogram (time_per_output_token_seconds always). "coverage" is count ÷
// population count, "bias" mean ÷ population mean (null without exact
// values), and "bias_warning" is true when bias is off 1 by more than
// bias_warning_threshold (BiasThreshold): the exact values are a biased
// sample of the requests, typically the fast ones under load, and the
// population's percentiles are the ones to read. A model the population
// has and no request was attributed to has an entry of its own.
// "withheld" counts, per metric, the values withheld from requests that
// were attributed (missing, overlap, simultaneous, inconsistent,
// unconfirmed); rejected and unpaired
// requests are counted in "outcomes" instead. "snapshots.rejected" lists
// every unusable file of the directory, whatever the filters.
//
// With --slo.config the summary also holds "slo": one entry per model and
// objective (docs/slo.md):
//
//	"slo": [{"slo": "interactive", "model_name": "…", "target": 0.99, "judged": 10,
//	         "met": 4, "missed": 2, "unknown": 4, "attainment": 0.667, "unknown_share": 0.4}]
//
// attainment is met / (met + missed), null when no request is known.
//
// "assumptions" has one object per server process
// (process_start_time_seconds as "server_start", null when the server
// exposes none): for each assumption of docs/attribution.md, its state
// (unchecked, confirmed, contradicted), how many observations agreed with
// it, and the evidence of its contradiction; after_holds_observation and
// first_holds_observation also have a "note" saying what they rest on
// (capture's protocol, the user's --attribution.trust-afters, or nothing:
// counts can contradict them, never confirm them) or, once contradicted,
// how many requests were published before, and "windows": the requests'
// windows vouched for by capture, by the flag alone, and by nobody (kept
// out of the attribution, their values withheld as unvouched):
//
//	{"server_start": "1.75974206737e+09", "assumptions": [
//	  {"name": "after_holds_observation", "state": "confirmed", "agreed": 812, "contradiction": null,
//	   "note": "vouched for by capture (…)", "windows": {"capture": 812, "flag": 0, "unvouched": 3}},
//	  {"name": "ttft_contains_queue_prefill", "state": "contradicted", "agreed": 3,
//	   "contradiction": {"request_id": "chatcmpl-…", "detail": "TTFT 0.1s < queue 0.2s + prefill 0.05s"}},
//	  …]}
//
// The text report ends with the same, a table per server process.
//
// CSV has one row per request with the same columns, header first; a null
// is an empty cell and "withheld" is "key=reason;key=reason".
// --format=summary-csv writes the summary instead: one row per model and
// value key with the exact statistics, the population's (each percentile
// as two cells, population_pNN_above and population_pNN_at_most),
// coverage, bias and bias_warning.
// With --slo.config a column "slo:NAME" per objective holds the request's
// verdict (met, missed, unknown; empty when the objective does not apply).
//
// # Filters
//
// --since (inclusive) and --until (exclusive) select requests by start
// time; a half with no before file is placed at its after file's time.
// --model keeps requests attributed to that model_name; a request with no
// attributed model cannot be placed and is left out, counted in
// excluded.no_model. Filters only select rows: every file of the directory
// is always attributed, so a value never depends on them.
package report
