package collector

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/slo"
	"github.com/delta-exporter/delta-exporter/parser"
)

// TestSLOMetrics: verdicts are counted by model, objective and result,
// missed ones carry the request id as an exemplar, a request with no
// model counts under an empty model_name, model names stay bounded, and a
// reload drops the series of objectives no longer in the file.
func TestSLOMetrics(t *testing.T) {
	c, reg := newCollector(t, 2)
	m, err := NewSLOMetrics(reg, c)
	if err != nil {
		t.Fatal(err)
	}
	set, err := slo.Parse([]byte("objectives:\n  - {name: fast, target: 0.99, thresholds: {e2e: 1s}}\n  - {name: old, target: 0.9, thresholds: {ttft: 1s}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m.Loaded(set, nil)
	publish := func(res attribution.Result) {
		c.Publish(res)
		m.Publish(&res, set.Judge(&res))
	}
	publish(exact("ok-1", "a", 0.5))
	publish(exact("slow-<1>", "a", 2))
	withheld := exact("w", "a", 0.5)
	withheld.Values[parser.E2E] = attribution.Value{Reason: attribution.ReasonOverlap}
	publish(withheld)
	publish(attribution.NewUnpaired(&attribution.Request{ID: "lost"}))
	publish(exact("b-1", "b", 0.5))
	publish(exact("c-1", "c", 0.5)) // the third model: other

	want := `
# HELP llm_request_slo_total Requests judged against each latency objective of --slo.config: met, missed, or unknown (a value the objective needs was withheld).
# TYPE llm_request_slo_total counter
llm_request_slo_total{model_name="",result="met",slo="fast"} 0
llm_request_slo_total{model_name="",result="met",slo="old"} 0
llm_request_slo_total{model_name="",result="missed",slo="fast"} 0
llm_request_slo_total{model_name="",result="missed",slo="old"} 0
llm_request_slo_total{model_name="",result="unknown",slo="fast"} 1
llm_request_slo_total{model_name="",result="unknown",slo="old"} 1
llm_request_slo_total{model_name="a",result="met",slo="fast"} 1
llm_request_slo_total{model_name="a",result="met",slo="old"} 3
llm_request_slo_total{model_name="a",result="missed",slo="fast"} 1
llm_request_slo_total{model_name="a",result="missed",slo="old"} 0
llm_request_slo_total{model_name="a",result="unknown",slo="fast"} 1
llm_request_slo_total{model_name="a",result="unknown",slo="old"} 0
llm_request_slo_total{model_name="b",result="met",slo="fast"} 1
llm_request_slo_total{model_name="b",result="met",slo="old"} 1
llm_request_slo_total{model_name="b",result="missed",slo="fast"} 0
llm_request_slo_total{model_name="b",result="missed",slo="old"} 0
llm_request_slo_total{model_name="b",result="unknown",slo="fast"} 0
llm_request_slo_total{model_name="b",result="unknown",slo="old"} 0
llm_request_slo_total{model_name="other",result="met",slo="fast"} 1
llm_request_slo_total{model_name="other",result="met",slo="old"} 1
llm_request_slo_total{model_name="other",result="missed",slo="fast"} 0
llm_request_slo_total{model_name="other",result="missed",slo="old"} 0
llm_request_slo_total{model_name="other",result="unknown",slo="fast"} 0
llm_request_slo_total{model_name="other",result="unknown",slo="old"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "llm_request_slo_total"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(c.folded); got != 1 {
		t.Errorf("folded %v: the SLO counter must not count a fold twice", got)
	}

	// The exemplar of the missed request, in OpenMetrics.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeOpenMetrics))
	for _, mf := range mfs {
		if mf.GetName() == "llm_request_slo_total" {
			if err := enc.Encode(mf); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !strings.Contains(buf.String(), `llm_request_slo_total{model_name="a",result="missed",slo="fast"} 1.0 # {request_id="slow-<1>"} 1.0`) {
		t.Errorf("no exemplar on the missed series:\n%s", buf.String())
	}
	if strings.Count(buf.String(), "# {") != 1 {
		t.Errorf("exemplars on other results than missed:\n%s", buf.String())
	}

	// A refused reload changes nothing but the success gauge; a new file
	// drops the series of the objective it no longer has.
	m.Loaded(nil, errors.New("bad"))
	if testutil.ToFloat64(m.reloadOK) != 0 || testutil.ToFloat64(m.objectives) != 2 {
		t.Error("a refused file changed the objectives gauge or not the success gauge")
	}
	set2, err := slo.Parse([]byte("objectives:\n  - {name: fast, target: 0.99, thresholds: {e2e: 1s}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m.Loaded(set2, nil)
	if n := testutil.CollectAndCount(m.total); n != 12 {
		t.Errorf("%d series after the reload, want 12 (4 models × 3 results of fast)", n)
	}
	if testutil.ToFloat64(m.reloadOK) != 1 || testutil.ToFloat64(m.objectives) != 1 ||
		testutil.CollectAndCount(m.target) != 1 || testutil.ToFloat64(m.target.WithLabelValues("fast")) != 0.99 {
		t.Error("gauges after a good reload")
	}
	if problems, err := testutil.GatherAndLint(reg, "llm_request_slo_total", "delta_exporter_slo_config_last_reload_successful",
		"delta_exporter_slo_config_last_reload_success_timestamp_seconds", "delta_exporter_slo_objectives", "llm_request_slo_target_ratio"); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
