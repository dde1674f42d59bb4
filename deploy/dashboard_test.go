package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

const dashboardPath = "grafana/delta-exporter.json"

// The parts of the Grafana dashboard model the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Schema     int     `json:"schemaVersion"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	Datasource  *datasourceRef `json:"datasource"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets     []target        `json:"targets"`
	Panels      []panel         `json:"panels"` // collapsed rows
	FieldConfig json.RawMessage `json:"fieldConfig"`
}

type target struct {
	RefID      string         `json:"refId"`
	Expr       string         `json:"expr"`
	Format     string         `json:"format"`
	Exemplar   bool           `json:"exemplar"`
	Datasource *datasourceRef `json:"datasource"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
	AllValue   string          `json:"allValue"`
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

// allPanels flattens rows, collapsed or not, excluding the rows themselves.
func (d *dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" {
				out = append(out, p)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// dashQuery is one PromQL expression of the dashboard.
type dashQuery struct {
	where string // panel title and refId, or variable name
	panel *panel
	query string // as sent to Prometheus, variables substituted
	expr  parser.Expr
}

// labelValuesCall matches Grafana's label_values(selector, label).
var labelValuesCall = regexp.MustCompile(`^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// queries returns every PromQL expression of the dashboard, parsed after
// the Grafana variables are substituted. Parse errors fail the test.
func (d *dashboard) queries(t *testing.T) []dashQuery {
	t.Helper()
	var out []dashQuery
	add := func(where string, p *panel, raw string) {
		q, err := substituteGrafanaVars(raw)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		expr, err := parsePromQL(q)
		if err != nil {
			t.Errorf("%s: PromQL does not parse: %v\n%s", where, err, q)
			return
		}
		out = append(out, dashQuery{where: where, panel: p, query: q, expr: expr})
	}
	panels := d.allPanels()
	for i := range panels {
		p := &panels[i]
		for _, tg := range p.Targets {
			add(fmt.Sprintf("panel %q query %s", p.Title, tg.RefID), p, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := variableQuery(t, v)
		if m := labelValuesCall.FindStringSubmatch(q); m != nil {
			// The selector is PromQL; the label must be on what it selects.
			add(fmt.Sprintf("variable %q", v.Name), nil, `group by (`+m[2]+`) (`+m[1]+`)`)
			continue
		}
		add(fmt.Sprintf("variable %q", v.Name), nil, q)
	}
	return out
}

// variableQuery returns a query variable's query, string or object form.
func variableQuery(t *testing.T, v variable) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		t.Fatalf("variable %q: query is neither a string nor an object: %v", v.Name, err)
	}
	return o.Query
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed for a stable import", d.UID, d.Title)
	}
	if d.Schema < 36 {
		t.Errorf("schemaVersion %d: want a current Grafana schema (>= 36)", d.Schema)
	}

	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	ds, ok := vars["datasource"]
	if !ok || ds.Type != "datasource" || string(ds.Query) != `"prometheus"` {
		t.Errorf("want a datasource variable of Prometheus data sources, got %+v", ds)
	}
	mn, ok := vars["model_name"]
	switch {
	case !ok:
		t.Error("no model_name variable")
	case mn.Type != "query" || !mn.Multi || !mn.IncludeAll || mn.AllValue != ".*":
		t.Errorf("model_name: want a multi-value query variable with All = .*, got %+v", mn)
	case mn.Datasource == nil || mn.Datasource.UID != "${datasource}":
		t.Errorf("model_name: datasource %+v, want ${datasource}", mn.Datasource)
	}

	ids := map[int]string{}
	type rect struct {
		title      string
		x, y, w, h int
	}
	var rects []rect
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panel %q: id %d already used by %q", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
			}
			for _, r := range rects {
				if g.X < r.x+r.w && r.x < g.X+g.W && g.Y < r.y+r.h && r.y < g.Y+g.H {
					t.Errorf("panels %q and %q overlap", p.Title, r.title)
				}
			}
			rects = append(rects, rect{p.Title, g.X, g.Y, g.W, g.H})
			if p.Type != "row" {
				if p.Title == "" || strings.TrimSpace(p.Description) == "" {
					t.Errorf("panel %d (%q): needs a title and a description", p.ID, p.Title)
				}
				if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q: no queries", p.Title)
				}
				for _, tg := range p.Targets {
					if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
						t.Errorf("panel %q query %s: datasource %+v, want uid ${datasource}", p.Title, tg.RefID, tg.Datasource)
					}
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
}

// TestDashboardMetricsExist parses every query and checks each metric
// name, label and label value against a real scrape of the exporter. The
// dashboard must work without the recording rules, so no recorded name
// is accepted.
func TestDashboardMetricsExist(t *testing.T) {
	d := loadDashboard(t)
	qs := d.queries(t)
	e := scrapeExporter(t)
	for _, q := range qs {
		for _, p := range checkExpr(q.expr, e, nil) {
			t.Errorf("%s: %s", q.where, p)
		}
	}

	// Every family the exporter exposes has a panel.
	used := map[string]bool{}
	for _, q := range qs {
		for _, vs := range selectors(q.expr) {
			name, m := selectorName(vs)
			if m != nil && m.Type != labels.MatchEqual {
				continue
			}
			used[name] = true
		}
	}
	for fam, typ := range e.families {
		if runtimeFamily(fam) {
			continue
		}
		names := []string{fam}
		if typ == dto.MetricType_HISTOGRAM {
			names = append(names, fam+"_bucket", fam+"_sum", fam+"_count")
		}
		found := false
		for _, n := range names {
			found = found || used[n]
		}
		if !found {
			t.Errorf("the exporter exposes %s but no panel shows it", fam)
		}
	}
}

// TestDashboardClassicAndNative requires every panel that reads a
// histogram family to read it both ways: as a native histogram and as
// classic buckets/sum/count.
func TestDashboardClassicAndNative(t *testing.T) {
	d := loadDashboard(t)
	qs := d.queries(t)
	e := scrapeExporter(t)
	byPanel := map[*panel][]dashQuery{}
	for _, q := range qs {
		if q.panel != nil {
			byPanel[q.panel] = append(byPanel[q.panel], q)
		}
	}
	for p, qs := range byPanel {
		native, classic := map[string]bool{}, map[string]bool{}
		for _, q := range qs {
			n, c := histogramUse(q.expr, e)
			for k := range n {
				native[k] = true
			}
			for k := range c {
				classic[k] = true
			}
		}
		if diff := sameKeys(native, classic, e); diff != "" {
			t.Errorf("panel %q: %s", p.Title, diff)
		}
		if p.Type == "stat" || p.Type == "timeseries" {
			// One query must serve both kinds, joined with or.
			for _, q := range qs {
				n, c := histogramUse(q.expr, e)
				if diff := sameKeys(n, c, e); diff != "" {
					t.Errorf("%s: %s", q.where, diff)
				}
			}
		}
	}
}

// TestDashboardModelFilter requires every per-request and population
// series to follow the Model selector.
func TestDashboardModelFilter(t *testing.T) {
	d := loadDashboard(t)
	for _, q := range d.queries(t) {
		if q.panel == nil {
			continue
		}
		for _, vs := range selectors(q.expr) {
			name, _ := selectorName(vs)
			if !strings.HasPrefix(name, exactPrefix) && !strings.HasPrefix(name, populationPrefix) {
				continue
			}
			ok := false
			for _, m := range vs.LabelMatchers {
				ok = ok || (m.Name == "model_name" && m.Type == labels.MatchRegexp && m.Value == varModelName)
			}
			if !ok {
				t.Errorf("%s: %s lacks model_name=~\"$model_name\"", q.where, vs)
			}
		}
	}
}

// quantilesOf returns, per histogram family, the quantiles histogram_quantile
// computes over it in expr.
func quantilesOf(expr parser.Node, e *exposition) map[string]map[float64]bool {
	out := map[string]map[float64]bool{}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		c, ok := n.(*parser.Call)
		if !ok || c.Func.Name != "histogram_quantile" {
			return nil
		}
		phi, ok := c.Args[0].(*parser.NumberLiteral)
		if !ok {
			return nil
		}
		native, classic := histogramUse(c.Args[1], e)
		for _, set := range []map[string]bool{native, classic} {
			for fam := range set {
				if out[fam] == nil {
					out[fam] = map[float64]bool{}
				}
				out[fam][phi.Val] = true
			}
		}
		return nil
	})
	return out
}

// TestDashboardPanels checks the panels issues 5 and 15 ask for: the
// headline quantiles and heatmaps over all requests (the population
// families), the exact sample for drill-down (heatmaps with exemplars,
// TPOT) labelled as such, coverage and bias per family, the phase
// breakdown and the withheld share.
func TestDashboardPanels(t *testing.T) {
	d := loadDashboard(t)
	qs := d.queries(t)
	e := scrapeExporter(t)
	var population []string // the llm_population_* families of the scrape
	for fam, typ := range e.families {
		if strings.HasPrefix(fam, populationPrefix) && typ == dto.MetricType_HISTOGRAM {
			population = append(population, fam)
		}
	}
	sort.Strings(population)
	if len(population) == 0 {
		t.Fatal("the exporter exposes no llm_population_* histogram")
	}
	quantileWant := append([]string{exactPrefix + "time_per_output_token_seconds"}, population...)
	heatmapWant := []string{exactPrefix + "time_per_output_token_seconds"}
	for _, fam := range population {
		if strings.HasSuffix(fam, "_seconds") {
			heatmapWant = append(heatmapWant, fam)
			// Each latency family also has an exact-sample heatmap with
			// exemplars (the request ids).
			exact := exactPrefix + strings.TrimPrefix(fam, populationPrefix)
			if exact != exactPrefix+"inference_seconds" {
				heatmapWant = append(heatmapWant, exact)
			}
		}
	}

	quantilePanel := map[string]bool{}
	heatmapPanel := map[string]bool{}
	byPanel := map[*panel][]dashQuery{}
	for _, q := range qs {
		if q.panel != nil {
			byPanel[q.panel] = append(byPanel[q.panel], q)
		}
	}
	readsFamilies := func(qs []dashQuery) map[string]bool {
		fams := map[string]bool{}
		for _, q := range qs {
			n, c := histogramUse(q.expr, e)
			for f := range n {
				fams[f] = true
			}
			for f := range c {
				fams[f] = true
			}
		}
		return fams
	}
	for p, qs := range byPanel {
		switch p.Type {
		case "timeseries":
			got := map[string]map[float64]bool{}
			for _, q := range qs {
				for fam, phis := range quantilesOf(q.expr, e) {
					if got[fam] == nil {
						got[fam] = map[float64]bool{}
					}
					for phi := range phis {
						got[fam][phi] = true
					}
				}
			}
			for fam, phis := range got {
				if phis[0.5] && phis[0.9] && phis[0.99] {
					quantilePanel[fam] = true
				}
			}
		case "heatmap":
			fams := readsFamilies(qs)
			exact := false
			for fam := range fams {
				heatmapPanel[fam] = true
				exact = exact || strings.HasPrefix(fam, exactPrefix)
			}
			if exact {
				// Request ids are on the exact families only.
				for _, tg := range p.Targets {
					if !tg.Exemplar {
						t.Errorf("heatmap %q query %s: exemplars are off", p.Title, tg.RefID)
					}
				}
			}
			classic := false
			for _, tg := range p.Targets {
				classic = classic || tg.Format == "heatmap"
			}
			if !classic {
				t.Errorf("heatmap %q: no query with format heatmap for classic buckets", p.Title)
			}
		}

		// The exact sample is labelled as such; the rest says it covers
		// all requests. The proxy's families (llm_request_proxy_*) are not
		// the exact sample: they cover every request capture relayed, and
		// a panel of them says it shows the proxy's view.
		fams := readsFamilies(qs)
		exact, pop := false, false
		for fam := range fams {
			if strings.HasPrefix(fam, proxyPrefix) {
				if !strings.Contains(p.Title, "proxy") {
					t.Errorf("panel %q reads the proxy's %s: its title must say \"proxy\"", p.Title, fam)
				}
				continue
			}
			exact = exact || strings.HasPrefix(fam, exactPrefix)
			pop = pop || strings.HasPrefix(fam, populationPrefix)
		}
		switch {
		case exact && pop:
			if !strings.Contains(p.Title, "exact sample") && !strings.Contains(p.Title, "coverage") && !strings.Contains(p.Title, "Coverage") && !strings.Contains(p.Title, "Bias") {
				t.Errorf("panel %q reads both the exact sample and all requests: its title must say which is which", p.Title)
			}
		case exact:
			if !strings.Contains(p.Title, "(exact sample)") {
				t.Errorf("panel %q reads only the exact per-request families: its title must say \"(exact sample)\"", p.Title)
			}
		case pop:
			if !strings.Contains(p.Title, "(all requests)") {
				t.Errorf("panel %q reads only the population families: its title must say \"(all requests)\"", p.Title)
			}
		}
	}
	for _, fam := range quantileWant {
		if !quantilePanel[fam] {
			t.Errorf("%s: no time series panel with p50, p90 and p99", fam)
		}
	}
	for _, fam := range heatmapWant {
		if !heatmapPanel[fam] {
			t.Errorf("%s: no heatmap panel", fam)
		}
	}

	// Coverage and bias per family: for every population family, a ratio
	// of the exact family over the population one, of counts (coverage)
	// and of means (bias), each on one panel with every family.
	coverage, bias := map[*panel]map[string]bool{}, map[*panel]map[string]bool{}
	for p, qs := range byPanel {
		for _, q := range qs {
			be, ok := q.expr.(*parser.BinaryExpr)
			if !ok || be.Op != parser.DIV {
				continue
			}
			lhs, rhs := seriesNames(be.LHS), seriesNames(be.RHS)
			for _, fam := range population {
				exact := exactPrefix + strings.TrimPrefix(fam, populationPrefix)
				switch {
				case lhs[exact+"_count"] && !lhs[exact+"_sum"] && rhs[fam+"_count"] && !rhs[fam+"_sum"]:
					if coverage[p] == nil {
						coverage[p] = map[string]bool{}
					}
					coverage[p][fam] = true
				case lhs[exact+"_sum"] && lhs[exact+"_count"] && rhs[fam+"_sum"] && rhs[fam+"_count"]:
					if bias[p] == nil {
						bias[p] = map[string]bool{}
					}
					bias[p][fam] = true
				}
			}
		}
	}
	for what, panels := range map[string]map[*panel]map[string]bool{"coverage": coverage, "bias": bias} {
		complete := false
		for _, fams := range panels {
			complete = complete || len(fams) == len(population)
		}
		if !complete {
			t.Errorf("no panel shows the %s of every family (%v)", what, population)
		}
	}

	// The phase breakdown stacks queue, prefill and decode.
	stacked := false
	for p, qs := range byPanel {
		var fc struct {
			Defaults struct {
				Custom struct {
					Stacking struct {
						Mode string `json:"mode"`
					} `json:"stacking"`
				} `json:"custom"`
			} `json:"defaults"`
		}
		if err := json.Unmarshal(p.FieldConfig, &fc); err != nil {
			t.Errorf("panel %q: fieldConfig: %v", p.Title, err)
		}
		if p.Type != "timeseries" || fc.Defaults.Custom.Stacking.Mode != "normal" {
			continue
		}
		fams := readsFamilies(qs)
		stacked = stacked || fams[populationPrefix+"queue_seconds"] && fams[populationPrefix+"prefill_seconds"] && fams[populationPrefix+"decode_seconds"]
	}
	if !stacked {
		t.Error("no stacked time series panel of queue, prefill and decode time over all requests")
	}

	// The share of withheld requests is a panel of its own: a ratio whose
	// numerator selects outcome="withheld".
	share := false
	for _, qs := range byPanel {
		for _, q := range qs {
			be, ok := q.expr.(*parser.BinaryExpr)
			if !ok || be.Op != parser.DIV {
				continue
			}
			for _, vs := range selectors(be.LHS) {
				for _, m := range vs.LabelMatchers {
					share = share || (m.Name == "outcome" && m.Type == labels.MatchEqual && m.Value == "withheld")
				}
			}
		}
	}
	if !share {
		t.Error("no panel shows the share of withheld requests")
	}
}

const (
	exactPrefix      = "llm_request_"
	populationPrefix = "llm_population_"
	proxyPrefix      = "llm_request_proxy_"
)

// seriesNames returns the metric names expr selects, a native histogram
// family X counting as X_sum and X_count (what histogram_sum and
// histogram_count read of it).
func seriesNames(expr parser.Node) map[string]bool {
	out := map[string]bool{}
	for _, vs := range selectors(expr) {
		name, _ := selectorName(vs)
		out[name] = true
	}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		c, ok := n.(*parser.Call)
		if !ok || (c.Func.Name != "histogram_sum" && c.Func.Name != "histogram_count") {
			return nil
		}
		suffix := strings.TrimPrefix(c.Func.Name, "histogram")
		for _, vs := range selectors(c.Args[0]) {
			name, _ := selectorName(vs)
			out[name+suffix] = true
		}
		return nil
	})
	return out
}

// TestDashboardQueriesPromtool writes every dashboard query as a recording
// rule and runs promtool check rules on it: the queries must also be valid
// for the Prometheus that CI installs (Debian's, older than the Go parser).
func TestDashboardQueriesPromtool(t *testing.T) {
	promtool := requirePromtool(t)
	d := loadDashboard(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range d.queries(t) {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: q.query})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard queries: %v\n%s", err, out)
	}
}

// TestReadmeDescribesPanels requires the README's Dashboard section to
// name every panel.
func TestReadmeDescribesPanels(t *testing.T) {
	section := readmeSection(t, "Dashboard")
	for _, p := range loadDashboard(t).allPanels() {
		if !strings.Contains(section, p.Title) {
			t.Errorf("README section Dashboard does not describe panel %q", p.Title)
		}
	}
}

// readmeSection returns the text of the level-2 section named title.
func readmeSection(t *testing.T, title string) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "\n## "+title+"\n")
	if start < 0 {
		t.Fatalf("README.md has no section %q", "## "+title)
	}
	s = s[start+1:]
	if end := strings.Index(s[3:], "\n## "); end >= 0 {
		s = s[:end+3]
	}
	return s
}
