package deploy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// update regenerates the generated files (deploy/kubernetes/prometheusrule.yaml).
var update = flag.Bool("update", false, "regenerate generated deploy files")

// repoRoot is the module root; go test runs in the package directory.
const repoRoot = ".."

// requirePromtool returns the path of promtool. Without it the test is
// skipped, unless CI is set.
func requirePromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	testutil.Missing(t, "promtool not found: install the Debian package prometheus")
	return ""
}

// skipStaticBuildInShort skips under -short: the image's static build
// (CGO_ENABLED=0, -trimpath) shares no cache with the test builds, so it
// compiles every dependency again, minutes on 2 cores. .ci/run runs the
// suite without -short too.
func skipStaticBuildInShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: needs a static build of the binary; run without -short (as .ci/run does) or set DELTA_EXPORTER_BIN")
	}
}

// exporterBuild is the binary as the image builds it (static), built once
// per test run; TestMain removes it.
var exporterBuild = testutil.Exporter{Static: true}

// TestMain removes the shared build.
func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	exporterBuild.Remove()
	os.Exit(code)
}

// exporterBinary returns the delta-exporter binary under test: the one
// named by DELTA_EXPORTER_BIN, or one built once per test run.
func exporterBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("DELTA_EXPORTER_BIN"); p != "" {
		return p
	}
	skipStaticBuildInShort(t)
	return exporterBuild.Path(t)
}

// exposition is what the exporter exposes, as Prometheus would store it.
type exposition struct {
	// series maps every series name of the OpenMetrics scrape (X_bucket,
	// X_count, X_total, ...) and every native histogram family name to its
	// label names and the values seen for each.
	series map[string]map[string]map[string]bool
	// families maps family names of the protobuf scrape to their type.
	families map[string]dto.MetricType
	// native lists the histogram families that carry native buckets.
	native map[string]bool
	// exemplarLabels maps histogram family names to the exemplar label
	// names seen on their buckets in the OpenMetrics scrape.
	exemplarLabels map[string]map[string]bool
}

// has reports whether name is a series Prometheus stores after a scrape.
func (e *exposition) has(name string) bool { _, ok := e.series[name]; return ok }

// names returns the sorted series names.
func (e *exposition) names() []string {
	var out []string
	for n := range e.series {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var (
	scrapeOnce sync.Once
	scraped    *exposition
	scrapeErr  error
)

// scrapeExporter runs the exporter on its embedded demo snapshots once per
// test run and returns what it exposes, with the families only a capture
// directory brings (withCaptureFamilies).
func scrapeExporter(t *testing.T) *exposition {
	t.Helper()
	bin := exporterBinary(t)
	scrapeOnce.Do(func() {
		scraped, scrapeErr = runAndScrape(bin)
		if scrapeErr == nil {
			scrapeErr = withCaptureFamilies(bin, scraped)
		}
	})
	if scrapeErr != nil {
		t.Fatalf("scraping the exporter (%s): %v", bin, scrapeErr)
	}
	return scraped
}

// runAndScrape starts bin with args, waits for /-/ready, scrapes /metrics as
// OpenMetrics text and as protobuf, and stops the process.
func runAndScrape(bin string, args ...string) (*exposition, error) {
	addr, err := testutil.FindFreeAddr()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{"--web.listen-address=" + addr}, args...)...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cancel()
		<-exited
	}

	base := "http://" + addr
	if err := waitReady(ctx, base+"/-/ready", exited); err != nil {
		stop()
		return nil, fmt.Errorf("%w\nexporter output:\n%s", err, logs.String())
	}
	e, err := scrape(ctx, base+"/metrics")
	stop()
	if err != nil {
		return nil, fmt.Errorf("%w\nexporter output:\n%s", err, logs.String())
	}
	return e, nil
}

// waitReady polls url until it answers 200, the process exits or ctx ends.
func waitReady(ctx context.Context, url string, exited <-chan error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exporter exited before %s answered 200: %v", url, err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (last: %s): %w", url, last, ctx.Err())
		case <-tick.C:
		}
	}
}

const (
	acceptOpenMetrics = "application/openmetrics-text;version=1.0.0"
	acceptProtobuf    = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
)

func get(ctx context.Context, url, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp, nil
}

func scrape(ctx context.Context, url string) (*exposition, error) {
	e := &exposition{
		series:         map[string]map[string]map[string]bool{},
		families:       map[string]dto.MetricType{},
		native:         map[string]bool{},
		exemplarLabels: map[string]map[string]bool{},
	}

	resp, err := get(ctx, url, acceptOpenMetrics)
	if err != nil {
		return nil, err
	}
	ct := resp.Header.Get("Content-Type")
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(ct, "application/openmetrics-text") {
		return nil, fmt.Errorf("asked for OpenMetrics, got Content-Type %q: exemplars need OpenMetrics (or protobuf)", ct)
	}
	if err := parseOpenMetrics(body, e); err != nil {
		return nil, fmt.Errorf("OpenMetrics scrape: %w", err)
	}

	resp, err = get(ctx, url, acceptProtobuf)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if f := expfmt.ResponseFormat(resp.Header); f.FormatType() != expfmt.TypeProtoDelim {
		return nil, fmt.Errorf("asked for protobuf, got Content-Type %q: native histograms need protobuf", resp.Header.Get("Content-Type"))
	}
	dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
	for {
		var mf dto.MetricFamily
		if err := dec.Decode(&mf); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("protobuf scrape: %w", err)
		}
		e.families[mf.GetName()] = mf.GetType()
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			if h.Schema == nil && len(h.GetPositiveSpan()) == 0 && h.GetZeroThreshold() == 0 {
				continue
			}
			// Prometheus stores a native histogram under the family name.
			e.native[mf.GetName()] = true
			for _, lp := range m.GetLabel() {
				e.addSeries(mf.GetName(), lp.GetName(), lp.GetValue())
			}
			e.addSeries(mf.GetName(), "", "")
		}
	}
	if len(e.families) == 0 {
		return nil, errors.New("protobuf scrape has no metric families")
	}
	return e, nil
}

func (e *exposition) addSeries(name, label, value string) {
	ls, ok := e.series[name]
	if !ok {
		ls = map[string]map[string]bool{}
		e.series[name] = ls
	}
	if label == "" {
		return
	}
	if ls[label] == nil {
		ls[label] = map[string]bool{}
	}
	ls[label][value] = true
}

// parseOpenMetrics records every sample's name and labels, and the
// exemplar label names of histogram buckets. It is a small parser for the
// subset the Go client writes: name, optional {labels}, value, optional
// timestamp, optional "# {exemplar labels} value [timestamp]".
func parseOpenMetrics(body []byte, e *exposition) error {
	types := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	sawEOF := false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "# EOF":
			sawEOF = true
			continue
		case strings.HasPrefix(line, "# TYPE "):
			f := strings.Fields(line)
			if len(f) != 4 {
				return fmt.Errorf("line %d: bad TYPE line %q", n, line)
			}
			types[f[2]] = f[3]
			continue
		case strings.HasPrefix(line, "#"), line == "":
			continue
		}
		name, lbls, rest, err := splitSample(line)
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		e.addSeries(name, "", "")
		for k, v := range lbls {
			e.addSeries(name, k, v)
		}
		if i := strings.Index(rest, "# {"); i >= 0 {
			_, ex, _, err := splitSample("x" + strings.TrimPrefix(rest[i:], "# "))
			if err != nil {
				return fmt.Errorf("line %d: exemplar: %w", n, err)
			}
			fam := strings.TrimSuffix(name, "_bucket")
			if e.exemplarLabels[fam] == nil {
				e.exemplarLabels[fam] = map[string]bool{}
			}
			for k := range ex {
				e.exemplarLabels[fam][k] = true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if !sawEOF {
		return errors.New("no # EOF line: not OpenMetrics")
	}
	if len(types) == 0 {
		return errors.New("no # TYPE lines")
	}
	return nil
}

// splitSample splits `name{a="b",...} rest` into its parts.
func splitSample(line string) (string, map[string]string, string, error) {
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		return "", nil, "", fmt.Errorf("no metric name in %q", line)
	}
	name, s := line[:i], line[i:]
	lbls := map[string]string{}
	if s[0] == '{' {
		s = s[1:]
		for {
			s = strings.TrimLeft(s, ",")
			if strings.HasPrefix(s, "}") {
				s = s[1:]
				break
			}
			eq := strings.Index(s, "=\"")
			if eq <= 0 {
				return "", nil, "", fmt.Errorf("bad label set in %q", line)
			}
			key := s[:eq]
			s = s[eq+2:]
			var val strings.Builder
			closed := false
			for j := 0; j < len(s); j++ {
				c := s[j]
				if c == '\\' && j+1 < len(s) {
					j++
					switch s[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(s[j])
					}
					continue
				}
				if c == '"' {
					s = s[j+1:]
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return "", nil, "", fmt.Errorf("unterminated label value in %q", line)
			}
			lbls[key] = val.String()
		}
	}
	return name, lbls, strings.TrimSpace(s), nil
}

// --- PromQL

// grafanaVar matches $name, ${name} and ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z0-9_]+)`)

// varModelName stands for $model_name in substituted queries: a literal
// regexp that no label value check treats as a real value.
const varModelName = "__grafana_var_model_name__"

// substituteGrafanaVars replaces the dashboard variables by values
// Prometheus accepts. An unknown variable is an error: a typo in a query
// would otherwise reach users as an empty panel.
func substituteGrafanaVars(q string) (string, error) {
	var unknown []string
	out := grafanaVar.ReplaceAllStringFunc(q, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		switch name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		case "model_name":
			return varModelName
		}
		unknown = append(unknown, m)
		return m
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variables %v", unknown)
	}
	return out, nil
}

func parsePromQL(q string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(q)
}

// selectorName returns the metric name a selector asks for: its name, or
// its __name__ matcher (then regexp reports whether it is a regexp).
func selectorName(vs *parser.VectorSelector) (name string, m *labels.Matcher) {
	if vs.Name != "" {
		return vs.Name, nil
	}
	for _, lm := range vs.LabelMatchers {
		if lm.Name == labels.MetricName {
			return lm.Value, lm
		}
	}
	return "", nil
}

// selectors returns every vector selector of expr.
func selectors(expr parser.Node) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// targetLabels are attached by Prometheus, not by the exporter.
var targetLabels = map[string]bool{"job": true, "instance": true}

// checkExpr reports, for one parsed expression, every metric name that
// neither the exporter exposes nor a recording rule in recorded defines,
// every matcher on a label the series does not have, every equality
// matcher on a value the scrape never showed, and every by(...) label no
// selected series has.
func checkExpr(expr parser.Expr, e *exposition, recorded map[string]bool) []string {
	var problems []string
	// labelsOf returns the label names of the exposed series among names,
	// and whether any of them is a recorded series (labels unknown here).
	labelsOf := func(names []string) (map[string]bool, bool) {
		ls := map[string]bool{}
		anyRecorded := false
		for _, n := range names {
			if recorded[n] {
				anyRecorded = true
				continue
			}
			for l := range e.series[n] {
				ls[l] = true
			}
		}
		return ls, anyRecorded
	}

	for _, vs := range selectors(expr) {
		names, problem := resolve(vs, e, recorded)
		if problem != "" {
			problems = append(problems, problem)
			continue
		}
		ls, anyRecorded := labelsOf(names)
		if anyRecorded {
			continue
		}
		for _, lm := range vs.LabelMatchers {
			if lm.Name == labels.MetricName || targetLabels[lm.Name] {
				continue
			}
			if !ls[lm.Name] {
				problems = append(problems, fmt.Sprintf("%s: label %q is not on %v", vs, lm.Name, names))
				continue
			}
			if lm.Type == labels.MatchEqual && lm.Value != "" && !strings.Contains(lm.Value, "__grafana_var_") {
				seen := false
				for _, n := range names {
					seen = seen || e.series[n][lm.Name][lm.Value]
				}
				if !seen {
					problems = append(problems, fmt.Sprintf("%s: the exporter never showed %s=%q on %v", vs, lm.Name, lm.Value, names))
				}
			}
		}
	}

	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		agg, ok := n.(*parser.AggregateExpr)
		if !ok || agg.Without {
			return nil
		}
		var names []string
		for _, vs := range selectors(agg.Expr) {
			ns, _ := resolve(vs, e, recorded)
			names = append(names, ns...)
		}
		ls, anyRecorded := labelsOf(names)
		if anyRecorded || len(names) == 0 {
			return nil
		}
		for _, g := range agg.Grouping {
			if !ls[g] && !targetLabels[g] {
				problems = append(problems, fmt.Sprintf("%s: grouping label %q is on none of %v", agg, g, names))
			}
		}
		return nil
	})
	return problems
}

// resolve returns the series names a selector selects among the exposed
// and recorded ones, or why it selects none.
func resolve(vs *parser.VectorSelector, e *exposition, recorded map[string]bool) ([]string, string) {
	name, m := selectorName(vs)
	switch {
	case name == "":
		return nil, fmt.Sprintf("selector %s has no metric name", vs)
	case m != nil && m.Type != labels.MatchEqual:
		var out []string
		for _, n := range e.names() {
			if m.Matches(n) {
				out = append(out, n)
			}
		}
		for n := range recorded {
			if m.Matches(n) {
				out = append(out, n)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Sprintf("%s matches no exposed metric", vs)
		}
		return out, ""
	case recorded[name] || e.has(name):
		return []string{name}, ""
	}
	return nil, fmt.Sprintf("metric %q is not exposed by the exporter (nor recorded by a rule)", name)
}

// histogramUse returns the histogram families expr reads as native
// histograms (the family name) and as classic ones (_bucket, _sum, _count).
func histogramUse(expr parser.Node, e *exposition) (native, classic map[string]bool) {
	native, classic = map[string]bool{}, map[string]bool{}
	for _, vs := range selectors(expr) {
		name, _ := selectorName(vs)
		if e.families[name] == dto.MetricType_HISTOGRAM {
			native[name] = true
			continue
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suffix)
			if ok && e.families[base] == dto.MetricType_HISTOGRAM {
				classic[base] = true
			}
		}
	}
	return native, classic
}

// sameKeys returns a description of the difference, or "". Families the
// exporter exposes without native buckets (the population families carry
// the server's own classic buckets) may be read classically only.
func sameKeys(native, classic map[string]bool, e *exposition) string {
	var onlyN, onlyC []string
	for k := range native {
		if !classic[k] {
			onlyN = append(onlyN, k)
		}
	}
	for k := range classic {
		if !native[k] && e.native[k] {
			onlyC = append(onlyC, k)
		}
	}
	if len(onlyN)+len(onlyC) == 0 {
		return ""
	}
	sort.Strings(onlyN)
	sort.Strings(onlyC)
	return fmt.Sprintf("native-only families %v, classic-only families %v", onlyN, onlyC)
}

// runtimeFamily reports families the Go client adds on its own.
func runtimeFamily(name string) bool {
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_")
}

// TestExporterExposition checks the scrape the other tests rely on: the
// contract's families are there, histograms carry native buckets, and
// bucket exemplars carry request_id.
func TestExporterExposition(t *testing.T) {
	e := scrapeExporter(t)
	for _, fam := range []string{
		"llm_request_time_to_first_token_seconds", "llm_request_queue_seconds",
		"llm_request_prefill_seconds", "llm_request_decode_seconds",
		"llm_request_inference_seconds", "llm_request_e2e_seconds",
		"llm_request_prompt_tokens", "llm_request_generation_tokens",
		"llm_request_time_per_output_token_seconds",
	} {
		if e.families[fam] != dto.MetricType_HISTOGRAM {
			t.Errorf("%s: not exposed as a histogram (docs/metrics.md)", fam)
			continue
		}
		if !e.native[fam] {
			t.Errorf("%s: no native buckets in the protobuf scrape", fam)
		}
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if !e.has(fam + s) {
				t.Errorf("%s: no %s series in the OpenMetrics scrape", fam, s)
			}
		}
		if b := e.series[fam+"_bucket"]; len(b) > 0 && len(b["model_name"]) == 0 {
			t.Errorf("%s: buckets have no model_name label", fam)
		}
	}
	withExemplar := 0
	for fam, ls := range e.exemplarLabels {
		if !ls["request_id"] {
			t.Errorf("%s: exemplar labels %v, want request_id", fam, ls)
		}
		withExemplar++
	}
	if withExemplar == 0 {
		t.Error("no bucket in the OpenMetrics scrape carries an exemplar; the dashboard's heatmaps rely on them")
	}
}
