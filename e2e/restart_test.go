package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/state"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// sampleSum adds the values of the exposition lines whose name (before
// the labels) is name.
func sampleSum(body []byte, name string) (float64, bool) {
	sum, found := 0.0, false
	for _, l := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		sum, found = sum+v, true
	}
	return sum, found
}

// generations tracks what the scrapes saw of each exporter process. The
// lock makes a scrape belong to one process: a restart waits for the
// scrapes in flight (they fail fast: the old process is dead) before the
// next process starts.
type generations struct {
	// mu is held shared by a scrape in flight and exclusively to move to
	// the next process.
	mu  sync.RWMutex
	gen int
	// data guards what the scrapes saw.
	data    sync.Mutex
	count   []float64 // last llm_request_e2e_seconds_count seen, per process
	sum     []float64 // last llm_request_e2e_seconds_sum seen, per process
	history []float64 // every count seen, in order (what Prometheus stores)
	// pop is the last llm_population_e2e_seconds_count seen, per process.
	pop     []float64
	scrapes int
	// inflight is set while a scrape is in flight; started counts the
	// scrapes begun.
	inflight atomic.Bool
	started  atomic.Int64
	// abandoned counts the scrapes this side gave up on (its 2 s
	// timeout): the exporter may have recorded one (its record is written
	// before the fsync, which a loaded disk can make slow) whose answer
	// was never read.
	abandoned atomic.Int64
}

func (g *generations) scrape(base string) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	g.started.Add(1)
	g.inflight.Store(true)
	defer g.inflight.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	code, body, err := httpGet(ctx, base+"/metrics", nil)
	if errors.Is(err, context.DeadlineExceeded) {
		g.abandoned.Add(1)
	}
	if err != nil || code != 200 {
		return
	}
	c, ok := sampleSum(body, "llm_request_e2e_seconds_count")
	if !ok {
		c = 0 // nothing published yet: the histogram has no series
	}
	s, _ := sampleSum(body, "llm_request_e2e_seconds_sum")
	p, _ := sampleSum(body, "llm_population_e2e_seconds_count")
	g.data.Lock()
	defer g.data.Unlock()
	g.count[g.gen], g.sum[g.gen], g.pop[g.gen] = c, s, p
	g.history = append(g.history, c)
	g.scrapes++
}

func (g *generations) next() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.data.Lock()
	defer g.data.Unlock()
	g.gen++
	g.count, g.sum, g.pop = append(g.count, 0), append(g.sum, 0), append(g.pop, 0)
}

// popTotal is the population's e2e count over every process.
func (g *generations) popTotal() (n float64) {
	g.data.Lock()
	defer g.data.Unlock()
	for _, v := range g.pop {
		n += v
	}
	return n
}

func (g *generations) totals() (count, sum float64) {
	g.data.Lock()
	defer g.data.Unlock()
	for i := range g.count {
		count += g.count[i]
		sum += g.sum[i]
	}
	return count, sum
}

// naiveIncrease is increase() over the whole history as Prometheus
// computes it from the samples alone: a drop is a reset.
func (g *generations) naiveIncrease() (inc float64, resets int) {
	g.data.Lock()
	defer g.data.Unlock()
	prev := 0.0
	for _, v := range g.history {
		if v < prev {
			inc += v
			resets++
		} else {
			inc += v - prev
		}
		prev = v
	}
	return inc, resets
}

// recorded counts the requests a state file holds.
func recorded(t *testing.T, path string) float64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	entries, _, err := state.Parse(data)
	if err != nil {
		t.Fatalf("state file after SIGKILL: %v", err)
	}
	return float64(len(entries))
}

// checkRecord checks, after a kill, that the record holds what the
// scrapes saw (else the next process would show it again), and more only
// if the kill cut a scrape in flight: that surplus was recorded and never
// seen, lost, and added to *lost.
func checkRecord(t *testing.T, kill int, what string, rec, seen float64, lost *float64, cut bool) {
	t.Helper()
	switch {
	case rec < seen+*lost:
		t.Fatalf("kill %d: scrapes saw %v %s, the record holds %v: the next process would count %v again",
			kill, seen, what, rec, seen+*lost-rec)
	case rec > seen+*lost && !cut:
		t.Fatalf("kill %d: the record holds %v %s, scrapes saw %v, and no scrape was in flight", kill, rec, what, seen+*lost)
	case rec > seen+*lost:
		t.Logf("kill %d cut a scrape after its record was written: %v %s lost", kill, rec-seen-*lost, what)
		*lost = rec - seen
	}
}

// recordedPopulation is the e2e observations the population records next
// to the state file hold: what scrapes showed of llm_population_*.
func recordedPopulation(t *testing.T, stateFile string) float64 {
	t.Helper()
	data, err := os.ReadFile(stateFile + ".population")
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	live, _, err := state.ParseRecords(data)
	if err != nil {
		t.Fatalf("population records after SIGKILL: %v", err)
	}
	n := 0.0
	for _, v := range live {
		var r struct {
			Metric string
			Lo, Hi struct{ Count float64 }
		}
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			t.Fatal(err)
		}
		if r.Metric == "e2e_seconds" {
			n += r.Hi.Count - r.Lo.Count
		}
	}
	return n
}

// TestRestartKill9CountsEachPairOnce: the exporter is killed with SIGKILL
// at random moments (while pairs arrive, during scrapes, during its
// initial scan), pairs are written while it is down, and it is started
// again. Over the exporter's lifetime no pair is counted twice, and none
// is lost but in the one documented window: a kill after a scrape's
// record was made durable and before its answer reached the scraper
// (docs/guarantees.md). The test checks this exactly: after each kill the
// state file must hold every request the scrapes saw (else the next
// process would count it again) and may hold more only if the kill cut a
// scrape in flight; at the end, the counts every process showed plus
// those cut-scrape losses equal the pairs written.
func TestRestartKill9CountsEachPairOnce(t *testing.T) {
	bin := binary(t)
	dir, data := t.TempDir(), t.TempDir()
	addr := testutil.FreeAddr(t)
	base := "http://" + addr
	args := []string{"--snapshots.dir=" + dir, "--attribution.trust-afters", "--data.dir=" + data, "--web.listen-address=" + addr,
		"--attribution.max-delay=50ms", "--watch.rescan-interval=300ms", "--log.level=debug"}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DELTA_RESTART_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (DELTA_RESTART_SEED to replay)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	stateFile := filepath.Join(data, "delta-exporter.state")
	lost := 0.0    // recorded, never seen: the kill cut the scrape that showed them
	popLost := 0.0 // the same for the population's observations
	w := newWriter(t, dir)
	g := &generations{count: []float64{0}, sum: []float64{0}, pop: []float64{0}}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(15 * time.Millisecond):
				g.scrape(base)
			}
		}
	}()

	const rounds = 6
	var cmd *exec.Cmd
	for r := 0; r <= rounds; r++ {
		cmd = start(t, bin, args...)
		if r == rounds {
			break
		}
		abandoned := g.abandoned.Load()
		// Run for a while: pairs arrive, scrapes happen.
		for n := rng.IntN(25); n > 0; n-- {
			w.request()
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		cut, started := g.inflight.Load(), g.started.Load()
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cut = cut || g.inflight.Load()
		cmd.Wait()
		// SIGKILL takes effect a moment after Signal returns (long on a
		// loaded machine): a scrape begun in between may have been
		// recorded by the dying process and never answered.
		cut = cut || g.started.Load() != started
		// So may a scrape given up on while the process lived.
		cut = cut || g.abandoned.Load() != abandoned
		g.next()
		seen, _ := g.totals()
		checkRecord(t, r+1, "requests", recorded(t, stateFile), seen, &lost, cut)
		// The population's record follows the same rule.
		checkRecord(t, r+1, "population observations", recordedPopulation(t, stateFile), g.popTotal(), &popLost, cut)
		// Pairs written while it is down.
		for n := rng.IntN(10); n > 0; n-- {
			w.request()
		}
	}
	want := float64(len(w.sent))
	waitFor(t, "every pair counted", 60*time.Second, func() (bool, string) {
		c, _ := g.totals()
		// The population counts the observations between the first
		// before and the last after: one per pair.
		if c+lost >= want && g.popTotal()+popLost >= want {
			return true, ""
		}
		// Say where a missing pair went.
		_, body, _ := httpGet(context.Background(), base+"/metrics", nil)
		var diag []string
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "delta_exporter_requests") || strings.HasPrefix(l, "delta_exporter_state_records") ||
				strings.HasPrefix(l, "delta_exporter_snapshots_re") {
				diag = append(diag, l)
			}
		}
		g.data.Lock()
		perProcess := fmt.Sprint(g.count)
		g.data.Unlock()
		return false, fmt.Sprintf("%v (+%v lost) of %v; per process %s; final process: %s", c, lost, want, perProcess, strings.Join(diag, ", "))
	})
	// A few more scrapes and rescans: nothing more may show up.
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	count, sum := g.totals()
	wantSum := 0.0
	for _, f := range w.sent {
		wantSum += f.E2E
	}
	if count+lost != want {
		t.Fatalf("pairs counted over the lifetime: %v (+%v lost in cut scrapes), written %v", count, lost, want)
	}
	if lost == 0 && math.Abs(sum-wantSum) > 1e-6*wantSum {
		t.Fatalf("sum of e2e over the lifetime %v, truth %v", sum, wantSum)
	}
	if lost > 0 && sum > wantSum*(1+1e-6) {
		t.Fatalf("sum of e2e over the lifetime %v > truth %v", sum, wantSum)
	}
	if pop := g.popTotal(); pop+popLost != want {
		t.Fatalf("population observations shown over the lifetime: %v (+%v lost in cut scrapes), true %v", pop, popLost, want)
	}
	naive, resets := g.naiveIncrease()
	if naive > want {
		t.Fatalf("increase() from the samples alone is %v > %v pairs: a double count", naive, want)
	}
	t.Logf("%v pairs, %d processes (%d SIGKILLs), %d scrapes; counted once: %v, lost in cut scrapes: %v, twice: 0; increase() from samples alone %v (%d resets visible); population: %v shown once, %v lost in cut scrapes",
		want, rounds+1, rounds, g.scrapes, count, lost, naive, resets, g.popTotal(), popLost)
	st, err := os.Stat(filepath.Join(data, "delta-exporter.state"))
	if err != nil || st.Size() == 0 {
		t.Fatalf("state file: %v", err)
	}
}

// TestCorruptStateFileIsSetAside: a state file that does not parse does
// not stop the exporter: it is moved aside, explained in the log and
// counted, and the record starts empty.
func TestCorruptStateFileIsSetAside(t *testing.T) {
	bin := binary(t)
	dir, data := t.TempDir(), t.TempDir()
	w := newWriter(t, dir)
	w.request()
	stateFile := filepath.Join(data, "delta-exporter.state")
	if err := os.WriteFile(stateFile, []byte("\x00\x01garbage\n. 1 00000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testutil.FreeAddr(t)
	start(t, bin, "--snapshots.dir="+dir, "--attribution.trust-afters", "--state.file="+stateFile, "--web.listen-address="+addr)
	var body []byte
	waitFor(t, "the pair published", 30*time.Second, func() (bool, string) {
		var err error
		_, body, err = httpGet(context.Background(), "http://"+addr+"/metrics", nil)
		c, _ := sampleSum(body, "llm_request_e2e_seconds_count")
		return err == nil && c == 1, fmt.Sprint(c, err)
	})
	if v, _ := sampleSum(body, `delta_exporter_state_recoveries_total{reason="corrupt"}`); v != 1 {
		t.Fatalf("corrupt state not counted:\n%s", body)
	}
	moved, _ := filepath.Glob(stateFile + ".corrupt-*")
	if len(moved) != 1 {
		t.Fatalf("corrupt file not moved aside: %v", moved)
	}
}
