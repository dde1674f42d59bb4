// Command delta-exporter turns /metrics snapshots taken around each request
// of an LLM inference server into exact per-request latency histograms.
//
// main only wires: flags -> logger -> the chosen command. Each command lives
// in its own file of this package and builds its components from the
// packages named after the pipeline steps.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
)

func main() {
	fillVersion()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand: it registers its flags on the application and
// returns the function that runs it once the flags are parsed.
type command func(app *kingpin.Application, env *env) (name string, run func(context.Context) int)

// env is what every command gets from main.
type env struct {
	stdout, stderr io.Writer
	logConfig      *promslog.Config
}

// logger builds the logger from the parsed --log.* flags.
func (e *env) logger() *slog.Logger {
	return promslog.New(e.logConfig)
}

// run parses args and runs the chosen command. It returns the process exit
// code: 0 on success, 1 on a runtime error, 2 on bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("delta-exporter", "Exact per-request latency histograms for LLM inference servers, from /metrics snapshots.")
	app.UsageWriter(stderr)
	app.ErrorWriter(stderr)
	// --help and --version end the program in kingpin; here they end run,
	// so that tests can call it and defers run.
	terminated := false
	app.Terminate(func(int) { terminated = true })
	app.Version(version.Print("delta-exporter"))
	app.HelpFlag.Short('h')

	e := &env{stdout: stdout, stderr: stderr, logConfig: &promslog.Config{Writer: stderr}}
	flag.AddFlags(app, e.logConfig)

	runners := map[string]func(context.Context) int{}
	for _, c := range []command{serveCommand, reportCommand, captureCommand} {
		name, r := c(app, e)
		runners[name] = r
	}
	chosen, err := app.Parse(args)
	if terminated {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "delta-exporter: %v (try --help)\n", err)
		return 2
	}
	r, ok := runners[chosen]
	if !ok {
		// --help and --version end here: kingpin printed what was asked.
		return 0
	}
	return r(ctx)
}

// The flags below are shared by serve and report, so that both decide
// alike. Every flag's default is the Default* constant of the Config it
// sets, and its value goes into that Config unchanged: 0 means in the flag
// what a zero field means in the Config.

// observeDelayFlag is the A6 bound (ingest.Config.MaxObserveDelay).
func observeDelayFlag(c *kingpin.CmdClause, d *time.Duration) {
	c.Flag("attribution.max-observe-delay", "Assumption A6 (docs/attribution.md): the server observes a value at most this long after the moment it measures to. Bounds values from below in capture-written directories; 0: no such checks.").
		Default(durationDefault(ingest.DefaultMaxObserveDelay)).DurationVar(d)
}

// trustAftersFlag: the user vouches for every after in the directory
// (ingest.Config.TrustAfters).
func trustAftersFlag(c *kingpin.CmdClause, b *bool) {
	c.Flag("attribution.trust-afters", "Every after snapshot in the directory was taken once the request's response had ended, as capture's are: per-request values of pairs from other snapshot tools are otherwise withheld (unvouched). Wrong for a tool that can take an after early: its values can then be wrong (docs/attribution.md, \"What A1 rests on\").").
		BoolVar(b)
}

// maxBytesFlag bounds a snapshot file (ingest.Config.MaxBytes); the value
// is read once the flags are parsed.
func maxBytesFlag(c *kingpin.CmdClause) func() int64 {
	b := c.Flag("snapshot.max-bytes", "Snapshot files larger than this are rejected.").
		Default(bytesDefault(ingest.DefaultMaxBytes)).Bytes()
	return func() int64 { return int64(*b) }
}

// durationDefault spells d as a flag's default, without Duration.String's
// trailing zero units ("10m", not "10m0s").
func durationDefault(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// bytesDefault spells n as a flag's default in the largest binary unit
// that divides it ("64MiB").
func bytesDefault(n int64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
