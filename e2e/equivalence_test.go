package e2e

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/report"
	"github.com/delta-exporter/delta-exporter/internal/serve"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/parser"
)

// aggregate is what /metrics can show of a set of per-request results:
// per family and model, the count and sum of the published values, and the
// requests per outcome.
type aggregate struct {
	hist     map[string][2]float64 // "family|model" -> count, sum
	outcomes map[string]float64
}

func fromReport(rep *report.Report) aggregate {
	a := aggregate{hist: map[string][2]float64{}, outcomes: map[string]float64{}}
	add := func(name, model string, v attribution.Value) {
		if !v.Exact {
			return
		}
		k := name + "|" + model
		h := a.hist[k]
		a.hist[k] = [2]float64{h[0] + 1, h[1] + v.V}
	}
	for _, r := range rep.Requests {
		a.outcomes[string(r.Outcome)]++
		// The proxy's own times, whatever the outcome (collector.publishProxy).
		pm := cmp.Or(r.Model, r.Proxy.Model)
		add("llm_request_proxy_time_to_first_token_seconds", pm, attribution.Value{V: r.Proxy.TTFT, Exact: r.Proxy.HasTTFT})
		add("llm_request_proxy_e2e_seconds", pm, attribution.Value{V: r.Proxy.E2E, Exact: r.Proxy.HasE2E})
		if r.Outcome == attribution.Rejected || r.Outcome == attribution.Unpaired {
			continue
		}
		for m, v := range r.Values {
			add("llm_request_"+parser.Metric(m).Name(), r.Model, v)
		}
		add("llm_request_time_per_output_token_seconds", r.Model, r.TPOT)
	}
	// The population families: the server's own histograms over the same
	// snapshots, in the report's summary.
	for _, ms := range rep.Summary.Models {
		for m, p := range ms.Population {
			if p != nil {
				a.hist["llm_population_"+parser.Metric(m).Name()+"|"+ms.Model] = [2]float64{float64(p.Count), p.Total}
			}
		}
	}
	return a
}

func fromRegistry(t *testing.T, reg *prometheus.Registry) aggregate {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	a := aggregate{hist: map[string][2]float64{}, outcomes: map[string]float64{}}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case mf.GetType() == dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				if h.GetSampleCount() == 0 {
					continue
				}
				a.hist[mf.GetName()+"|"+m.GetLabel()[0].GetValue()] = [2]float64{float64(h.GetSampleCount()), h.GetSampleSum()}
			case mf.GetName() == "delta_exporter_requests_total":
				if v := m.GetCounter().GetValue(); v > 0 {
					a.outcomes[m.GetLabel()[0].GetValue()] = v
				}
			}
		}
	}
	return a
}

func (a aggregate) equal(t *testing.T, b aggregate, what string) {
	t.Helper()
	if fmt.Sprint(a.outcomes) != fmt.Sprint(b.outcomes) {
		t.Errorf("%s: outcomes %v, report %v", what, a.outcomes, b.outcomes)
	}
	keys := map[string]bool{}
	for k := range a.hist {
		keys[k] = true
	}
	for k := range b.hist {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		x, y := a.hist[k], b.hist[k]
		// Sums are added in a different order: allow float rounding.
		if x[0] != y[0] || math.Abs(x[1]-y[1]) > 1e-9*math.Max(1, math.Abs(y[1])) {
			t.Errorf("%s: %s count/sum %v, report %v", what, k, x, y)
		}
	}
}

// runServe serves dir in-process until the returned stop is called.
func runServe(t testing.TB, dir string) (*prometheus.Registry, <-chan struct{}, func()) {
	return runServeWith(t, dir, time.Millisecond, 5*time.Millisecond)
}

// runServeWith is runServe with a settle time and a tick interval.
func runServeWith(t testing.TB, dir string, settle, tick time.Duration) (*prometheus.Registry, <-chan struct{}, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	ready := make(chan struct{})
	addrs := []string{"127.0.0.1:0"}
	cfgFile := ""
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := serve.Config{Dir: dir, Registry: reg, Ready: ready, DisableExporterMetrics: true,
		Web: &web.FlagConfig{WebListenAddresses: &addrs, WebConfigFile: &cfgFile}}
	cfg.Ingest.MaxDelay = time.Minute // decide only when no open request overlaps
	cfg.Ingest.TrustAfters = true     // the simulator's pairs: afters follow their finish
	cfg.Ingest.Settle = settle
	cfg.Watch.RescanInterval = time.Second
	cfg.TickInterval = tick
	go func() { done <- serve.Run(ctx, cfg) }()
	return reg, ready, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestServeAndReportAgree: on the same directory, the exporter's initial
// scan and `report` publish the same per-request values; so does the
// exporter when the same files arrive one by one while it runs.
func TestServeAndReportAgree(t *testing.T) {
	src := t.TempDir()
	truths, err := simulate.Run(simulate.Config{Seed: 5, Requests: 120, MeanInFlight: 4,
		Models: []string{"llama-8b", "qwen-32b"}, Engines: 2, AfterJitter: 10 * time.Millisecond},
		simulate.DirSink(src))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := report.Run(context.Background(), report.Config{FS: os.DirFS(src), TrustAfters: true})
	if err != nil {
		t.Fatal(err)
	}
	want := fromReport(rep)
	if want.outcomes["exact"] == 0 || want.outcomes["exact"] == float64(len(truths)) {
		t.Fatalf("the directory should mix exact and withheld requests: %v", want.outcomes)
	}

	t.Run("initial scan", func(t *testing.T) {
		reg, ready, stop := runServe(t, src)
		defer stop()
		<-ready
		fromRegistry(t, reg).equal(t, want, "initial scan")
	})

	t.Run("live", func(t *testing.T) {
		live := t.TempDir()
		reg, ready, stopServe := runServe(t, live)
		stop := sync.OnceFunc(stopServe)
		defer stop()
		<-ready
		entries, err := os.ReadDir(src)
		if err != nil {
			t.Fatal(err)
		}
		// The simulator's names sort in time order within a second; sort
		// by parsed time to copy them as they were written.
		sort.Slice(entries, func(i, j int) bool {
			a, _ := parser.ParseName(entries[i].Name())
			b, _ := parser.ParseName(entries[j].Name())
			return a.Time.Before(b.Time)
		})
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(src, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(live, "."+e.Name()+".tmp")
			if err := os.WriteFile(tmp, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(live, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			got := fromRegistry(t, reg)
			n := 0.0
			for _, v := range got.outcomes {
				n += v
			}
			if n >= float64(len(truths)) || time.Now().After(deadline) {
				// Compare once the exporter has stopped: a Gather runs
				// each collector at its own moment, so one taken while
				// the last requests are published can count all of them
				// and show only part of their values (what /metrics
				// avoids by gathering between publications).
				stop()
				fromRegistry(t, reg).equal(t, want, "live")
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
