package report

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
)

// StartedAtLayout is how start times are written: RFC 3339 in UTC with
// microseconds, the precision of the snapshot names.
const StartedAtLayout = "2006-01-02T15:04:05.000000Z07:00"

// WriteJSON writes the report as one JSON document. The format is a
// contract that other tools read; the package documentation describes it.
// The document is written as it is built, a request at a time, so that
// writing costs little next to reading the directory.
func WriteJSON(w io.Writer, r *Report) error {
	var b []byte
	b = append(b, "{\n  \"requests\": ["...)
	for i := range r.Requests {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = appendJSON(b, requestJSON(&r.Requests[i]), 2)
		if len(b) >= 64<<10 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	if len(r.Requests) > 0 {
		b = append(b, "\n  "...)
	}
	b = append(b, "],\n  \"summary\": "...)
	b = appendJSON(b, summaryJSON(r), 1)
	b = append(b, ",\n  \"assumptions\": "...)
	b = appendJSON(b, assumptionsJSON(r), 1)
	b = append(b, "\n}\n"...)
	_, err := w.Write(b)
	return err
}

// requestJSON is one request: each value a number only when it is exact,
// otherwise null with its reason under "withheld".
func requestJSON(r *attribution.Result) object {
	o := object{
		{"request_id", r.RequestID},
		{"model_name", nullString(r.Model)},
		{"before_file", nullString(r.BeforeFile)},
		{"after_file", nullString(r.AfterFile)},
		{"started_at", startedAt(r)},
		{"outcome", string(r.Outcome)},
		{"reject_reason", nullString(string(r.RejectReason))},
	}
	withheld := object{}
	for _, c := range columns {
		v := c.value(r)
		switch {
		case v.Exact && c.tokens():
			o = append(o, member{c.key, int64(math.Round(v.V))})
		case v.Exact:
			o = append(o, member{c.key, v.V})
		default:
			o = append(o, member{c.key, nil})
			withheld = append(withheld, member{c.key, string(v.Reason)})
		}
	}
	return append(o, member{"withheld", withheld})
}

// startedAt is the before file's time, or null without a before file.
func startedAt(r *attribution.Result) any {
	if r.BeforeFile == "" {
		return nil
	}
	return FormatTime(r.BeforeTime)
}

// FormatTime renders t as StartedAtLayout in UTC.
func FormatTime(t time.Time) string { return t.UTC().Format(StartedAtLayout) }

func summaryJSON(r *Report) object {
	s := &r.Summary
	files := make([]object, len(r.Rejected))
	for i, f := range r.Rejected {
		files[i] = object{{"file", f.File}, {"reason", f.Reason}, {"error", f.Err}}
	}
	o := object{{"requests", s.Outcomes.Requests()}}
	o = append(o, outcomesJSON(s.Outcomes)...)
	o = append(o,
		member{"excluded", object{{"time", r.Excluded.Time}, {"model", r.Excluded.Model}, {"no_model", r.Excluded.NoModel}}},
		member{"snapshots", object{{"read", r.SnapshotsRead}, {"rejected", files}, {"ignored", r.Ignored}}},
	)
	models := make([]object, len(s.Models))
	for i := range s.Models {
		ms := &s.Models[i]
		mo := object{{"model_name", nullString(ms.Model)}, {"requests", ms.Outcomes.Requests()}}
		mo = append(mo, outcomesJSON(ms.Outcomes)...)
		metrics := object{}
		for c, col := range columns {
			metrics = append(metrics, member{col.key, append(statsJSON(&ms.Metrics[c]), populationJSON(ms, c)...)})
		}
		models[i] = append(mo, member{"metrics", metrics})
	}
	o = append(o, member{"bias_warning_threshold", BiasThreshold})
	o = append(o, member{"models", models})
	if r.Objectives != nil {
		o = append(o, member{"slo", sloJSON(r)})
	}
	return o
}

func outcomesJSON(oc Outcomes) object {
	rejected := object{}
	for _, reason := range attribution.RejectReasons {
		if n := oc.RejectedBy[reason]; n > 0 {
			rejected = append(rejected, member{string(reason), n})
		}
	}
	return object{
		{"outcomes", object{{"exact", oc.Exact}, {"partial", oc.Partial}, {"withheld", oc.Withheld},
			{"rejected", oc.Rejected}, {"unpaired", oc.Unpaired}}},
		{"rejected_by_reason", rejected},
	}
}

func statsJSON(st *Stats) object {
	withheld := object{}
	for _, reason := range attribution.WithheldReasons {
		if n := st.Withheld[reason]; n > 0 {
			withheld = append(withheld, member{string(reason), n})
		}
	}
	o := object{{"count", st.Count}, {"total", st.Total}}
	for _, m := range []member{{"mean", st.Mean}, {"p50", st.P50}, {"p90", st.P90}, {"p99", st.P99}, {"max", st.Max}} {
		if st.Count == 0 {
			m.val = nil
		}
		o = append(o, m)
	}
	return append(o, member{"withheld", withheld})
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// object is a JSON object whose members keep their order, so the document
// reads in the order of the table and diffs cleanly.
type object []member

type member struct {
	key string
	val any // nil, bool, string, int, int64, uint64, float64, object or []object
}

// appendJSON appends v as indented JSON (two spaces a level, like
// json.MarshalIndent), v's first line being at the given depth. It knows
// only the types a report is made of; encoding/json's reflection made
// writing cost a sizeable part of a report's time.
func appendJSON(b []byte, v any, depth int) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendJSONString(b, v)
	case bool:
		return strconv.AppendBool(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case float64:
		return appendJSONFloat(b, v)
	case object:
		if len(v) == 0 {
			return append(b, "{}"...)
		}
		b = append(b, '{')
		for i, m := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendIndent(b, depth+1)
			b = appendJSONString(b, m.key)
			b = append(b, ": "...)
			b = appendJSON(b, m.val, depth+1)
		}
		return append(appendIndent(b, depth), '}')
	case []object:
		if len(v) == 0 {
			return append(b, "[]"...)
		}
		b = append(b, '[')
		for i, o := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendIndent(b, depth+1)
			b = appendJSON(b, o, depth+1)
		}
		return append(appendIndent(b, depth), ']')
	}
	panic(fmt.Sprintf("report: no JSON for %T", v))
}

func appendIndent(b []byte, depth int) []byte {
	b = append(b, '\n')
	for range depth {
		b = append(b, "  "...)
	}
	return b
}

// appendJSONFloat writes v as encoding/json does (shortest round-trip
// digits, exponent only for very small or large values); non-finite
// values, which JSON cannot hold, as null.
func appendJSONFloat(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(v)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		n := len(b)
		b = strconv.AppendFloat(b, v, 'e', -1, 64)
		// e-09 -> e-9, as encoding/json writes it.
		if m := len(b) - n; m >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
		return b
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// appendJSONString quotes s for JSON: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (file names and
// curl's error text may hold anything).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, "\\ufffd"...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but not valid JavaScript: escaped as encoding/json does.
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// assumptionsJSON is one object per server process: its start time
// (process_start_time_seconds, null when the server exposes none) and,
// per assumption, its state, the observations that agreed with it and the
// evidence that contradicted it.
func assumptionsJSON(r *Report) []object {
	out := []object{}
	for _, sa := range r.Assumptions {
		list := []object{}
		for _, st := range sa.Status {
			o := object{{"name", st.Assumption.Name()}, {"state", string(st.State)}, {"agreed", st.Agreed}}
			var ev any
			if c := st.Contradiction; c != nil {
				ev = object{{"request_id", nullString(c.RequestID)}, {"detail", c.Detail}}
			}
			o = append(o, member{"contradiction", ev})
			if st.Note != "" {
				o = append(o, member{"note", st.Note})
			}
			if w := st.Windows; w != nil {
				o = append(o, member{"windows", object{{"capture", w.Capture}, {"flag", w.Flag}, {"unvouched", w.Unvouched}}})
			}
			list = append(list, o)
		}
		out = append(out, object{{"server_start", nullString(sa.Epoch)}, {"assumptions", list}})
	}
	return out
}
