package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

const rulesPath = "prometheus/rules.yml"

// The parts of a Prometheus rules file the tests read.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name  string `yaml:"name"`
	Rules []rule `yaml:"rules"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) *ruleFile {
	t.Helper()
	b, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesPath, err)
	}
	if len(f.Groups) == 0 {
		t.Fatalf("%s: no groups", rulesPath)
	}
	return &f
}

func TestPromtoolCheckRules(t *testing.T) {
	promtool := requirePromtool(t)
	files, err := filepath.Glob("prometheus/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files in prometheus/: %v", err)
	}
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	promtool := requirePromtool(t)
	files, err := filepath.Glob("prometheus/tests/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests in prometheus/tests/: %v", err)
	}
	if testing.Short() {
		files = slices.DeleteFunc(files, func(file string) bool {
			span := ruleTestSpan(t, file)
			if span > shortRuleTestSpan {
				t.Logf("-short: %s evaluates %v, left to the long suite", file, span)
			}
			return span > shortRuleTestSpan
		})
	}
	out, err := exec.Command(promtool, append([]string{"test", "rules"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// shortRuleTestSpan is the longest evaluation of a rule test file the
// everyday suite (-short) runs. The regression alerts compare with last
// week: a week of one-minute series costs promtool about 30 CPU seconds,
// a minute and a half on a loaded 2-core machine. The long suite runs
// every file.
const shortRuleTestSpan = 24 * time.Hour

// ruleTestSpan returns the latest eval_time of a promtool rule test file.
func ruleTestSpan(t *testing.T, file string) time.Duration {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	type evalAt struct {
		EvalTime string `yaml:"eval_time"`
	}
	var doc struct {
		Tests []struct {
			AlertTest []evalAt `yaml:"alert_rule_test"`
			ExprTest  []evalAt `yaml:"promql_expr_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var span time.Duration
	for _, tc := range doc.Tests {
		for _, e := range append(tc.AlertTest, tc.ExprTest...) {
			d, err := model.ParseDuration(e.EvalTime)
			if err != nil {
				t.Fatalf("%s: eval_time %q: %v", file, e.EvalTime, err)
			}
			span = max(span, time.Duration(d))
		}
	}
	return span
}

var (
	// recordName is the level:metric:operations convention.
	recordName = regexp.MustCompile(`^[a-z_]+:[a-z_]+:[a-z0-9_]+$`)
	alertName  = regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
)

// optInSwitches are series the rules read that no rule of rules.yml
// records: the user records one (as 1) to turn an opt-in alert on.
var optInSwitches = []string{"delta_exporter:proxy_ttft_fallback:enabled"}

// TestRulesMetricsExist parses every rule expression and checks its metric
// names and labels against a real scrape; a rule may use what an earlier
// rule records.
func TestRulesMetricsExist(t *testing.T) {
	f := loadRules(t)
	e := scrapeExporter(t)
	recorded := map[string]bool{}
	// An opt-in switch is recorded by a rule the user adds; rules.yml
	// shows that rule, commented out.
	raw, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range optInSwitches {
		if !strings.Contains(string(raw), "# - record: "+name+"\n") {
			t.Errorf("%s: the opt-in switch's rule is not shown (commented) in %s", name, rulesPath)
		}
		recorded[name] = true
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Record + r.Alert
			expr, err := parsePromQL(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			for _, p := range checkExpr(expr, e, recorded) {
				t.Errorf("%s: %s", name, p)
			}
			native, classic := histogramUse(expr, e)
			if diff := sameKeys(native, classic, e); diff != "" {
				t.Errorf("%s: want both native and classic branches: %s", name, diff)
			}
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
}

// TestAlertConventions checks the mixin conventions and that every alert
// has a runbook entry in the README and unit tests that fire and that do
// not fire.
func TestAlertConventions(t *testing.T) {
	f := loadRules(t)
	alerts := readmeSection(t, "Alerts")
	tested := ruleTestCoverage(t)
	n := 0
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				if !recordName.MatchString(r.Record) {
					t.Errorf("recording rule %q: want level:metric:operations", r.Record)
				}
				continue
			}
			n++
			if !alertName.MatchString(r.Alert) {
				t.Errorf("alert %q: want a CamelCase name", r.Alert)
			}
			switch r.Labels["severity"] {
			case "info", "warning", "critical":
			default:
				t.Errorf("alert %s: severity %q, want info, warning or critical", r.Alert, r.Labels["severity"])
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, a)
				}
			}
			if r.For == "" {
				t.Errorf("alert %s: no for: duration", r.Alert)
			}
			anchor := "#" + strings.ToLower(r.Alert)
			if !strings.HasSuffix(r.Annotations["runbook_url"], "deploy/README.md"+anchor) {
				t.Errorf("alert %s: runbook_url %q, want …deploy/README.md%s", r.Alert, r.Annotations["runbook_url"], anchor)
			}
			if !strings.Contains(alerts, "\n### "+r.Alert+"\n") {
				t.Errorf("alert %s: no \"### %s\" runbook heading in the README's Alerts section", r.Alert, r.Alert)
			}
			cov := tested[r.Alert]
			if cov.fires == 0 {
				t.Errorf("alert %s: no unit test where it fires", r.Alert)
			}
			if cov.silent == 0 {
				t.Errorf("alert %s: no unit test where it stays silent", r.Alert)
			}
		}
	}
	if n == 0 {
		t.Fatal("no alerts")
	}
	// The cases issue 5 names explicitly.
	for alert, cases := range map[string][]string{
		"LLMTimeToFirstTokenHigh":          {"low traffic"},
		"LLMTimeToFirstTokenRegression":    {"low traffic", "without a baseline"},
		"DeltaExporterAttributionDegraded": {"low traffic"},
		"DeltaExporterStalled":             {"idle"},
		"DeltaExporterIngestStuck":         {"while the loop beats"},
		"DeltaExporterStateNotWritable":    {"while writes succeed"},
	} {
		for _, c := range cases {
			found := false
			for _, name := range tested[alert].silentCases {
				found = found || strings.Contains(name, c)
			}
			if !found {
				t.Errorf("alert %s: no silent unit test named for %q", alert, c)
			}
		}
	}
}

type coverage struct {
	fires, silent int
	silentCases   []string
	firingCases   []string
}

// ruleTestCoverage reads the promtool unit tests and counts, per alert,
// the evaluations that expect it firing and those that expect silence.
func ruleTestCoverage(t *testing.T) map[string]*coverage {
	return ruleTestCoverageOf(t, "prometheus/tests/*.yml", rulesPath)
}

// ruleTestCoverageOf does it for the tests matching glob, each of which
// must test the one rules file rules.
func ruleTestCoverageOf(t *testing.T, glob, rules string) map[string]*coverage {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule tests: %v", err)
	}
	out := map[string]*coverage{}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			RuleFiles []string `yaml:"rule_files"`
			Tests     []struct {
				Name      string `yaml:"name"`
				AlertTest []struct {
					Alert     string `yaml:"alertname"`
					ExpAlerts []any  `yaml:"exp_alerts"`
				} `yaml:"alert_rule_test"`
			} `yaml:"tests"`
		}
		if err := yaml.Unmarshal(b, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(doc.RuleFiles) != 1 || filepath.Clean(filepath.Join(filepath.Dir(file), doc.RuleFiles[0])) != filepath.Clean(rules) {
			t.Errorf("%s: rule_files %v, want the one rules file %s", file, doc.RuleFiles, rules)
		}
		for _, tc := range doc.Tests {
			for _, at := range tc.AlertTest {
				c := out[at.Alert]
				if c == nil {
					c = &coverage{}
					out[at.Alert] = c
				}
				if len(at.ExpAlerts) > 0 {
					c.fires++
					c.firingCases = append(c.firingCases, tc.Name)
				} else {
					c.silent++
					c.silentCases = append(c.silentCases, tc.Name)
				}
			}
		}
	}
	return out
}

// TestPrometheusScrapeConfig checks the example configuration's settings
// for exemplars and native histograms. (Debian's promtool predates them;
// TestPrometheusConfigPromtool checks the file with both promtools.)
func TestPrometheusScrapeConfig(t *testing.T) {
	b, err := os.ReadFile("prometheus/config/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	// Every key of the file is modelled, so a misspelt setting fails.
	var cfg struct {
		Global struct {
			ScrapeInterval     string `yaml:"scrape_interval"`
			EvaluationInterval string `yaml:"evaluation_interval"`
		} `yaml:"global"`
		Storage struct {
			Exemplars struct {
				MaxExemplars int `yaml:"max_exemplars"`
			} `yaml:"exemplars"`
		} `yaml:"storage"`
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName         string   `yaml:"job_name"`
			ScrapeProtocols []string `yaml:"scrape_protocols"`
			Native          *bool    `yaml:"scrape_native_histograms"`
			Classic         *bool    `yaml:"always_scrape_classic_histograms"`
			StaticConfigs   []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	if cfg.Storage.Exemplars.MaxExemplars <= 0 {
		t.Error("storage.exemplars.max_exemplars not set")
	}
	var want []string
	for _, f := range ruleFiles {
		want = append(want, filepath.Base(f))
	}
	var got []string
	for _, f := range cfg.RuleFiles {
		got = append(got, filepath.Base(f))
	}
	if !slices.Equal(got, want) {
		t.Errorf("rule_files %v: want the rules files %v (the SLO alerts are silent without --slo.config)", cfg.RuleFiles, want)
	}
	found := false
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName != "delta-exporter" {
			continue
		}
		found = true
		if len(sc.ScrapeProtocols) == 0 || sc.ScrapeProtocols[0] != "PrometheusProto" || !slices.Contains(sc.ScrapeProtocols, "OpenMetricsText1.0.0") {
			t.Errorf("scrape_protocols %v: want PrometheusProto first and OpenMetricsText1.0.0", sc.ScrapeProtocols)
		}
		if sc.Native == nil || !*sc.Native || sc.Classic == nil || !*sc.Classic {
			t.Error("want scrape_native_histograms and always_scrape_classic_histograms true")
		}
		if len(sc.StaticConfigs) == 0 || !slices.Contains(sc.StaticConfigs[0].Targets, "127.0.0.1:9464") {
			t.Errorf("targets %v: want the exporter's default port 9464", sc.StaticConfigs)
		}
	}
	if !found {
		t.Error("no delta-exporter scrape job")
	}
}

// legacySettings are the scrape settings of the example configuration
// that Prometheus 2.x before 2.49 rejects; deploy/README.md tells 2.x
// users to delete them.
var legacySettings = []string{"scrape_protocols", "scrape_native_histograms", "always_scrape_classic_histograms"}

// TestPrometheusConfigPromtool runs promtool check config on the example
// configuration: as shipped with the promtool of Prometheus 3.x
// (DELTA_PROMTOOL3, which .ci/run builds; skipped without it outside CI),
// and without legacySettings with Debian's promtool (2.42).
func TestPrometheusConfigPromtool(t *testing.T) {
	const path = "prometheus/config/prometheus.yml"
	t.Run("debian", func(t *testing.T) {
		promtool := requirePromtool(t)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		for _, j := range cfg["scrape_configs"].([]any) {
			for _, k := range legacySettings {
				delete(j.(map[string]any), k)
			}
		}
		var rules []any
		for _, f := range ruleFiles {
			abs, err := filepath.Abs(f)
			if err != nil {
				t.Fatal(err)
			}
			rules = append(rules, abs)
		}
		cfg["rule_files"] = rules
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		legacy := filepath.Join(t.TempDir(), "prometheus.yml")
		if err := os.WriteFile(legacy, out, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(promtool, "check", "config", legacy).CombinedOutput(); err != nil {
			t.Fatalf("promtool check config (2.x settings): %v\n%s", err, out)
		}
	})
	t.Run("prometheus3", func(t *testing.T) {
		promtool := os.Getenv("DELTA_PROMTOOL3")
		if promtool == "" {
			testutil.Missing(t, "DELTA_PROMTOOL3 not set: no promtool of Prometheus 3.x (.ci/run builds one)")
		}
		if out, err := exec.Command(promtool, "check", "config", path).CombinedOutput(); err != nil {
			t.Fatalf("promtool check config: %v\n%s", err, out)
		}
	})
}
