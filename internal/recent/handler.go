package recent

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/waterfall"
)

//go:embed page.html
var pageHTML string

var page = template.Must(template.New("requests").Funcs(template.FuncMap{
	"fmtTime":  func(t time.Time) string { return t.UTC().Format("15:04:05.000") },
	"withheld": withheldText,
	"width":    barStyle,
}).Parse(pageHTML))

// barStyle places a bar element: from start, len long, as percentages of
// scale. Only numbers formatted here reach the style attribute.
func barStyle(scale, start, length float64) template.CSS {
	return template.CSS(fmt.Sprintf("left:%.4f%%;width:%.4f%%", waterfall.Percent(start, scale), waterfall.Percent(length, scale)))
}

// header is a sortable column heading.
type header struct {
	Key, Label, URL, Arrow string
	Num                    bool
}

type pageData struct {
	Q        query
	Rows     []row
	Kept     int
	Size     int
	Scale    float64
	Models   []string
	Outcomes []string
	Headers  []header
	JSONURL  string
}

// Handlers serves /requests and /requests.json from a Ring.
type Handlers struct {
	ring *Ring
	log  *slog.Logger
}

// NewHandlers serves the entries of ring.
func NewHandlers(ring *Ring, log *slog.Logger) *Handlers {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handlers{ring: ring, log: log}
}

// scale is the width of the page's bars in seconds: the longest bar shown.
func scale(rows []row) float64 {
	s := 0.0
	for i := range rows {
		s = max(s, rows[i].Bar.Extent())
	}
	return s
}

// Page serves the HTML page.
func (h *Handlers) Page(w http.ResponseWriter, r *http.Request) {
	entries := h.ring.Entries()
	q := parseQuery(r.URL.Query())
	rows := q.rows(entries)
	d := pageData{Q: q, Rows: rows, Kept: len(entries), Size: len(h.ring.buf), Scale: scale(rows),
		Models: models(entries), Outcomes: outcomes()}
	link := func(key string) string {
		next := q
		next.Desc = !(q.Sort == key && q.Desc)
		next.Sort = key
		return "?" + next.values().Encode()
	}
	add := func(key, label string, num bool) {
		hd := header{Key: key, Label: label, URL: link(key), Num: num}
		if q.Sort == key {
			hd.Arrow = " ▲"
			if q.Desc {
				hd.Arrow = " ▼"
			}
		}
		d.Headers = append(d.Headers, hd)
	}
	add("decided", "decided (UTC)", false)
	add("id", "request", false)
	add("model", "model", false)
	add("outcome", "outcome", false)
	for _, c := range valueColumns {
		add(c.key, c.label, true)
	}
	add("slo", "SLO", false)
	jq := q.values()
	jq.Del("refresh")
	d.JSONURL = "requests.json?" + jq.Encode()

	var buf bytes.Buffer
	if err := page.Execute(&buf, d); err != nil {
		h.log.Error("cannot render the requests page", "err", err)
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
}

// The JSON document of /requests.json. Values follow the report's JSON
// (report/doc.go): a number only when exact, else null with the reason
// under "withheld".
type jsonDoc struct {
	Kept         int           `json:"kept"`
	ScaleSeconds float64       `json:"scale_seconds"`
	Requests     []jsonRequest `json:"requests"`
}

type jsonRequest struct {
	RequestID    string            `json:"request_id"`
	Model        *string           `json:"model_name"`
	Outcome      string            `json:"outcome"`
	RejectReason *string           `json:"reject_reason"`
	StartedAt    *string           `json:"started_at"`
	DecidedAt    string            `json:"decided_at"`
	Values       map[string]any    `json:"values"`
	Withheld     map[string]string `json:"withheld"`
	SLO          []jsonJudgement   `json:"slo"`
}

type jsonJudgement struct {
	SLO    string `json:"slo"`
	Result string `json:"result"`
	Why    string `json:"why,omitempty"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// JSON serves the rows as JSON, with the page's filters and order.
func (h *Handlers) JSON(w http.ResponseWriter, r *http.Request) {
	entries := h.ring.Entries()
	q := parseQuery(r.URL.Query())
	rows := q.rows(entries)
	doc := jsonDoc{Kept: len(entries), ScaleSeconds: scale(rows), Requests: make([]jsonRequest, 0, len(rows))}
	for i := range rows {
		rw := &rows[i]
		jr := jsonRequest{RequestID: rw.ID, Model: nullable(rw.Model), Outcome: rw.Outcome, RejectReason: nullable(rw.RejectReason),
			DecidedAt: rw.Decided.UTC().Format(time.RFC3339Nano), Values: map[string]any{}, Withheld: map[string]string{},
			SLO: []jsonJudgement{}}
		if !rw.Started.IsZero() {
			jr.StartedAt = nullable(rw.Started.UTC().Format(time.RFC3339Nano))
		}
		for _, v := range rw.Values {
			if v.Exact {
				jr.Values[v.Key] = v.V
			} else {
				jr.Values[v.Key] = nil
				jr.Withheld[v.Key] = v.Reason
			}
		}
		for _, j := range rw.SLO {
			jr.SLO = append(jr.SLO, jsonJudgement{SLO: j.Objective, Result: string(j.Result), Why: j.Why})
		}
		doc.Requests = append(doc.Requests, jr)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		h.log.Debug("writing /requests.json", "err", err)
	}
}
