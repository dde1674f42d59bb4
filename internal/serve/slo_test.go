package serve

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/crypto/bcrypt"

	"github.com/delta-exporter/delta-exporter/internal/ingest"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// TestSLOAndRequestsPage runs the exporter with objectives and basic auth:
// verdicts on /metrics, the requests page and its JSON behind the same
// auth, and reloads by POST /-/reload and by signal that swap a valid
// file in and keep the objectives in force when the file is bad.
func TestSLOAndRequestsPage(t *testing.T) {
	dir := t.TempDir()
	snaps := filepath.Join(dir, "snapshots")
	if err := os.Mkdir(snaps, 0o755); err != nil {
		t.Fatal(err)
	}
	writePairs(t, snaps, 0, 5, fixed) // e2e 0.23 s, TTFT 0.05 s each
	sloFile := filepath.Join(dir, "slo.yml")
	writeFile := func(s string) {
		if err := os.WriteFile(sloFile, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("objectives:\n  - {name: fast, target: 0.99, thresholds: {e2e: 100ms}}\n  - {name: first-token, target: 0.9, thresholds: {ttft: 1s}}\n")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webConfig := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(webConfig, []byte("basic_auth_users:\n  u: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	addr := testutil.FreeAddr(t)
	cfg := func(ready chan struct{}, reload chan os.Signal) Config {
		addrs, systemd := []string{addr}, false
		// writePairs' pairs, read with --attribution.trust-afters.
		return Config{Dir: snaps, SLOFile: sloFile, Reload: reload, Ready: ready, Logger: discard(), Ingest: ingest.Config{TrustAfters: true},
			Web: &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: &systemd, WebConfigFile: &webConfig}}
	}

	// A bad file at start: the exporter does not start.
	writeFile("objectives:\n  - {name: fast, target: 0.99, thresholds: {e2e: 100}}\n")
	if err := Run(t.Context(), cfg(nil, nil)); err == nil || !strings.Contains(err.Error(), "--slo.config") {
		t.Fatalf("bad objectives at start: %v", err)
	}
	writeFile("objectives:\n  - {name: fast, target: 0.99, thresholds: {e2e: 100ms}}\n  - {name: first-token, target: 0.9, thresholds: {ttft: 1s}}\n")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready, reload := make(chan struct{}), make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg(ready, reload)) }()
	<-ready

	get := func(method, path string, auth bool) (int, string) {
		t.Helper()
		for i := 0; ; i++ {
			req, _ := http.NewRequest(method, "http://"+addr+path, nil)
			if auth {
				req.SetBasicAuth("u", "pw")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				if i == 100 {
					t.Fatal(err)
				}
				time.Sleep(20 * time.Millisecond) // the listener starts right after the loop
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
	}
	// waitMetrics polls /metrics until it holds (or lacks) a line.
	waitMetrics := func(line string, present bool) string {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, body := get("GET", "/metrics", true)
			if strings.Contains(body, line) == present {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("/metrics: %q present=%v never reached:\n%s", line, !present, grepLines(body, "slo"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	body := waitMetrics(`llm_request_slo_total{model_name="org/model",result="missed",slo="fast"} 5`, true)
	for _, line := range []string{
		`llm_request_slo_total{model_name="org/model",result="met",slo="first-token"} 5`,
		`llm_request_slo_total{model_name="org/model",result="unknown",slo="fast"} 0`,
		`delta_exporter_slo_objectives 2`,
		`delta_exporter_slo_config_last_reload_successful 1`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}

	for _, path := range []string{"/requests", "/requests.json", "/metrics", "/"} {
		if code, _ := get("GET", path, false); code != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", path, code)
		}
	}
	if code, page := get("GET", "/", true); code != 200 || !strings.Contains(page, `href="/requests"`) {
		t.Errorf("landing page: %d, no link to /requests", code)
	}
	code, page := get("GET", "/requests?outcome=exact&sort=e2e_seconds&order=asc", true)
	if code != 200 || strings.Count(page, `<tr class="outcome-exact">`) != 5 || !strings.Contains(page, "fast: missed") {
		t.Errorf("/requests: %d, %d rows\n%s", code, strings.Count(page, `<tr class="outcome-exact">`), page)
	}
	code, js := get("GET", "/requests.json", true)
	var doc struct {
		Requests []struct {
			RequestID string         `json:"request_id"`
			Values    map[string]any `json:"values"`
			SLO       []struct{ SLO, Result string }
		} `json:"requests"`
	}
	if err := json.Unmarshal([]byte(js), &doc); err != nil || code != 200 {
		t.Fatalf("/requests.json: %d %v", code, err)
	}
	if len(doc.Requests) != 5 || doc.Requests[0].RequestID != "req-0004" || math.Abs(doc.Requests[0].Values["e2e_seconds"].(float64)-0.23) > 1e-9 ||
		len(doc.Requests[0].SLO) != 2 || doc.Requests[0].SLO[0].Result != "missed" {
		t.Errorf("/requests.json: %+v\n%s", doc.Requests[0], js)
	}

	// Reload by POST: a bad file is refused and the objectives stay.
	writeFile("objectives:\n  - {name: fast, target: 0.99, thresholds: {e2e: 100ms}, extra: 1}\n")
	if code, msg := get("POST", "/-/reload", true); code != http.StatusInternalServerError || !strings.Contains(msg, "extra") {
		t.Errorf("reload of a bad file: %d %q", code, msg)
	}
	if code, _ := get("GET", "/-/reload", true); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload: %d", code)
	}
	body = waitMetrics(`delta_exporter_slo_config_last_reload_successful 0`, true)
	if !strings.Contains(body, `delta_exporter_slo_objectives 2`) {
		t.Error("a refused reload changed the objectives")
	}
	// Reload by signal: the new file is swapped in, the old objective's
	// series go.
	writeFile("objectives:\n  - {name: fast, target: 0.99, thresholds: {e2e: 1s}}\n")
	reload <- os.Interrupt // any value: the command sends SIGHUP
	body = waitMetrics(`slo="first-token"`, false)
	if !strings.Contains(body, `delta_exporter_slo_objectives 1`) {
		t.Errorf("after the reload:\n%s", grepLines(body, "slo"))
	}
	if code, _ := get("POST", "/-/reload", true); code != 200 {
		t.Errorf("reload of a good file: %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
