package report

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/parser"
)

// The hand-written encoder must write what encoding/json writes.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "tab\tnl\ncr\r", "\x00\x1f\x7f", "é—ü", "\u2028\u2029",
		"bad\xffutf8", "<html>&", "chatcmpl-0123_before_20251006_101427_370123.txt"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q: %s is not JSON: %v", s, got, err)
			continue
		}
		want, _ := json.Marshal(s)
		// encoding/json also escapes <, > and & for HTML; both decode alike.
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: decodes to %q, encoding/json's to %q", s, back, wantBack)
		}
	}
	for _, v := range []float64{0, 1, -1, 0.1, 1.0 / 3, 1e-6, 9.99e-7, 1e-7, 1.5e-9, 123456789.125, 1e20, 1e21, 1.7976931348623157e308, 5e-324, -2.5e-8} {
		got := appendJSONFloat(nil, v)
		want, _ := json.Marshal(v)
		if !bytes.Equal(got, want) {
			t.Errorf("%v: %s, encoding/json %s", v, got, want)
		}
	}
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if got := appendJSONFloat(nil, v); string(got) != "null" {
			t.Errorf("%v: %s, want null", v, got)
		}
	}
}

// TestJSONContract decodes the golden reports as another tool would and
// checks the contract: a value is a number exactly when it is exact, token
// counts are integers, every null has its reason.
func TestJSONContract(t *testing.T) {
	for _, sc := range scenarios {
		b, err := os.ReadFile(filepath.Join(goldenDir, sc.name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Requests []map[string]json.RawMessage `json:"requests"`
			Summary  map[string]json.RawMessage   `json:"summary"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: %v", sc.name, err)
		}
		for _, k := range []string{"requests", "outcomes", "rejected_by_reason", "excluded", "snapshots", "models"} {
			if _, ok := doc.Summary[k]; !ok {
				t.Errorf("%s: summary lacks %q", sc.name, k)
			}
		}
		for _, req := range doc.Requests {
			var withheld map[string]string
			if err := json.Unmarshal(req["withheld"], &withheld); err != nil {
				t.Fatalf("%s: withheld: %v", sc.name, err)
			}
			var outcome string
			json.Unmarshal(req["outcome"], &outcome)
			for _, c := range columns {
				raw, ok := req[c.key]
				if !ok {
					t.Errorf("%s: %s missing", sc.name, c.key)
					continue
				}
				reason, isWithheld := withheld[c.key]
				switch {
				case string(raw) == "null":
					if !isWithheld || reason == "" {
						t.Errorf("%s: %s null without a reason", sc.name, c.key)
					}
				case isWithheld:
					t.Errorf("%s: %s = %s but withheld (%s)", sc.name, c.key, raw, reason)
				case c.tokens() && strings.ContainsAny(string(raw), ".eE"):
					t.Errorf("%s: %s = %s, not an integer", sc.name, c.key, raw)
				}
			}
			if outcome == "unpaired" && len(withheld) != len(columns) {
				t.Errorf("%s: unpaired request with values: %v", sc.name, req)
			}
			if _, ok := req["started_at"]; !ok {
				t.Errorf("%s: no started_at", sc.name)
			}
		}
	}
}

func TestWriteJSONEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, &Report{}); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v:\n%s", err, b.String())
	}
	if reqs, ok := doc["requests"].([]any); !ok || len(reqs) != 0 {
		t.Errorf("requests = %v, want []", doc["requests"])
	}
}

// TestRequestJSONTokensAreIntegers: a token count is written as an
// integer even when the sums' difference is not one to the last bit.
func TestRequestJSONTokensAreIntegers(t *testing.T) {
	res := attribution.Result{RequestID: "r", Outcome: attribution.Partial}
	res.Values[parser.PromptTokens] = attribution.Value{V: 41.99999999999, Exact: true}
	res.Values[parser.Decode] = attribution.Value{V: 0.25, Exact: true}
	got := string(appendJSON(nil, requestJSON(&res), 0))
	for _, want := range []string{`"prompt_tokens": 42,`, `"decode_seconds": 0.25,`, `"ttft_seconds": null,`} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %s:\n%s", want, got)
		}
	}
}
