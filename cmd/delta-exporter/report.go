package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/report"
	"github.com/delta-exporter/delta-exporter/internal/slo"
)

// reportCommand reads a snapshot directory once and prints every request
// with a summary: the replacement of the snapshot method's parse script.
func reportCommand(app *kingpin.Application, e *env) (string, func(context.Context) int) {
	c := app.Command("report", "Read a snapshot directory once and print each request's exact values, then a summary per model.")
	dirFlag := c.Flag("snapshots.dir", "Directory of {request_id}_{before|after}_{YYYYMMDD_HHMMSS_micro}.txt snapshots (or give it as the argument).").
		PlaceHolder("DIR").String()
	dirArg := c.Arg("dir", "Same as --snapshots.dir.").String()
	format := c.Flag("format", "Output: text (a table), json (a document for tools), csv (one row per request), summary-csv (one row per model and metric: exact sample beside all requests), html (one self-contained page with pictures).").
		Default("text").String()
	var f report.Filter
	c.Flag("model", "Show only requests attributed to this model_name.").StringVar(&f.Model)
	since := c.Flag("since", "Show only requests started at or after this time: RFC 3339 or YYYYMMDD_HHMMSS (UTC, like the file names).").String()
	until := c.Flag("until", "Show only requests started before this time (same formats as --since).").String()
	maxBytes := maxBytesFlag(c)
	var observeDelay time.Duration
	observeDelayFlag(c, &observeDelay)
	var trustAfters bool
	trustAftersFlag(c, &trustAfters)
	sloFile := c.Flag("slo.config", "YAML file of latency objectives (docs/slo.md): adds each objective's attainment per model.").PlaceHolder("FILE").String()

	return c.FullCommand(), func(ctx context.Context) int {
		if os.Getenv("GOGC") == "" {
			// A report is a batch run over a small live heap (requests
			// are decided during the scan): collecting less often saves
			// ~13% of its time for a few MB (scripts/bench-report.sh).
			debug.SetGCPercent(400)
		}
		fail := func(code int, format string, args ...any) int {
			fmt.Fprintf(e.stderr, "delta-exporter report: "+format+"\n", args...)
			return code
		}
		dir := *dirFlag
		switch {
		case dir == "" && *dirArg == "":
			return fail(2, "--snapshots.dir is required (try --help)")
		case dir != "" && *dirArg != "" && dir != *dirArg:
			return fail(2, "--snapshots.dir=%s and the argument %s disagree", dir, *dirArg)
		case dir == "":
			dir = *dirArg
		}
		write, ok := map[string]func(io.Writer, *report.Report) error{
			"text": report.WriteText, "json": report.WriteJSON, "csv": report.WriteCSV,
			"summary-csv": report.WriteSummaryCSV, "html": report.WriteHTML,
		}[*format]
		if !ok {
			// Checked here rather than by kingpin's Enum, whose message
			// does not name the flag.
			return fail(2, "--format=%s: want text, json, csv, summary-csv or html", *format)
		}
		var objectives *slo.Set
		if *sloFile != "" {
			var err error
			if objectives, err = slo.Load(*sloFile); err != nil {
				return fail(2, "--slo.config: %v", err)
			}
		}
		for _, t := range []struct {
			flag string
			in   string
			out  *time.Time
		}{{"--since", *since, &f.Since}, {"--until", *until, &f.Until}} {
			if t.in == "" {
				continue
			}
			v, err := report.ParseTime(t.in)
			if err != nil {
				return fail(2, "%s: %v", t.flag, err)
			}
			*t.out = v
		}

		if fi, err := os.Stat(dir); err != nil {
			return fail(1, "cannot read the snapshot directory: %v", err)
		} else if !fi.IsDir() {
			return fail(1, "cannot read the snapshot directory: %s is not a directory", dir)
		}
		cfg := report.Config{FS: ingest.NewDirFS(dir), Filter: f, MaxBytes: maxBytes(), MaxObserveDelay: observeDelay, TrustAfters: trustAfters, Objectives: objectives}
		// Every unusable file is in the report itself; ingest's per-file
		// warnings would only repeat it on stderr, so they are kept for
		// --log.level=debug.
		if e.logConfig.Level != nil && e.logConfig.Level.Level() <= slog.LevelDebug {
			cfg.Logger = e.logger()
		}
		if isTerminal(e.stderr) {
			cfg.Progress = e.stderr
		}
		rep, err := report.Run(ctx, cfg)
		switch {
		case err != nil && ctx.Err() != nil:
			return fail(1, "interrupted")
		case err != nil:
			return fail(1, "cannot read the snapshot directory %s: %v", dir, err)
		}

		out := bufio.NewWriterSize(e.stdout, 64<<10)
		if err := write(out, rep); err != nil {
			return fail(1, "writing the report: %v", err)
		}
		if err := out.Flush(); err != nil {
			return fail(1, "writing the report: %v", err)
		}
		return 0
	}
}

// isTerminal reports whether w is a terminal, where a progress line that
// rewrites itself is welcome (and not, say, in a file of logs).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
