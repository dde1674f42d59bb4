// Command gendata writes a directory of simulated vLLM snapshot files and
// the ground truth of every request, for tests, benchmarks and the demo:
//
//	go run ./simulate/cmd/gendata -out DIR -truth FILE -requests N -inflight X -seed S [-timeline 50ms] [-first] [-padding]
//	    [-profile vllm|vllm-steps|emulator|sglang|late|early5|early30|multi-api|drops|mix] [-capture [-non-streaming F] [-server-metrics]]
//	    [-clients C [-phases C1:N1,C2:N2,…] [-max-running S]]
//
// -profile chooses the server's metric semantics (simulate.Profiles); the
// truth then lists under "missing" what the server never observed for a
// request. -capture writes what `delta-exporter capture` writes (scrape
// times, info sidecars).
//
// The truth goes to a separate file, never into DIR: every file in DIR is
// a snapshot.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gendata", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		out      = fs.String("out", "", "directory to write the snapshots into (created; must be empty)")
		truth    = fs.String("truth", "", "file to write the ground truth JSON into (outside -out)")
		requests = fs.Int("requests", 100, "number of requests")
		inflight = fs.Float64("inflight", 0, "mean requests in flight; 0 = strictly sequential")
		seed     = fs.Int64("seed", 1, "random seed")
		models   = fs.String("models", "", "comma-separated model names (default: one model)")
		engines  = fs.Int("engines", 1, "data-parallel engines")
		style    = fs.String("style", "v1", "server style: v1, v1-noengine or v0-multiproc")
		padding  = fs.Bool("padding", false, "add python_*, process_* and http_* families like a real scrape")
		timeline = fs.Duration("timeline", 0, "write timeline snapshots at this interval while requests are in flight (0 = none)")
		first    = fs.Bool("first", false, "write a first snapshot at each request's first token")
		before   = fs.Duration("before-delay", 0, "delay of the before snapshot after arrival")
		after    = fs.Duration("after-delay", 0, "delay of the after snapshot after the finish")
		jitter   = fs.Duration("after-jitter", 0, "uniform jitter (±) of the after snapshot, never before the finish")
		start    = fs.String("start", "", "start time of the run, RFC 3339 (default: a fixed date)")
		profile  = fs.String("profile", "vllm", "server profile: "+profileNames())
		capture  = fs.Bool("capture", false, "write what delta-exporter capture writes: scrape times and info sidecars")
		nonStr   = fs.Float64("non-streaming", 0, "with -capture: fraction of requests that do not stream")
		slots    = fs.Int("max-running", 0, "requests an engine runs at once (0: the profile's default, else 48)")
		srvMet   = fs.Bool("server-metrics", false, "with -capture: vLLM's per-request metrics object in each info sidecar")
		clients  = fs.Int("clients", 0, "closed-loop clients instead of Poisson arrivals (-inflight is then not used)")
		phases   = fs.String("phases", "", "with -clients: phases run first on the same server process, clients:requests,… (e.g. 1:10,4:20); -requests counts them")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := generate(*out, *truth, simConfig{
		requests: *requests, inflight: *inflight, seed: *seed, models: *models, engines: *engines,
		style: *style, padding: *padding, timeline: *timeline, first: *first,
		before: *before, after: *after, jitter: *jitter, start: *start,
		profile: *profile, capture: *capture, nonStreaming: *nonStr, maxRunning: *slots, serverMetrics: *srvMet, clients: *clients, phases: *phases,
	}, stdout); err != nil {
		fmt.Fprintln(stderr, "gendata:", err)
		return 1
	}
	return 0
}

type simConfig struct {
	requests                int
	inflight                float64
	seed                    int64
	models                  string
	engines                 int
	style                   string
	padding, first          bool
	timeline, before, after time.Duration
	jitter                  time.Duration
	start                   string
	profile                 string
	capture                 bool
	nonStreaming            float64
	maxRunning              int
	serverMetrics           bool
	clients                 int
	phases                  string
}

func profileNames() string {
	var names []string
	for _, p := range simulate.Profiles() {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

func generate(out, truthPath string, c simConfig, stdout io.Writer) error {
	if out == "" || truthPath == "" {
		return errors.New("-out and -truth are required")
	}
	st, err := simulate.ParseStyle(c.style)
	if err != nil {
		return err
	}
	cfg := simulate.Config{
		Seed: c.seed, Requests: c.requests, MeanInFlight: c.inflight, Engines: c.engines,
		Server:      simulate.ServerConfig{Style: st, Padding: c.padding},
		BeforeDelay: c.before, AfterDelay: c.after, AfterJitter: c.jitter,
		TimelineInterval: c.timeline, FirstSnapshots: c.first,
		Capture: c.capture, NonStreaming: c.nonStreaming, MaxRunning: c.maxRunning, ServerMetrics: c.serverMetrics, Clients: c.clients,
	}
	if cfg.Phases, err = simulate.ParsePhases(c.phases); err != nil {
		return err
	}
	p, err := simulate.ParseProfile(c.profile)
	if err != nil {
		return err
	}
	if err := p.Apply(&cfg); err != nil {
		return err
	}
	if c.style != "v1" && cfg.Server.Style != simulate.V1 && cfg.Server.Style != st {
		return fmt.Errorf("-style %s and -profile %s disagree", c.style, c.profile)
	}
	if c.models != "" {
		cfg.Models = strings.Split(c.models, ",")
	}
	if c.start != "" {
		if cfg.Start, err = time.Parse(time.RFC3339Nano, c.start); err != nil {
			return fmt.Errorf("-start: %w", err)
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty", out)
	}
	sink := &countingSink{next: simulate.DirSink(out)}
	truths, err := simulate.Run(cfg, sink)
	if err != nil {
		return err
	}
	f, err := os.Create(truthPath)
	if err != nil {
		return err
	}
	if err := simulate.WriteTruth(f, truths); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d snapshots (%d bytes) for %d requests to %s, truth to %s; measured mean in flight %.2f\n",
		sink.files, sink.bytes, len(truths), out, truthPath, simulate.MeasuredInFlight(truths))
	return nil
}

// countingSink reports what went through it.
type countingSink struct {
	next         simulate.Sink
	files, bytes int
}

func (c *countingSink) Snapshot(name string, body []byte) error {
	c.files++
	c.bytes += len(body)
	return c.next.Snapshot(name, body)
}
