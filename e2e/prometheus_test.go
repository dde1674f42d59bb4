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

	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// prometheusBinary finds Debian's prometheus; without it the test is
// skipped locally but fails in CI, where .ci/run installs it.
func prometheusBinary(t *testing.T) string {
	p, err := exec.LookPath("prometheus")
	if err != nil {
		testutil.Missing(t, "prometheus not installed (apt-get install prometheus)")
	}
	return p
}

// TestPrometheusScrapesPerRequestHistograms: the built binary ingests a
// directory, more pairs arrive while it runs, and a real Prometheus with
// exemplar storage scrapes it: the query API returns one observation per
// request and an exemplar carrying a request id.
func TestPrometheusScrapesPerRequestHistograms(t *testing.T) {
	prom := prometheusBinary(t)
	bin := binary(t)
	dir := t.TempDir()
	w := newWriter(t, dir)
	for i := 0; i < 4; i++ {
		w.request()
	}

	exporter := testutil.FreeAddr(t)
	start(t, bin, "--snapshots.dir="+dir, "--attribution.trust-afters", "--web.listen-address="+exporter, "--log.level=debug")
	base := "http://" + exporter
	waitFor(t, "exporter ready", 30*time.Second, func() (bool, string) {
		code, body, err := httpGet(context.Background(), base+"/-/ready", nil)
		return err == nil && code == 200, fmt.Sprint(code, string(body), err)
	})

	promDir := t.TempDir()
	promAddr := testutil.FreeAddr(t)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: delta
    static_configs:
      - targets: ['%s']
`, exporter)
	cfgPath := filepath.Join(promDir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	start(t, prom, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(promDir, "data"),
		"--web.listen-address="+promAddr, "--enable-feature=exemplar-storage")
	promBase := "http://" + promAddr

	// Pairs added live, after the initial scan.
	for i := 0; i < 3; i++ {
		w.request()
	}
	want := fmt.Sprint(len(w.sent))
	waitFor(t, "Prometheus to see every request", 60*time.Second, func() (bool, string) {
		v, err := promQuery(promBase, `sum(llm_request_e2e_seconds_count)`)
		return err == nil && v == want, fmt.Sprint(v, err)
	})
	for q, wantV := range map[string]string{
		`sum(delta_exporter_requests_total{outcome="exact"})`: want,
		`sum(llm_request_time_to_first_token_seconds_count)`:  want,
		`sum(llm_request_prompt_tokens_sum)`:                  fmt.Sprint(sumTokens(w)),
	} {
		v, err := promQuery(promBase, q)
		if err != nil || v != wantV {
			t.Errorf("%s = %q (%v), want %s", q, v, err, wantV)
		}
	}

	// Exemplars: the request ids are there, on the buckets.
	end := time.Now().Add(time.Minute)
	q := url.Values{"query": {"llm_request_e2e_seconds_bucket"}, "start": {fmt.Sprint(time.Now().Add(-time.Hour).Unix())}, "end": {fmt.Sprint(end.Unix())}}
	waitFor(t, "an exemplar with a request id", 30*time.Second, func() (bool, string) {
		_, body, err := httpGet(context.Background(), promBase+"/api/v1/query_exemplars?"+q.Encode(), nil)
		if err != nil {
			return false, err.Error()
		}
		var r struct {
			Data []struct {
				Exemplars []struct {
					Labels map[string]string
				}
			}
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return false, string(body)
		}
		for _, d := range r.Data {
			for _, e := range d.Exemplars {
				if strings.HasPrefix(e.Labels["request_id"], "chatcmpl-e2e_") {
					return true, ""
				}
			}
		}
		return false, string(body)
	})

	// The exposition passes promtool's lint.
	if promtool, err := exec.LookPath("promtool"); err == nil {
		_, body, err := httpGet(context.Background(), base+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(string(body))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
}

func sumTokens(w *writer) int {
	s := 0
	for _, f := range w.sent {
		s += f.PromptTokens
	}
	return s
}
