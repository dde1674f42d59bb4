package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// vmHWM reads a process's peak resident set size (VmHWM) in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// TestBurst: thousands of pairs land in the directory at once while the
// exporter runs (more inotify events than the kernel queue holds): every
// request is decided once, no file is read twice or rejected, and the
// exporter's peak RSS stays bounded (it keeps a few numbers per pending
// request, not files). DELTA_BURST_PAIRS sets the size (default 2000, 300
// with -short, which may not overflow the inotify queue; the
// README's figure is from 10000).
func TestBurst(t *testing.T) {
	pairs := 2000
	if testing.Short() {
		pairs = 300
	}
	if s := os.Getenv("DELTA_BURST_PAIRS"); s != "" {
		pairs, _ = strconv.Atoi(s)
	}
	bin := binary(t)
	staging, dir := t.TempDir(), t.TempDir()
	// Realistic files: padding makes a scrape about 35-45 KB; requests
	// overlap (2 in flight on average), one model on one engine.
	truths, err := simulate.Run(simulate.Config{Seed: 6, Requests: pairs, MeanInFlight: 2,
		Server: simulate.ServerConfig{Padding: true}}, simulate.DirSink(staging))
	if err != nil || len(truths) != pairs {
		t.Fatalf("simulate: %d truths, %v", len(truths), err)
	}
	entries, err := os.ReadDir(staging)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var bytes int64
	for _, e := range entries {
		names = append(names, e.Name())
		if info, err := e.Info(); err == nil {
			bytes += info.Size()
		}
	}
	sort.Strings(names)

	addr := testutil.FreeAddr(t)
	data := t.TempDir()
	cmd := start(t, bin, "--snapshots.dir="+dir, "--attribution.trust-afters", "--data.dir="+data, "--web.listen-address="+addr, "--log.level=warn")
	base := "http://" + addr
	waitFor(t, "exporter ready", 30*time.Second, func() (bool, string) {
		code, _, err := httpGet(context.Background(), base+"/-/ready", nil)
		return err == nil && code == 200, fmt.Sprint(code, err)
	})
	idle, _ := vmHWM(cmd.Process.Pid)

	t0 := time.Now()
	for _, n := range names {
		if err := os.Rename(filepath.Join(staging, n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	moved := time.Since(t0)
	var body []byte
	var decided float64
	deadline := time.Duration(pairs/20+60) * time.Second
	waitFor(t, "every request decided", deadline, func() (bool, string) {
		_, body, err = httpGet(context.Background(), base+"/metrics", nil)
		decided, _ = sampleSum(body, "delta_exporter_requests_total")
		return err == nil && decided >= float64(pairs), fmt.Sprintf("%v of %d", decided, pairs)
	})
	elapsed := time.Since(t0)
	peak, err := vmHWM(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	// Let rescans run: nothing may be decided twice.
	time.Sleep(1500 * time.Millisecond)
	_, body, err = httpGet(context.Background(), base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) float64 { v, _ := sampleSum(body, name); return v }
	if d := get("delta_exporter_requests_total"); d != float64(pairs) {
		t.Fatalf("requests decided %v, want %d", d, pairs)
	}
	if r := get("delta_exporter_snapshots_read_total"); r != float64(len(names)) {
		t.Fatalf("snapshots read %v, want %d (each file once)", r, len(names))
	}
	if r := get("delta_exporter_snapshots_rejected_total"); r != 0 {
		t.Fatalf("snapshots rejected: %v", r)
	}
	exact := get(`delta_exporter_requests_total{outcome="exact"}`)
	if c := get("llm_request_e2e_seconds_count"); c > float64(pairs) || c < exact {
		t.Fatalf("e2e observations %v for %d requests, %v exact", c, pairs, exact)
	}
	if r := get("delta_exporter_state_records"); r != float64(pairs) {
		t.Fatalf("state records %v, want %d", r, pairs)
	}
	st, err := os.Stat(filepath.Join(data, "delta-exporter.state"))
	if err != nil {
		t.Fatal(err)
	}
	const rssBound = 256 << 20
	if peak > rssBound {
		t.Fatalf("peak RSS %d MiB > %d MiB", peak>>20, rssBound>>20)
	}
	t.Logf("burst of %d pairs (%d files, %.0f MiB) renamed in %v; all decided after %v: %.0f files/s; exact %v; "+
		"exporter VmHWM %.1f MiB (%.1f MiB before the burst); overflow rescans %v; state file %d KiB",
		pairs, len(names), float64(bytes)/(1<<20), moved.Round(time.Millisecond), elapsed.Round(time.Millisecond),
		float64(len(names))/elapsed.Seconds(), exact, float64(peak)/(1<<20), float64(idle)/(1<<20),
		get(`delta_exporter_rescans_total{trigger="overflow"}`), st.Size()>>10)
}
