package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// exporterBuild is cmd/delta-exporter, built once for the package; TestMain
// removes it.
var exporterBuild testutil.Exporter

// binary returns the path of the exporter binary.
func binary(t *testing.T) string {
	t.Helper()
	return exporterBuild.Path(t)
}

// start runs a command until the test ends; its output goes to the test log
// on failure. The directories the tests serve are pairs written once each
// request's finish is observed (the simulator, testutil): the exporter
// reads them with --attribution.trust-afters.
func start(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	if name == binary(t) && !hasFlag(args, "--data.dir") && !hasFlag(args, "--state.file") {
		// The default --data.dir is ./data: a state file kept in the
		// source tree would outlive the test and make the next run's
		// exporter skip the pairs as already published.
		args = append(args, "--data.dir="+t.TempDir())
	}
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), out.String())
		}
	})
	return cmd
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

// waitFor polls cond every 100ms until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s (last: %s)", timeout, what, last)
}

func httpGet(ctx context.Context, u string, header map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// promQuery runs an instant query and returns the first sample's value.
func promQuery(base, q string) (string, error) {
	_, body, err := httpGet(context.Background(), base+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return "", err
	}
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("%v: %s", err, body)
	}
	if len(r.Data.Result) == 0 {
		return "", nil
	}
	return fmt.Sprint(r.Data.Result[0].Value[1]), nil
}

// writer produces sequential requests of a simulated vLLM server.
type writer struct {
	*testutil.Snapshots
	seq  int
	sent []simulate.Finish
}

func newWriter(t testing.TB, dir string) *writer {
	return newWriterModels(t, dir, "meta-llama/Llama-3.1-8B-Instruct")
}

// newWriterModels is newWriter for a server of several models.
func newWriterModels(t testing.TB, dir string, models ...string) *writer {
	s := testutil.NewSnapshots(t, dir, models...)
	s.Now, s.Step = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), 137*time.Millisecond
	return &writer{Snapshots: s}
}

// request writes one sequential request: before, observations, after.
func (w *writer) request() string {
	f := simulate.Finish{Queue: 0.01 * float64(w.seq+1), Prefill: 0.05, Decode: 0.5 + 0.01*float64(w.seq+1),
		PromptTokens: 101 + w.seq, GenerationTokens: 21 + w.seq}
	f.Inference = f.Prefill + f.Decode
	f.E2E = f.Queue + f.Inference + 0.003
	return w.requestAs("meta-llama/Llama-3.1-8B-Instruct", f)
}

// requestAs writes one sequential request of model with the given
// finish observations (TTFT is queue + prefill + 2 ms).
func (w *writer) requestAs(model string, f simulate.Finish) string {
	w.seq++
	id := fmt.Sprintf("chatcmpl-e2e_%03d", w.seq)
	w.Request(id, model, f.Queue+f.Prefill+0.002, f)
	w.sent = append(w.sent, f)
	return id
}
