package simulate

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/delta-exporter/delta-exporter/parser"
)

// Semantics are the ways a server's metrics can differ from vLLM V1's,
// which the zero value imitates. Each is a fact of some real server (the
// Profile constants name them); a Truth always holds what the simulated
// server really observed, and Truth.Missing what it never observed.
type Semantics struct {
	// Steps runs the engines step-synchronously (steps.go): the
	// first-token and finish observations of one engine step are made
	// together, sharing the step's timestamp, after the frontend's output
	// handler delay. vLLM V1 works this way; without Steps each request
	// is timed on its own, in continuous time.
	Steps bool

	// TTFTFromSchedule: the TTFT is measured from when the request was
	// scheduled, leaving out the time it waited (llm-d-inference-sim).
	TTFTFromSchedule bool
	// QueueAtDequeue: the queue time is observed when the request leaves
	// the queue for a slot, and only for requests that had to wait for one
	// (llm-d-inference-sim). Its count then drifts from the finish count.
	QueueAtDequeue bool
	// PrefillAtFirstToken: the prefill time is observed with the TTFT, at
	// the first token, and comes out slightly above it: the emulator times
	// it from a slightly earlier start (llm-d-inference-sim).
	PrefillAtFirstToken bool
	// EmulatorTiming replaces the model's speed by the emulator's
	// configured latencies as issue 16 ran it: a time to first token of
	// 150 ms ± 30 ms and an inter-token latency of 20 ms ± 4 ms,
	// whatever the prompt (llm-d-inference-sim --time-to-first-token,
	// --inter-token-latency and their std-dev flags).
	EmulatorTiming bool

	// LateFinish: the finish observations are made up to this long
	// (uniform) after the response has been sent, as vLLM V0's async
	// output processing does.
	LateFinish time.Duration
	// EarlyAfter is the fraction of requests whose after snapshot is taken
	// before the server has recorded their finish (a log-hook curl that
	// is early, V1 batches of more than 128 outputs, stop strings). With
	// Capture, the proxy polls until the finish count moves, as capture
	// does, so the after is late rather than early unless another
	// request's finish moved the count.
	EarlyAfter float64

	// APIServers > 1 imitates vLLM with --api-server-count: each request
	// is served by one of that many processes, and a scrape reads each
	// process's state at its own moment, up to ScrapeSpread before the
	// scrape completes (0 means 20 ms). The output is in prometheus_client's
	// multiprocess layout.
	APIServers   int
	ScrapeSpread time.Duration

	// DropRate is the fraction of requests for which the server never
	// makes one of their observations (chosen at random).
	DropRate float64
}

// Profile names a server whose metric semantics a simulation imitates.
type Profile string

// The profiles. Each sets Semantics and, for some, the server's style.
const (
	// ProfileVLLM: vLLM V1, each request timed in continuous time (the
	// model the simulator always had; the shipped demo uses it).
	ProfileVLLM Profile = "vllm"
	// ProfileVLLMSteps: vLLM V1 with step-synchronous continuous batching,
	// the realistic model.
	ProfileVLLMSteps Profile = "vllm-steps"
	// ProfileEmulator: llm-d-inference-sim (issue 16): TTFT from
	// scheduling, queue at dequeue and only when waited, prefill at the
	// first token, families absent until their first observation, 8 slots
	// per engine unless Config.MaxRunning says otherwise.
	ProfileEmulator Profile = "emulator"
	// ProfileSGLang: SGLang's families and layout (Style SGLang), step
	// batching.
	ProfileSGLang Profile = "sglang"
	// ProfileLate: finish values observed up to 200 ms after the response.
	ProfileLate Profile = "late"
	// ProfileEarly5 and ProfileEarly30: 5 % and 30 % of the afters are
	// taken before the request's finish was recorded.
	ProfileEarly5  Profile = "early5"
	ProfileEarly30 Profile = "early30"
	// ProfileMultiAPI: three API server processes whose states a scrape
	// reads up to 20 ms apart; step batching.
	ProfileMultiAPI Profile = "multi-api"
	// ProfileDrops: 3 % of requests lose one observation.
	ProfileDrops Profile = "drops"
	// ProfileMix: a random mix of all of the above, drawn from the seed.
	ProfileMix Profile = "mix"
)

// Profiles lists every profile.
func Profiles() []Profile {
	return []Profile{ProfileVLLM, ProfileVLLMSteps, ProfileEmulator, ProfileSGLang, ProfileLate,
		ProfileEarly5, ProfileEarly30, ProfileMultiAPI, ProfileDrops, ProfileMix}
}

// ParseProfile returns the profile named s.
func ParseProfile(s string) (Profile, error) {
	var names []string
	for _, p := range Profiles() {
		if string(p) == s {
			return p, nil
		}
		names = append(names, string(p))
	}
	return "", fmt.Errorf("unknown profile %q (want one of %s)", s, strings.Join(names, ", "))
}

// Apply sets cfg's semantics (and for some profiles the server style,
// laziness and slots) for the profile. ProfileMix draws its mix from
// cfg.Seed, so a run stays reproducible.
func (p Profile) Apply(cfg *Config) error {
	var s Semantics
	switch p {
	case ProfileVLLM:
	case ProfileVLLMSteps:
		s.Steps = true
	case ProfileEmulator:
		s.TTFTFromSchedule, s.QueueAtDequeue, s.PrefillAtFirstToken = true, true, true
		s.EmulatorTiming = true
		cfg.Server.Lazy = true
		if cfg.MaxRunning == 0 {
			cfg.MaxRunning = 8
		}
	case ProfileSGLang:
		s.Steps = true
		cfg.Server.Style = SGLang
	case ProfileLate:
		s.LateFinish = 200 * time.Millisecond
	case ProfileEarly5:
		s.EarlyAfter = 0.05
	case ProfileEarly30:
		s.EarlyAfter = 0.30
	case ProfileMultiAPI:
		s.Steps, s.APIServers = true, 3
		cfg.Server.Multiproc = true
	case ProfileDrops:
		s.DropRate = 0.03
	case ProfileMix:
		r := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6a09e667f3bcc909))
		coin := func() bool { return r.IntN(2) == 0 }
		s.Steps = coin()
		if coin() {
			s.TTFTFromSchedule, s.QueueAtDequeue, s.PrefillAtFirstToken = coin(), coin(), coin()
			cfg.Server.Lazy = coin()
		}
		if coin() {
			cfg.Server.Style = SGLang
		}
		if coin() {
			s.LateFinish = time.Duration(r.IntN(200)+1) * time.Millisecond
		}
		if coin() {
			s.EarlyAfter = []float64{0.05, 0.3}[r.IntN(2)]
		}
		if coin() {
			s.APIServers = 2 + r.IntN(3)
			cfg.Server.Multiproc = true
		}
		if coin() {
			s.DropRate = 0.01 + 0.05*r.Float64()
		}
	default:
		return fmt.Errorf("unknown profile %q", string(p))
	}
	cfg.Semantics = s
	return nil
}

// has reports whether a server of this style has the family of m.
func (st Style) has(m parser.Metric) bool {
	if st != SGLang {
		return true
	}
	return m == parser.TTFT || m == parser.E2E || m.IsTokens()
}
