// Package slo judges each decided request against latency objectives
// ("goodput"): per request and objective the result is met, missed or
// unknown. Unknown means a value the objective needs was withheld (or the
// server does not have it): the package never guesses a value.
//
// The objectives come from a YAML file (--slo.config) read strictly: an
// unknown key, a threshold without a unit or an objective without a
// threshold is an error naming the objective. A file is parsed into a
// fresh Set and replaces the current one only when it is valid
// (Reloader), as statsd_exporter reloads its mapping.
package slo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxObjectives bounds the objectives of one file: their names are the
// values of the slo label.
const MaxObjectives = 32

// Value is a per-request value an objective can hold a threshold on.
type Value int

// The values, in the order a request goes through them.
const (
	Queue Value = iota
	Prefill
	Decode
	TTFT
	E2E
	TPOT // time per output token: decode / (generation tokens − 1)
	NumValues
)

// valueKeys are the threshold keys of the file, by Value.
var valueKeys = [NumValues]string{Queue: "queue", Prefill: "prefill", Decode: "decode", TTFT: "ttft", E2E: "e2e", TPOT: "time_per_output_token"}

// Key is the value's key in the file and in reports.
func (v Value) Key() string { return valueKeys[v] }

// Objective is one named objective: every threshold must hold for a
// request to meet it.
type Objective struct {
	// Name is the value of the slo label: unique, [a-zA-Z0-9_.-], at most
	// 64 characters.
	Name string
	// Target is the ratio of requests that should meet the objective
	// (0 < Target < 1), for burn-rate alerts and reports.
	Target float64
	// Thresholds holds, per value, the largest value that meets the
	// objective; 0 means no threshold on that value.
	Thresholds [NumValues]time.Duration
	// Models and ModelRegex scope the objective: it applies to a request
	// whose model_name is one of Models or matches ModelRegex (anchored).
	// Neither set: every model.
	Models     []string
	ModelRegex *regexp.Regexp
}

// Scoped reports whether the objective names models.
func (o *Objective) Scoped() bool { return len(o.Models) > 0 || o.ModelRegex != nil }

// Applies reports whether the objective applies to requests of model.
// A request with no attributed model ("": none of its values could be
// attributed) may be any model's, so every objective judges it, and it is
// unknown: counting it nowhere would make the unknown share look smaller
// than it is.
func (o *Objective) Applies(model string) bool {
	if !o.Scoped() || model == "" {
		return true
	}
	for _, m := range o.Models {
		if m == model {
			return true
		}
	}
	return o.ModelRegex != nil && o.ModelRegex.MatchString(model)
}

// Set is a parsed, valid objectives file.
type Set struct {
	Objectives []Objective
}

// Names are the objectives' names, in file order.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, len(s.Objectives))
	for i := range s.Objectives {
		names[i] = s.Objectives[i].Name
	}
	return names
}

// The file's shape. Every key is modelled and unknown keys are refused.
type fileDoc struct {
	Objectives []objectiveDoc `yaml:"objectives"`
}

type objectiveDoc struct {
	Name       string        `yaml:"name"`
	Target     *float64      `yaml:"target"`
	Models     []string      `yaml:"models"`
	ModelRegex *string       `yaml:"model_regex"`
	Thresholds thresholdsDoc `yaml:"thresholds"`
}

type thresholdsDoc struct {
	Queue   *duration `yaml:"queue"`
	Prefill *duration `yaml:"prefill"`
	Decode  *duration `yaml:"decode"`
	TTFT    *duration `yaml:"ttft"`
	E2E     *duration `yaml:"e2e"`
	TPOT    *duration `yaml:"time_per_output_token"`
}

// duration is a threshold: a string with a unit ("500ms", "1.5s"). A bare
// number is refused: 0.5 could mean seconds or milliseconds.
type duration struct{ d time.Duration }

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return fmt.Errorf("line %d: threshold %q: want a duration with a unit, such as 500ms or 1.5s", n.Line, n.Value)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: threshold %q: want a duration with a unit (ns, us, ms, s, m, h), such as 500ms or 1.5s", n.Line, n.Value)
	}
	if v <= 0 {
		return fmt.Errorf("line %d: threshold %q: must be positive", n.Line, n.Value)
	}
	d.d = v
	return nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Parse reads an objectives file. The error names the objective and, for
// YAML errors, the line.
func Parse(b []byte) (*Set, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var doc fileDoc
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no objectives: the file is empty")
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// One line per problem from yaml; one line in all here, for
			// logs and the command's single error line.
			return nil, errors.New(strings.Join(te.Errors, "; "))
		}
		return nil, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	if len(doc.Objectives) == 0 {
		return nil, errors.New("no objectives: want a list under objectives:")
	}
	if len(doc.Objectives) > MaxObjectives {
		return nil, fmt.Errorf("%d objectives: at most %d (their names are label values)", len(doc.Objectives), MaxObjectives)
	}
	set := &Set{}
	seen := map[string]bool{}
	for i, od := range doc.Objectives {
		o, err := od.objective()
		if err != nil {
			if od.Name == "" {
				return nil, fmt.Errorf("objective %d: %w", i+1, err)
			}
			return nil, fmt.Errorf("objective %q: %w", od.Name, err)
		}
		if seen[o.Name] {
			return nil, fmt.Errorf("objective %q: name used twice", o.Name)
		}
		seen[o.Name] = true
		set.Objectives = append(set.Objectives, o)
	}
	return set, nil
}

func (od *objectiveDoc) objective() (Objective, error) {
	o := Objective{Name: od.Name}
	if !nameRE.MatchString(od.Name) {
		return o, fmt.Errorf("name %q: want 1 to 64 of [A-Za-z0-9_.-], starting with a letter or digit", od.Name)
	}
	switch {
	case od.Target == nil:
		return o, errors.New("no target: want a ratio such as 0.99")
	case !(*od.Target > 0 && *od.Target < 1):
		return o, fmt.Errorf("target %v: want a ratio strictly between 0 and 1, such as 0.99", *od.Target)
	}
	o.Target = *od.Target
	t := &od.Thresholds
	n := 0
	for v, d := range [NumValues]*duration{Queue: t.Queue, Prefill: t.Prefill, Decode: t.Decode, TTFT: t.TTFT, E2E: t.E2E, TPOT: t.TPOT} {
		if d != nil {
			o.Thresholds[v] = d.d
			n++
		}
	}
	if n == 0 {
		return o, fmt.Errorf("no thresholds: want at least one of %s", strings.Join(valueKeys[:], ", "))
	}
	for _, m := range od.Models {
		if m == "" {
			return o, errors.New("models: an empty model name")
		}
	}
	o.Models = od.Models
	if od.ModelRegex != nil {
		if *od.ModelRegex == "" {
			return o, errors.New("model_regex: empty (leave it out to apply to every model)")
		}
		re, err := regexp.Compile("^(?:" + *od.ModelRegex + ")$")
		if err != nil {
			return o, fmt.Errorf("model_regex: %w", err)
		}
		o.ModelRegex = re
	}
	return o, nil
}

// Load reads and parses the file at path.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
