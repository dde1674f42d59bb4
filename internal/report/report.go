package report

import (
	"cmp"
	"context"
	"io"
	"io/fs"
	"log/slog"
	"slices"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/population"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/internal/snapfile"
)

// Config configures Run.
type Config struct {
	// FS is the snapshot directory (ingest.NewDirFS(dir)).
	FS fs.FS
	// Logger receives ingest's per-file messages; nil discards them (the
	// report lists every unusable file itself).
	Logger *slog.Logger
	// MaxBytes: larger files are rejected (too_large); zero:
	// ingest.DefaultMaxBytes.
	MaxBytes int64
	// MaxObserveDelay: assumption A6's bound; zero: no such checks
	// (ingest.Config.MaxObserveDelay).
	MaxObserveDelay time.Duration
	// TrustAfters: the user vouches for every after in the directory
	// (ingest.Config.TrustAfters, --attribution.trust-afters).
	TrustAfters bool
	Filter      Filter
	// Objectives, when set, judges every request (package slo).
	Objectives *slo.Set
	// Progress, when set, receives a one-line progress display that is
	// rewritten in place ("\r"): meant for a terminal.
	Progress io.Writer
	// Now is the clock of the progress display; nil means time.Now.
	Now func() time.Time
}

// FileProblem is a file of the directory that was not used.
type FileProblem struct {
	File string
	// Reason is one of the delta_exporter_snapshots_rejected_total reasons
	// (docs/metrics.md): empty, parse_error, incomplete, no_families, ...
	Reason string
	Err    string
}

// Report is everything a report shows.
type Report struct {
	// Requests are the decided requests the filter kept, ordered by start
	// time (StartTime), then request id.
	Requests []attribution.Result
	// Excluded counts the requests the filter left out.
	Excluded Excluded
	// SnapshotsRead counts the snapshot files parsed successfully.
	SnapshotsRead int
	// Rejected lists the unusable files, by name. It is not filtered: it
	// describes the directory, not the requests.
	Rejected []FileProblem
	// Ignored counts directory entries whose names are not snapshot names.
	Ignored int
	Summary Summary
	// Objectives are Config.Objectives; SLO their attainment per model
	// and objective (nil without objectives).
	Objectives *slo.Set
	SLO        []Attainment
	// Assumptions is what the directory's data said about each server
	// process's attribution assumptions (docs/attribution.md).
	Assumptions []attribution.ServerAssumptions
}

// Run reads the directory, decides every request and returns the report.
// Its errors are a directory that cannot be listed and ctx's: unusable
// files end up in Report.Rejected and the requests they belong to as
// rejected or unpaired.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := &collect{}
	results, metrics := c.Publish, ingest.Metrics(c)
	var p *progress
	if cfg.Progress != nil {
		// The directory is listed once more just for the total: a few
		// milliseconds for thousands of files, and only on a terminal.
		entries, err := fs.ReadDir(cfg.FS, ".")
		if err != nil {
			return nil, err
		}
		p = newProgress(cfg.Progress, len(entries), cfg.Now, c)
		results, metrics = p.Publish, p
	}
	// The ingester runs on its own goroutine so that an interrupt is
	// seen at once; it then stops reading (Config.Stop) and ends after
	// the file it is reading, instead of finishing the directory.
	done := make(chan error, 1)
	pop := population.New(population.Config{})
	go func() {
		in := ingest.New(ingest.Config{FS: cfg.FS, Logger: cfg.Logger, Results: results, Metrics: metrics, MaxBytes: cfg.MaxBytes,
			MaxObserveDelay: cfg.MaxObserveDelay, TrustAfters: cfg.TrustAfters, Stop: ctx.Done(),
			Snapshots: populationIn{pop: pop, since: cfg.Filter.Since, until: cfg.Filter.Until}})
		err := in.Scan(true)
		if err == nil {
			in.Finish()
			c.assumptions = in.Assumptions()
		}
		if p != nil {
			p.done()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
		r := c.report(cfg.Filter)
		addPopulation(&r.Summary, pop.Hists(), cfg.Filter)
		r.Objectives = cfg.Objectives
		r.sloSummary()
		return r, nil
	case <-ctx.Done():
		// The ingester stops at its next file; a read that blocks
		// (a hung network mount) cannot be interrupted, so Run does
		// not wait for it.
		return nil, ctx.Err()
	}
}

// collect takes a report's results and is its ingest.Metrics: it keeps
// every result and every unusable file.
type collect struct {
	results  []attribution.Result
	read     int
	rejected []FileProblem
	ignored  int
	// assumptions: set once the ingester is done.
	assumptions []attribution.ServerAssumptions
}

func (c *collect) Publish(r attribution.Result)      { c.results = append(c.results, r) }
func (c *collect) SnapshotRead()                     { c.read++ }
func (c *collect) FileIgnored(snapfile.IgnoreReason) { c.ignored++ }

// SnapshotFutureDated: the file is read all the same (a report takes
// files as they are); the ingester's log says which clock is ahead.
func (c *collect) SnapshotFutureDated() {}

// SetPending: a report decides everything before it shows anything.
func (c *collect) SetPending(int, int) {}

// SetAssumptions: the report takes them once the ingester is done.
func (c *collect) SetAssumptions([]attribution.ServerAssumptions) {}

func (c *collect) SnapshotRejected(file string, reason snapfile.RejectReason, err error) {
	p := FileProblem{File: file, Reason: string(reason)}
	if err != nil {
		p.Err = err.Error()
	}
	c.rejected = append(c.rejected, p)
}

// filesDone is how many files the ingester has finished with, for the
// progress display (sidecars that parse leave no trace, so it may end a
// little short of the directory's size).
func (c *collect) filesDone() int { return c.read + len(c.rejected) + c.ignored }

func (c *collect) report(f Filter) *Report {
	r := &Report{SnapshotsRead: c.read, Ignored: c.ignored}
	r.Rejected = slices.Clone(c.rejected)
	slices.SortStableFunc(r.Rejected, func(a, b FileProblem) int { return cmp.Compare(a.File, b.File) })
	for _, res := range c.results {
		if why := f.exclude(&res); why != keep {
			r.Excluded.add(why)
			continue
		}
		r.Requests = append(r.Requests, res)
	}
	slices.SortStableFunc(r.Requests, func(a, b attribution.Result) int {
		if c := StartTime(&a).Compare(StartTime(&b)); c != 0 {
			return c
		}
		return cmp.Compare(a.RequestID, b.RequestID)
	})
	r.Summary = summarize(r.Requests)
	r.Assumptions = c.assumptions
	return r
}

// StartTime is when a request started as far as the files tell: the time
// in its before file's name, or in its after file's name when it has no
// before (an unpaired after). Zero when neither is known.
func StartTime(r *attribution.Result) time.Time {
	if r.BeforeFile != "" || !r.BeforeTime.IsZero() {
		return r.BeforeTime
	}
	return r.AfterTime
}
