package capture

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
)

// The cost benchmarks compare calling the fake upstream directly with
// calling it through the capture proxy, on loopback. Run them alone:
//
//	go test -run XXX -bench 'AddedLatency' -benchtime 1x ./internal/capture   # ~55 s
//	go test -run XXX -bench 'Throughput' -benchtime 1x ./internal/capture     # ~15 s
//
// The clients (in the benchmark's process), the proxy and the fake
// upstream run in three processes, as in production, where the server and
// its clients are not in the proxy's process. In one process they share
// the Go scheduler: while the proxy wrote the files of a request (system
// calls that keep their P), the fake started handling the next request
// 1.6 ms after it was sent at the median, a delay a separate server does
// not suffer. The three processes still share the machine's cores.
//
// Environment:
//
//	CAPTURE_BENCH_DIR          parent of the snapshot directory (file creation
//	                           costs differ a lot between filesystems); else
//	                           the proxy process's temporary directory
//	CAPTURE_BENCH_PASSTHROUGH  non-empty: no inference path, a plain reverse
//	                           proxy, for comparison
//	CAPTURE_BENCH_CPUPROFILE   write the proxy process's CPU profile there

// benchHelperEnv selects the role of a helper process.
const benchHelperEnv = "CAPTURE_BENCH_HELPER"

// TestBenchHelper is not a test: it is the fake upstream or the proxy of
// the cost benchmarks, run by benchProcess in a process of its own. It
// prints "URL <base URL>" once serving, and serves until its standard
// input is closed.
func TestBenchHelper(t *testing.T) {
	role := os.Getenv(benchHelperEnv)
	if role == "" {
		t.Skip("the helper process of the cost benchmarks")
	}
	var h http.Handler
	switch role {
	case "fake":
		h = benchFake(t)
	case "proxy":
		var stop func()
		h, stop = benchProxy(t)
		defer stop()
	default:
		t.Fatalf("unknown role %q", role)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	fmt.Println("URL", srv.URL)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// benchFake serves a fake upstream whose requests all follow the plan in
// CAPTURE_BENCH_PLAN ("prefill,decode,prompt tokens,generated tokens"),
// and /-/bench/scrapes: how often /metrics was asked.
func benchFake(t *testing.T) http.Handler {
	f := strings.Split(os.Getenv("CAPTURE_BENCH_PLAN"), ",")
	if len(f) != 4 {
		t.Fatal("CAPTURE_BENCH_PLAN wants prefill,decode,prompt,generated")
	}
	prefill, err1 := time.ParseDuration(f[0])
	decode, err2 := time.ParseDuration(f[1])
	prompt, err3 := strconv.Atoi(f[2])
	gen, err4 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		t.Fatal("bad CAPTURE_BENCH_PLAN")
	}
	plan := fakeupstream.Plan{Prefill: prefill, Decode: decode, PromptTokens: prompt, GenerationTokens: gen}
	fake := fakeupstream.New(fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan { return plan }})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/bench/scrapes", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, fake.Scrapes())
	})
	mux.Handle("/", fake)
	return mux
}

// benchProxy serves a capture proxy in front of CAPTURE_BENCH_UPSTREAM,
// ready, and /-/bench/wait, which waits for the files of the requests
// that have ended (call it only while no request is in flight) and
// answers the number of files written so far.
func benchProxy(t *testing.T) (http.Handler, func()) {
	u, err := url.Parse(os.Getenv("CAPTURE_BENCH_UPSTREAM"))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{Upstream: u, Dir: t.TempDir(), Registerer: reg, ScrapeBudget: DefaultScrapeBudget}
	if parent := os.Getenv("CAPTURE_BENCH_DIR"); parent != "" {
		if cfg.Dir, err = os.MkdirTemp(parent, "capture-bench-"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(cfg.Dir) })
	}
	if os.Getenv("CAPTURE_BENCH_PASSTHROUGH") != "" {
		cfg.Paths = []string{"/none"}
	}
	if path := os.Getenv("CAPTURE_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pprof.StopCPUProfile(); _ = f.Close() })
	}
	fmt.Println("CREATE_US", probeCreate(t, cfg.Dir))
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() {
		_ = p.Run(ctx)
		close(runDone)
	}()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := p.WaitReady(wctx); err != nil {
		t.Fatal("proxy never ready: ", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/bench/wait", func(w http.ResponseWriter, _ *http.Request) {
		p.Wait()
		mfs, _ := reg.Gather()
		var files float64
		for _, mf := range mfs {
			if mf.GetName() == "delta_exporter_capture_snapshots_written_total" {
				for _, m := range mf.GetMetric() {
					files += m.GetCounter().GetValue()
				}
			}
		}
		fmt.Fprint(w, files)
	})
	// The mean time to create a file during the run, in µs.
	mux.HandleFunc("GET /-/bench/files", func(w http.ResponseWriter, _ *http.Request) {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "delta_exporter_capture_file_create_seconds" {
				if h := mf.GetMetric()[0].GetHistogram(); h.GetSampleCount() > 0 {
					fmt.Fprintf(w, "create_mean_µs %g\n", h.GetSampleSum()/float64(h.GetSampleCount())*1e6)
				}
			}
		}
	})
	mux.Handle("/", p)
	return mux, func() {
		cancel()
		<-runDone
		_ = p.Close()
	}
}

// probeCreate returns the median time, in µs, to create an empty file in
// a subdirectory of dir (the files stay until dir is removed). It varies a
// lot between filesystems, and on some over time (on an ext4 without a
// journal it grows with the files deleted in the last minutes), and the
// proxy creates two or three files per request: the benchmarks report it.
func probeCreate(t *testing.T, dir string) float64 {
	probe := filepath.Join(dir, ".bench-probe")
	if err := os.Mkdir(probe, 0o755); err != nil {
		t.Fatal(err)
	}
	d := make([]time.Duration, 100)
	for i := range d {
		t0 := time.Now()
		f, err := os.OpenFile(filepath.Join(probe, strconv.Itoa(i)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		d[i] = time.Since(t0)
		_ = f.Close()
	}
	return float64(percentile(d, .5).Nanoseconds()) / 1e3
}

// benchProcess starts a helper process (TestBenchHelper) and returns its
// base URL, and the "KEY value" lines it printed before. The process ends
// when the benchmark does.
func benchProcess(b *testing.B, role string, env ...string) (string, map[string]string) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchHelper$", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(append(os.Environ(), benchHelperEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	cmd.WaitDelay = 30 * time.Second
	b.Cleanup(func() {
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("%s process: %v", role, err)
		}
	})
	info := map[string]string{}
	var out []string
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		key, value, _ := strings.Cut(lines.Text(), " ")
		if key == "URL" {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return value, info
		}
		info[key] = value
		out = append(out, lines.Text())
	}
	b.Fatalf("%s process ended before serving:\n%s", role, strings.Join(out, "\n"))
	return "", nil
}

// benchSetup starts the fake upstream with plan and the proxy in front
// of it, each in its own process; it returns their base URLs and a
// function reporting the cost of creating files (call it after b.Loop,
// which drops earlier metrics): create_µs, the median time to create a
// file in the snapshot directory when the proxy started, and
// create_mean_µs, the mean over the run from the proxy's metrics.
func benchSetup(b *testing.B, plan fakeupstream.Plan) (upstream, proxy string, reportFiles func()) {
	upstream, _ = benchProcess(b, "fake", fmt.Sprintf("CAPTURE_BENCH_PLAN=%v,%v,%d,%d",
		plan.Prefill, plan.Decode, plan.PromptTokens, plan.GenerationTokens))
	proxy, info := benchProcess(b, "proxy", "CAPTURE_BENCH_UPSTREAM="+upstream)
	return upstream, proxy, func() {
		if v, err := strconv.ParseFloat(info["CREATE_US"], 64); err == nil {
			b.ReportMetric(v, "create_µs")
		}
		resp, err := http.Get(proxy + "/-/bench/files")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			name, value, _ := strings.Cut(lines.Text(), " ")
			if v, err := strconv.ParseFloat(value, 64); err == nil {
				b.ReportMetric(v, name)
			}
		}
	}
}

// benchGet asks a helper's bench endpoint and returns the number it
// answers.
func benchGet(b *testing.B, c *http.Client, u string) float64 {
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	v, err := strconv.ParseFloat(strings.TrimSpace(string(body)), 64)
	if err != nil {
		b.Fatalf("%s: %q", u, body)
	}
	return v
}

func benchClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 256
	t.DisableCompression = true
	return &http.Client{Transport: t}
}

// call sends one chat completion and reads the whole response. It
// returns when the first body byte and the end arrived.
func call(c *http.Client, base string, stream bool) (first, end time.Duration, err error) {
	body := `{"messages":[{"content":"hi"}],"max_tokens":4,"stream":false}`
	if stream {
		body = `{"messages":[{"content":"hi"}],"max_tokens":4,"stream":true,"stream_options":{"include_usage":true}}`
	}
	t0 := time.Now()
	resp, err := c.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var b [1]byte
	if _, err := io.ReadFull(resp.Body, b[:]); err != nil {
		return 0, 0, err
	}
	first = time.Since(t0)
	_, err = io.Copy(io.Discard, resp.Body)
	return first, time.Since(t0), err
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// latencyBlock is one block of BenchmarkAddedLatency: k direct calls, then
// k proxied calls.
type latencyBlock struct {
	direct, proxied           []time.Duration // to the end of the response
	directFirst, proxiedFirst []time.Duration // to the first body byte
}

// gapInterval is a 90 % interval of the p99 gap (p99 proxied − p99
// direct) by a block bootstrap: blocks drawn with replacement, so the
// interval keeps the drift between blocks.
func gapInterval(blocks []latencyBlock, pick func(latencyBlock) (direct, proxied []time.Duration)) (lo, hi time.Duration) {
	const rounds = 400
	rng := rand.New(rand.NewPCG(1, 2))
	gaps := make([]time.Duration, rounds)
	var direct, proxied []time.Duration
	for r := range gaps {
		direct, proxied = direct[:0], proxied[:0]
		for range blocks {
			d, p := pick(blocks[rng.IntN(len(blocks))])
			direct, proxied = append(direct, d...), append(proxied, p...)
		}
		gaps[r] = percentile(proxied, .99) - percentile(direct, .99)
	}
	return percentile(gaps, .05), percentile(gaps, .95)
}

// BenchmarkAddedLatency: one client, requests of about 5 ms (2 ms of
// prefill, 4 tokens over 3 ms), JSON and streaming, 2000 of each direct
// and 2000 through the proxy, in blocks of 10 direct calls then 10
// proxied calls (blocks cancel most drift of a shared machine).
//
// The direct calls are the baseline of a server without the proxy: each
// direct block starts once the proxy's background work for the calls
// before it is done, so that work is not charged to the baseline. The
// proxied calls of a block follow each other at once: each one runs
// beside the files, scrapes and timeline snapshots of the calls before
// it, as in production. Nothing waits for the proxy between proxied calls.
//
// The target figure is *_p99_gap_µs, p99 proxied − p99 direct (latency to
// the end of the response), with a 90 % bootstrap interval
// (*_p99_gap_lo_µs, *_p99_gap_hi_µs). Also reported: p50 and p99 of both,
// the p50 and p99 of the paired difference (the i-th proxied call of a
// block minus its i-th direct call), and for streams the same to the
// first byte.
func BenchmarkAddedLatency(b *testing.B) {
	up, proxy, reportFiles := benchSetup(b, fakeupstream.Plan{Prefill: 2 * time.Millisecond, Decode: 3 * time.Millisecond, PromptTokens: 9, GenerationTokens: 4})
	const n, k, warm = 2000, 10, 100
	for b.Loop() {
		for _, stream := range []bool{false, true} {
			c := benchClient()
			for range warm { // connections, pools
				for _, base := range []string{up, proxy} {
					if _, _, err := call(c, base, stream); err != nil {
						b.Fatal(err)
					}
				}
			}
			blocks := make([]latencyBlock, n/k)
			for i := range blocks {
				bl := &blocks[i]
				benchGet(b, c, proxy+"/-/bench/wait") // the baseline runs without the proxy's work
				for range k {
					f, e, err := call(c, up, stream)
					if err != nil {
						b.Fatal(err)
					}
					bl.direct, bl.directFirst = append(bl.direct, e), append(bl.directFirst, f)
				}
				for range k {
					f, e, err := call(c, proxy, stream)
					if err != nil {
						b.Fatal(err)
					}
					bl.proxied, bl.proxiedFirst = append(bl.proxied, e), append(bl.proxiedFirst, f)
				}
			}
			var direct, proxied, diff, directFirst, proxiedFirst, diffFirst []time.Duration
			for _, bl := range blocks {
				direct, proxied = append(direct, bl.direct...), append(proxied, bl.proxied...)
				directFirst, proxiedFirst = append(directFirst, bl.directFirst...), append(proxiedFirst, bl.proxiedFirst...)
				for j := range bl.direct {
					diff = append(diff, bl.proxied[j]-bl.direct[j])
					diffFirst = append(diffFirst, bl.proxiedFirst[j]-bl.directFirst[j])
				}
			}
			name := "json"
			if stream {
				name = "sse"
			}
			lo, hi := gapInterval(blocks, func(bl latencyBlock) ([]time.Duration, []time.Duration) { return bl.direct, bl.proxied })
			reportLatency(b, name, direct, proxied, diff, lo, hi)
			if stream {
				lo, hi := gapInterval(blocks, func(bl latencyBlock) ([]time.Duration, []time.Duration) { return bl.directFirst, bl.proxiedFirst })
				reportLatency(b, name+"_first", directFirst, proxiedFirst, diffFirst, lo, hi)
			}
		}
	}
	reportFiles()
}

// reportLatency reports one latency's figures: the p99 gap (proxied p99
// minus direct p99) with its interval [lo, hi], both sides' p50 and p99,
// and the paired difference's p50 and p99.
func reportLatency(b *testing.B, name string, direct, proxied, diff []time.Duration, lo, hi time.Duration) {
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(percentile(proxied, .99)-percentile(direct, .99)), name+"_p99_gap_µs")
	b.ReportMetric(us(lo), name+"_p99_gap_lo_µs")
	b.ReportMetric(us(hi), name+"_p99_gap_hi_µs")
	b.ReportMetric(us(percentile(direct, .5)), name+"_direct_p50_µs")
	b.ReportMetric(us(percentile(direct, .99)), name+"_direct_p99_µs")
	b.ReportMetric(us(percentile(proxied, .5)), name+"_proxy_p50_µs")
	b.ReportMetric(us(percentile(proxied, .99)), name+"_proxy_p99_µs")
	b.ReportMetric(us(percentile(diff, .5)), name+"_added_p50_µs")
	b.ReportMetric(us(percentile(diff, .99)), name+"_added_p99_µs")
}

// BenchmarkThroughput64: 64 streaming clients back to back for 5 s,
// direct then through the proxy. Requests have 20 ms of prefill and 16
// tokens 10 ms apart (a 170 ms stream, 100 tokens/s per client). Reports
// completed requests per second each way, their ratio, and how long the
// proxy took after the window to write the files of its requests.
func BenchmarkThroughput64(b *testing.B) {
	up, proxy, reportFiles := benchSetup(b, fakeupstream.Plan{Prefill: 20 * time.Millisecond, Decode: 150 * time.Millisecond, PromptTokens: 9, GenerationTokens: 16})
	const clients, window = 64, 5 * time.Second
	run := func(base string) float64 {
		c := benchClient()
		var done atomic.Int64
		stop := time.Now().Add(window)
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if _, _, err := call(c, base, true); err != nil {
						b.Error(err)
						return
					}
					done.Add(1)
				}
			})
		}
		wg.Wait()
		return float64(done.Load()) / window.Seconds()
	}
	c := benchClient()
	var files float64
	for b.Loop() {
		direct := run(up)
		proxied := run(proxy)
		ended := time.Now()
		files = benchGet(b, c, proxy+"/-/bench/wait")
		b.ReportMetric(direct, "direct_req/s")
		b.ReportMetric(proxied, "proxy_req/s")
		b.ReportMetric(100*proxied/direct, "%of_direct")
		// Work the window did not pay for: writing the files of its
		// requests after the last response.
		b.ReportMetric(float64(time.Since(ended).Milliseconds()), "drain_ms")
	}
	reportFiles()
	b.ReportMetric(files, "files")
	b.ReportMetric(benchGet(b, c, up+"/-/bench/scrapes"), "scrapes")
}
