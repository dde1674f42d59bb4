package recent

import (
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

func TestRing(t *testing.T) {
	r := NewRing(3)
	if len(r.Entries()) != 0 {
		t.Fatal("entries in a new ring")
	}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		r.Add(Entry{Result: attribution.Result{RequestID: id}})
	}
	var ids []string
	for _, e := range r.Entries() {
		ids = append(ids, e.Result.RequestID)
	}
	if strings.Join(ids, "") != "edc" {
		t.Errorf("entries %v, want the last three, newest first", ids)
	}
	if len(NewRing(MaxSize+5).buf) != MaxSize || len(NewRing(0).buf) != 1 {
		t.Error("size not clamped")
	}
}

// TestFilterAndSort: filters by model and outcome; every column sorts,
// both ways; a value that is not shown sorts last either way.
func TestFilterAndSort(t *testing.T) {
	es := entries(60)
	for _, tc := range []struct {
		query string
		check func(rows []row) string
	}{
		{"model=qwen-32b", func(rows []row) string {
			for _, r := range rows {
				if r.Model != "qwen-32b" {
					return "model " + r.Model
				}
			}
			return ""
		}},
		{"outcome=partial", func(rows []row) string {
			for _, r := range rows {
				if r.Outcome != "partial" {
					return "outcome " + r.Outcome
				}
			}
			if len(rows) == 0 {
				return "no partial rows"
			}
			return ""
		}},
	} {
		q := parseQuery(mustQuery(t, tc.query))
		if msg := tc.check(q.rows(es)); msg != "" {
			t.Errorf("%s: %s", tc.query, msg)
		}
	}
	for _, key := range sortKeys {
		for _, order := range []string{"asc", "desc"} {
			q := parseQuery(mustQuery(t, "sort="+key+"&order="+order))
			if q.Sort != key {
				t.Fatalf("sort=%s not taken", key)
			}
			rows := q.rows(es)
			if len(rows) != len(es) {
				t.Fatalf("%s: %d rows", key, len(rows))
			}
			col := -1
			for i, c := range valueColumns {
				if c.key == key {
					col = i
				}
			}
			if col < 0 {
				continue
			}
			shown := true
			for i, r := range rows {
				v := r.Values[col]
				if v.Exact && !shown {
					t.Fatalf("%s %s: a shown value after a withheld one", key, order)
				}
				shown = v.Exact
				if i > 0 && v.Exact && rows[i-1].Values[col].Exact {
					prev := rows[i-1].Values[col].V
					if (order == "asc" && prev > v.V) || (order == "desc" && prev < v.V) {
						t.Fatalf("%s %s: %v then %v", key, order, prev, v.V)
					}
				}
			}
		}
	}
	if q := parseQuery(mustQuery(t, "sort=bogus&refresh=-1")); q.Sort != "decided" || !q.Desc || q.Refresh != defaultRefresh {
		t.Errorf("bad query read as %+v", q)
	}
}

func mustQuery(t *testing.T, s string) url.Values {
	v, err := url.ParseQuery(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestJSON: the same rows as the page, values null with their reasons.
func TestJSON(t *testing.T) {
	es := entries(30)
	ring := NewRing(30)
	for _, e := range es {
		ring.Add(e)
	}
	h := NewHandlers(ring, nil)
	rec := httptest.NewRecorder()
	h.JSON(rec, httptest.NewRequest("GET", "/requests.json?outcome=partial", nil))
	var doc struct {
		Kept     int `json:"kept"`
		Requests []struct {
			Outcome  string            `json:"outcome"`
			Values   map[string]any    `json:"values"`
			Withheld map[string]string `json:"withheld"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Kept != 30 || len(doc.Requests) == 0 {
		t.Fatalf("kept %d, %d rows", doc.Kept, len(doc.Requests))
	}
	for _, r := range doc.Requests {
		if r.Outcome != "partial" || r.Values["prefill_seconds"] != nil || r.Withheld["prefill_seconds"] != string(attribution.ReasonOverlap) {
			t.Errorf("row %+v", r)
		}
		if _, ok := r.Values["queue_seconds"].(float64); !ok {
			t.Errorf("queue not a number: %+v", r.Values)
		}
	}
	rec = httptest.NewRecorder()
	h.Page(rec, httptest.NewRequest("GET", "/requests", nil))
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	body := rec.Body.String()
	if strings.Contains(body, testutil.HostileModel) || !strings.Contains(body, "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;b&gt;bold") {
		t.Error("the hostile model name is not escaped in the page")
	}
	if !strings.Contains(body, `<meta http-equiv="refresh" content="5">`) {
		t.Error("no auto-refresh by default")
	}
}
