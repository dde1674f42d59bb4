package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// prometheus3Binary returns the Prometheus 3.x named by DELTA_PROMETHEUS3
// (.ci/run builds one from the module proxy). Without it the test is
// skipped, unless CI is set.
func prometheus3Binary(t *testing.T) string {
	t.Helper()
	p := os.Getenv("DELTA_PROMETHEUS3")
	if p == "" {
		testutil.Missing(t, "DELTA_PROMETHEUS3 not set: no Prometheus 3.x to test against (.ci/run builds one: go build github.com/prometheus/prometheus/cmd/prometheus)")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("DELTA_PROMETHEUS3=%s: %v", p, err)
	}
	return p
}

// shippedConfig is deploy/prometheus/config/prometheus.yml made to run
// here: the exporter's job points at target, every interval is 1s, the
// rule file is the repository's, and the inference server's job is gone.
// For Prometheus 2.x, legacy drops the settings 2.x does not know,
// as deploy/README.md tells 2.x users to.
func shippedConfig(t *testing.T, target string, legacy bool) []byte {
	t.Helper()
	b, err := os.ReadFile("../deploy/prometheus/config/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs("../deploy/prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	cfg["rule_files"] = []any{rules}
	global := cfg["global"].(map[string]any)
	global["scrape_interval"], global["evaluation_interval"] = "1s", "1s"
	var jobs []any
	for _, j := range cfg["scrape_configs"].([]any) {
		job := j.(map[string]any)
		if job["job_name"] != "delta-exporter" {
			continue
		}
		job["static_configs"] = []any{map[string]any{"targets": []any{target}}}
		if legacy {
			for _, k := range legacySettings {
				delete(job, k)
			}
		}
		jobs = append(jobs, job)
	}
	if len(jobs) != 1 {
		t.Fatalf("prometheus.yml: %d delta-exporter jobs, want 1", len(jobs))
	}
	cfg["scrape_configs"] = jobs
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// legacySettings are the scrape settings of the shipped configuration that
// Debian's Prometheus 2.42 rejects (deploy/README.md, "Prometheus").
var legacySettings = []string{"scrape_protocols", "scrape_native_histograms", "always_scrape_classic_histograms"}

// exemplarIDs returns the request ids of the exemplars Prometheus stored
// for a family (native series and classic buckets), by model.
func exemplarIDs(base, family string) (map[string]map[string]bool, error) {
	q := url.Values{
		"query": {fmt.Sprintf(`{__name__=~"%s(_bucket)?"}`, family)},
		"start": {fmt.Sprint(time.Now().Add(-time.Hour).Unix())},
		"end":   {fmt.Sprint(time.Now().Add(time.Minute).Unix())},
	}
	_, body, err := httpGet(context.Background(), base+"/api/v1/query_exemplars?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string
		Data   []struct {
			SeriesLabels map[string]string `json:"seriesLabels"`
			Exemplars    []struct {
				Labels map[string]string
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
		return nil, fmt.Errorf("query_exemplars: %v: %s", err, body)
	}
	out := map[string]map[string]bool{}
	for _, d := range r.Data {
		m := d.SeriesLabels["model_name"]
		if out[m] == nil {
			out[m] = map[string]bool{}
		}
		for _, e := range d.Exemplars {
			out[m][e.Labels["request_id"]] = true
		}
	}
	return out, nil
}

// TestPrometheusExemplars runs the shipped Prometheus configuration
// against the exporter while two models' requests are decided in bursts
// between scrapes, a few of them slow. Prometheus 3.x, with the documented
// settings, must store the exemplar of every slow request of every model
// (issue 15: with the client's default exemplar retention and native
// histograms alone it kept one model's fast ones). Debian's 2.42, the
// floor, runs the same configuration without the 3.x settings: it must
// count every request, load and evaluate the rules, and store exemplars
// for every model, though not necessarily for every request. On both,
// every dashboard query must run, and the all-requests TTFT quantiles and
// the coverage per family must have a value for every model.
func TestPrometheusExemplars(t *testing.T) {
	if testing.Short() {
		t.Skip("long: two Prometheus servers, bursts of requests")
	}
	t.Run("prometheus3", func(t *testing.T) {
		exemplarRun(t, prometheus3Binary(t), false)
	})
	t.Run("debian", func(t *testing.T) {
		exemplarRun(t, prometheusBinary(t), true)
	})
}

func exemplarRun(t *testing.T, prom string, legacy bool) {
	out, _ := exec.Command(prom, "--version").CombinedOutput()
	t.Logf("%s", strings.SplitN(string(out), "\n", 2)[0])
	bin := binary(t)
	dir := t.TempDir()
	models := []string{"org/model-a", "org/model-b"}
	w := newWriterModels(t, dir, models...)

	exporter := testutil.FreeAddr(t)
	start(t, bin, "--snapshots.dir="+dir, "--attribution.trust-afters", "--web.listen-address="+exporter)
	waitFor(t, "exporter ready", 30*time.Second, func() (bool, string) {
		code, body, err := httpGet(context.Background(), "http://"+exporter+"/-/ready", nil)
		return err == nil && code == 200, fmt.Sprint(code, string(body), err)
	})

	promDir := t.TempDir()
	cfgPath := filepath.Join(promDir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, shippedConfig(t, exporter, legacy), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := testutil.FreeAddr(t)
	start(t, prom, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address="+promAddr, "--enable-feature=exemplar-storage")
	promBase := "http://" + promAddr
	waitFor(t, "Prometheus ready", 60*time.Second, func() (bool, string) {
		code, body, err := httpGet(context.Background(), promBase+"/-/ready", nil)
		return err == nil && code == 200, fmt.Sprint(code, string(body), err)
	})

	// Three bursts of 30 requests per model, each decided between two
	// scrapes (fewer than the default --exemplars.max-per-series). In the
	// first and the last every 10th request is slow (20 s and more end to
	// end, far above the rest); the second is a slow phase: every request
	// is slow, all within a few tenths of a second of each other, which is
	// what the client's default retention (10, evicted by value proximity)
	// and one exemplar per classic bucket lose.
	const bursts, perModel = 3, 30
	slow := map[string][]string{}
	total := 0
	for b := 0; b < bursts; b++ {
		for i := 0; i < perModel; i++ {
			for k, m := range models {
				f := simulate.Finish{Queue: 0.01, Prefill: 0.05 + 0.01*float64(k), Decode: 0.3 + 0.001*float64(i),
					PromptTokens: 100 + i, GenerationTokens: 20 + i}
				isSlow := i%10 == 9 || b == 1
				switch {
				case b == 1:
					f.Queue, f.Decode = 5, 15+0.01*float64(i)
				case isSlow:
					f.Queue, f.Decode = 5+float64(b), 15+float64(i)
				}
				f.Inference = f.Prefill + f.Decode
				f.E2E = f.Queue + f.Inference + 0.003
				id := w.requestAs(m, f)
				if isSlow {
					slow[m] = append(slow[m], id)
				}
				total++
			}
		}
		want := fmt.Sprint(total)
		waitFor(t, "Prometheus to count the burst", 60*time.Second, func() (bool, string) {
			v, err := promQuery(promBase, `histogram_count(sum(llm_request_e2e_seconds)) or sum(llm_request_e2e_seconds_count)`)
			return err == nil && v == want, fmt.Sprint(v, " want ", want, " ", err)
		})
	}

	// The recording rules load and evaluate without error.
	waitFor(t, "rules evaluated", 30*time.Second, func() (bool, string) {
		_, body, err := httpGet(context.Background(), promBase+"/api/v1/rules", nil)
		if err != nil {
			return false, err.Error()
		}
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name, Health, LastError string
					}
				}
			}
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return false, string(body)
		}
		n := 0
		for _, g := range r.Data.Groups {
			for _, rl := range g.Rules {
				if rl.Health != "ok" {
					return false, fmt.Sprintf("rule %s: %s %s", rl.Name, rl.Health, rl.LastError)
				}
				n++
			}
		}
		return n > 0, string(body)
	})

	// Every dashboard query runs without error, and the headline panels
	// over all requests have a value for every model.
	for _, q := range dashboardQueries(t) {
		_, body, err := httpGet(context.Background(), promBase+"/api/v1/query?query="+url.QueryEscape(q.expr), nil)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Status, Error string
			Data          struct {
				Result []struct {
					Metric map[string]string
				}
			}
		}
		if err := json.Unmarshal(body, &r); err != nil || r.Status != "success" {
			t.Errorf("dashboard panel %q: %s: %v %s", q.panel, q.expr, err, body)
			continue
		}
		if strings.HasPrefix(q.panel, "Time to first token p50 / p90 / p99 (all requests)") ||
			strings.HasPrefix(q.panel, "Coverage per family") {
			got := map[string]bool{}
			for _, s := range r.Data.Result {
				got[s.Metric["model_name"]] = true
			}
			for _, m := range models {
				if !got[m] {
					t.Errorf("dashboard panel %q: no value for model %s: %s", q.panel, m, q.expr)
				}
			}
		}
	}

	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		ids, err := exemplarIDs(promBase, "llm_request_e2e_seconds")
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		counts := map[string]int{}
		for _, m := range models {
			counts[m] = len(ids[m])
			if legacy {
				if len(ids[m]) == 0 {
					missing = append(missing, m+": no exemplar at all")
				}
				continue
			}
			for _, id := range slow[m] {
				if !ids[m][id] {
					missing = append(missing, m+" "+id)
				}
			}
		}
		last = fmt.Sprintf("exemplars stored per model (of %d requests each): %v; missing: %v", bursts*perModel, counts, missing)
		if len(missing) == 0 {
			t.Log(last)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

type dashboardQuery struct{ panel, expr string }

// dashboardQueries returns every query of the shipped Grafana dashboard,
// with its variables set as Grafana would for "All" models.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	b, err := os.ReadFile("../deploy/grafana/delta-exporter.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string
		Targets []struct{ Expr string }
		Panels  []json.RawMessage
	}
	var d struct{ Panels []panel }
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$model_name", ".*", "$__rate_interval", "1m", "${__rate_interval}", "1m")
	var out []dashboardQuery
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, dashboardQuery{p.Title, vars.Replace(tg.Expr)})
		}
	}
	if len(out) == 0 {
		t.Fatal("no dashboard queries")
	}
	return out
}
