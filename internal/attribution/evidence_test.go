package attribution_test

import (
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
)

// stateOf is assumption a's state on the run's only server process.
func stateOf(t *testing.T, s tally, a attribution.Assumption) attribution.State {
	t.Helper()
	if len(s.assumptions) != 1 {
		t.Fatalf("%d server processes, want 1", len(s.assumptions))
	}
	return s.assumptions[0].Status[a].State
}

// TestServerMetricsEvidence: the server's own per-request queue time
// (capture's server_metrics) is confirmed on vLLM V1 and then rules out
// queue candidates that disagree: never a wrong value, never fewer exact
// requests than without it.
func TestServerMetricsEvidence(t *testing.T) {
	n := accuracyRequests(200, 60)
	cfg := runConfig(n, 16, 0.3, simulate.ProfileVLLMSteps, 42)
	without := measure(t, cfg, false)
	cfg.ServerMetrics = true
	with := measure(t, cfg, false)
	if with.wrong != 0 || without.wrong != 0 {
		t.Fatalf("wrong values: %d with server metrics, %d without", with.wrong, without.wrong)
	}
	if got := stateOf(t, with, attribution.ServerQueueTime); got != attribution.Confirmed {
		t.Errorf("server_queue_time %s, want confirmed", got)
	}
	if got := stateOf(t, without, attribution.ServerQueueTime); got != attribution.Unchecked {
		t.Errorf("without server metrics: server_queue_time %s, want unchecked", got)
	}
	if with.exactRequests < without.exactRequests {
		t.Errorf("server metrics made fewer requests exact: %d, %d without", with.exactRequests, without.exactRequests)
	}
	t.Logf("exact requests at 16 in flight, capture: %d of %d with server metrics, %d without", with.exactRequests, with.requests, without.exactRequests)
}

// TestProfileAssumptionStates: the emulator profile's data contradict the
// assumptions it breaks, and vLLM V1's confirm them.
func TestProfileAssumptionStates(t *testing.T) {
	n := accuracyRequests(200, 80)
	vllm := measure(t, runConfig(n, 16, 0.3, simulate.ProfileVLLMSteps, 42), false)
	emu := measure(t, runConfig(n, 16, 0.3, simulate.ProfileEmulator, 42), true)
	var queue attribution.Assumption
	for _, a := range attribution.Assumptions() {
		if a.Name() == "moment_finish_queue_seconds" {
			queue = a
		}
	}
	for _, c := range []struct {
		name string
		s    tally
		a    attribution.Assumption
		want attribution.State
	}{
		{"vllm", vllm, attribution.TTFTContainsQueuePrefill, attribution.Confirmed},
		{"vllm", vllm, attribution.TTFTWithinE2E, attribution.Confirmed},
		{"vllm", vllm, queue, attribution.Confirmed},
		{"emulator", emu, queue, attribution.Contradicted},
		{"emulator", emu, attribution.TTFTContainsQueuePrefill, attribution.Unchecked},
	} {
		if got := stateOf(t, c.s, c.a); got != c.want {
			t.Errorf("%s: %s %s, want %s", c.name, c.a.Name(), got, c.want)
		}
	}
}
