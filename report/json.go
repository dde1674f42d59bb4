package report

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"time"

	"github.com/delta-exporter/delta-exporter/attribution"
)

// StartedAtLayout is how start times are written: RFC 3339 in UTC with
// microseconds, the precision of the snapshot names.
const StartedAtLayout = "2006-01-02T15:04:05.000000Z07:00"

// WriteJSON writes the report as one JSON document. The format is a
// contract that other tools read; the package documentation describes it.
func WriteJSON(w io.Writer, r *Report) error {
	reqs := make([]object, len(r.Requests))
	for i := range r.Requests {
		reqs[i] = requestJSON(&r.Requests[i])
	}
	doc := object{{"requests", reqs}, {"summary", summaryJSON(r)}}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
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
			o = append(o, member{c.key, number(v.V)})
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
			metrics = append(metrics, member{col.key, statsJSON(&ms.Metrics[c])})
		}
		models[i] = append(mo, member{"metrics", metrics})
	}
	return append(o, member{"models", models})
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
	o := object{{"count", st.Count}, {"total", number(st.Total)}}
	for _, m := range []member{{"mean", st.Mean}, {"p50", st.P50}, {"p90", st.P90}, {"p99", st.P99}, {"max", st.Max}} {
		if st.Count == 0 {
			m.val = nil
		} else {
			m.val = number(m.val.(float64))
		}
		o = append(o, m)
	}
	return append(o, member{"withheld", withheld})
}

// number is v, or nil (null) when JSON cannot hold it.
func number(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
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
	val any
}

func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.val)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
