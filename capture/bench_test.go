package capture

import (
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/fakeupstream"
)

// The cost benchmarks compare calling the fake upstream directly with
// calling it through the capture proxy, in one process on loopback: the
// clients, the proxy (with its scrapes and file writes) and the fake share
// the machine's cores. Run them alone (about 30 s):
//
//	go test -run XXX -bench 'AddedLatency|Throughput' -benchtime 1x ./capture
//
// The snapshot directory is made under $CAPTURE_BENCH_DIR when set (file
// creation costs differ a lot between filesystems), else in the test's
// temporary directory.

// benchDir sets the snapshot directory of a benchmark's proxy.
func benchDir(b *testing.B) func(*Config) {
	return func(c *Config) {
		parent := os.Getenv("CAPTURE_BENCH_DIR")
		if parent == "" {
			return
		}
		dir, err := os.MkdirTemp(parent, "capture-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
		c.Dir = dir
		if os.Getenv("CAPTURE_BENCH_PASSTHROUGH") != "" {
			c.Paths = []string{"/none"} // a plain reverse proxy, for comparison
		}
	}
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

// BenchmarkAddedLatency: one client, requests of about 5 ms (2 ms of
// prefill, 4 tokens over 3 ms), alternately direct and through the proxy,
// JSON and streaming. Reports p50 and p99 of the direct and proxied
// latencies (to the end of the response; for streams also to the first
// byte), and the p50 and p99 of the paired difference (each proxied call
// minus the direct call just before it, which cancels most drift of a
// shared machine).
func BenchmarkAddedLatency(b *testing.B) {
	h := newHarness(b, fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan {
		return fakeupstream.Plan{Prefill: 2 * time.Millisecond, Decode: 3 * time.Millisecond, PromptTokens: 9, GenerationTokens: 4}
	}}, benchDir(b))
	h.waitReady()
	const n, warm = 1000, 50
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	for b.Loop() {
		for _, stream := range []bool{false, true} {
			c := benchClient()
			var direct, proxied, diff, directFirst, proxiedFirst, diffFirst []time.Duration
			for i := range n + warm {
				df, de, err := call(c, h.up.URL, stream)
				if err != nil {
					b.Fatal(err)
				}
				pf, pe, err := call(c, h.srv.URL, stream)
				if err != nil {
					b.Fatal(err)
				}
				if i < warm {
					continue // connections, pools
				}
				direct, proxied, diff = append(direct, de), append(proxied, pe), append(diff, pe-de)
				directFirst, proxiedFirst, diffFirst = append(directFirst, df), append(proxiedFirst, pf), append(diffFirst, pf-df)
			}
			name := "json"
			if stream {
				name = "sse"
			}
			b.ReportMetric(us(percentile(direct, .5)), name+"_direct_p50_µs")
			b.ReportMetric(us(percentile(direct, .99)), name+"_direct_p99_µs")
			b.ReportMetric(us(percentile(proxied, .5)), name+"_proxy_p50_µs")
			b.ReportMetric(us(percentile(proxied, .99)), name+"_proxy_p99_µs")
			b.ReportMetric(us(percentile(diff, .5)), name+"_added_p50_µs")
			b.ReportMetric(us(percentile(diff, .99)), name+"_added_p99_µs")
			b.ReportMetric(us(percentile(proxied, .99)-percentile(direct, .99)), name+"_p99_gap_µs")
			if stream {
				b.ReportMetric(us(percentile(directFirst, .99)), name+"_first_direct_p99_µs")
				b.ReportMetric(us(percentile(proxiedFirst, .99)), name+"_first_proxy_p99_µs")
				b.ReportMetric(us(percentile(diffFirst, .5)), name+"_first_added_p50_µs")
				b.ReportMetric(us(percentile(diffFirst, .99)), name+"_first_added_p99_µs")
			}
		}
	}
	h.p.Wait()
}

// BenchmarkThroughput64: 64 streaming clients back to back for 5 s,
// direct then through the proxy. Requests have 20 ms of prefill and 16
// tokens 10 ms apart (a 170 ms stream, 100 tokens/s per client). Reports
// completed requests per second each way and their ratio.
func BenchmarkThroughput64(b *testing.B) {
	h := newHarness(b, fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan {
		return fakeupstream.Plan{Prefill: 20 * time.Millisecond, Decode: 150 * time.Millisecond, PromptTokens: 9, GenerationTokens: 16}
	}}, benchDir(b))
	h.waitReady()
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
	for b.Loop() {
		direct := run(h.up.URL)
		proxied := run(h.srv.URL)
		b.ReportMetric(direct, "direct_req/s")
		b.ReportMetric(proxied, "proxy_req/s")
		b.ReportMetric(100*proxied/direct, "%of_direct")
	}
	h.p.Wait()
	b.ReportMetric(h.counter("delta_exporter_capture_snapshots_written_total"), "files")
	b.ReportMetric(float64(h.fake.Scrapes()), "scrapes")
}
