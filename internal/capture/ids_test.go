package capture

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/attribution"
	"github.com/delta-exporter/delta-exporter/internal/simulate"
	"github.com/delta-exporter/delta-exporter/internal/testutil/fakeupstream"
	"github.com/delta-exporter/delta-exporter/parser"
)

func TestSanitizeID(t *testing.T) {
	long := strings.Repeat("x", 10000)
	for _, tc := range []struct{ in, want string }{
		{"chatcmpl-3f2a9c", "chatcmpl-3f2a9c"},
		{"cmpl-a_b.c", "cmpl-a_b.c"},
		{"resp_68b0e2", "resp_68b0e2"},
		{"", ""},
		{"../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd"},
		{"/abs", "%2Fabs"},
		{"..", "%2E."},
		{".hidden", "%2Ehidden"},
		{"a\x00b", "a%00b"},
		{`a\b`, "a%5Cb"},
		{"100%", "100%25"},
		{"ü", "%C3%BC"},
		{"a b\r\n", "a%20b%0D%0A"},
	} {
		if got := SanitizeID(tc.in); got != tc.want {
			t.Errorf("SanitizeID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	got := SanitizeID(long)
	if len(got) > MaxIDLen || !strings.HasPrefix(got, "xxxx") || got[len(got)-17] != '~' {
		t.Errorf("long id became %q (%d bytes)", got, len(got))
	}
	if SanitizeID(long+"y") == got {
		t.Error("two long ids that differ at the end map to one name")
	}
	if got := SanitizeID(strings.Repeat("/", 300)); len(got) > MaxIDLen || strings.Contains(got, "/") ||
		strings.Contains(got[:len(got)-17], "~") || strings.Count(got[:len(got)-17], "%")*3 != len(got)-17 {
		t.Errorf("cut inside an escape: %q", got)
	}
}

func FuzzSanitizeID(f *testing.F) {
	for _, s := range []string{"chatcmpl-1", "../x", "a\x00b", ".", "%", strings.Repeat("é", 200)} {
		f.Add(s)
	}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	f.Fuzz(func(t *testing.T, raw string) {
		id := SanitizeID(raw)
		if raw == "" {
			if id != "" {
				t.Fatalf("empty id became %q", id)
			}
			return
		}
		if id == "" || len(id) > MaxIDLen || strings.HasPrefix(id, ".") || strings.ContainsAny(id, "/\\\x00") {
			t.Fatalf("SanitizeID(%q) = %q", raw, id)
		}
		if strings.Contains(id, "+") {
			t.Fatalf("SanitizeID(%q) = %q holds the suffix separator", raw, id)
		}
		// With the suffix of a reused id too (usedIDs).
		for _, nid := range []string{id, id + "+0123abcd"} {
			for _, st := range []parser.Stage{parser.Before, parser.After, parser.First, parser.Info} {
				name := parser.FormatName(nid, st, ts)
				if len(name) > 255 || checkName(name) != nil {
					t.Fatalf("name %q not usable", name)
				}
				n, err := parser.ParseName(name)
				if err != nil || n.RequestID != nid || n.Stage != st {
					t.Fatalf("name %q parses as %+v, %v", name, n, err)
				}
			}
		}
		if !strings.Contains(id, "~") {
			// Not cut: the escaping is reversible, so distinct ids stay distinct.
			back, err := url.PathUnescape(id)
			if err != nil || back != raw {
				t.Fatalf("SanitizeID(%q) = %q does not unescape back (%q, %v)", raw, id, back, err)
			}
		}
	})
}

// hostileUpstream answers chat completions with the id given in the query
// parameter id (any bytes, NUL included), as a stream or not, and observes
// each request's finish before answering.
func hostileUpstream() *httptest.Server {
	sim := simulate.NewServer(simulate.ServerConfig{})
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			_, _ = sim.WriteTo(w)
			return
		}
		id, _ := json.Marshal(r.URL.Query().Get("id"))
		sim.ObserveFirstToken(simulate.DefaultModel, 0, 0.1)
		if r.URL.Query().Get("stream") == "1" {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte(`data: {"id":` + string(id) + `,"choices":[]}` + "\n\n"))
			http.NewResponseController(w).Flush()
			sim.ObserveFinish(simulate.DefaultModel, 0, simulate.Finish{E2E: 0.2})
			_, _ = w.Write([]byte("data: [DONE]\n\n"))
			return
		}
		sim.ObserveFinish(simulate.DefaultModel, 0, simulate.Finish{E2E: 0.2})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":` + string(id) + `,"object":"chat.completion","choices":[]}`))
	}))
}

// TestHostileIDs: whatever id the upstream returns, every file lands in
// the snapshot directory under a name that parses back to the sanitised
// id, and the info keeps the original.
func TestHostileIDs(t *testing.T) {
	h := startProxy(t, hostileUpstream(), nil)
	h.waitReady()
	ids := []string{
		"../../../../tmp/escaped", "/etc/passwd", "a/../../b", `..\..\windows`, "..", ".", ".hidden",
		"nul\x00byte", "chatcmpl-\x00/../x", strings.Repeat("A", 10000), strings.Repeat("../", 500),
		"%2e%2e%2f", "ünïcødé/ß", "new\nline", "chatcmpl-x_before_20260101_000000_000000",
	}
	for _, stream := range []string{"0", "1"} {
		for _, id := range ids {
			r := h.post("/v1/chat/completions?stream="+stream+"&id="+url.QueryEscape(id), `{}`, nil)
			if r.status != 200 || r.id != id {
				t.Fatalf("id %q: status %d, client got id %q", id, r.status, r.id)
			}
			h.p.Wait()
		}
	}
	// Nothing beside the snapshot directory (t.TempDir's parent holds only it).
	ents, err := os.ReadDir(filepath.Dir(h.dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != filepath.Base(h.dir) {
		t.Fatalf("files beside the snapshot directory: %v", ents)
	}
	d := h.files()
	if len(d.other) != 0 {
		t.Errorf("unparsable names: %q", d.other)
	}
	for _, id := range ids {
		// Each id was given twice: the second request's names carry a
		// suffix (TestSameRequestIDTwice).
		sid := SanitizeID(id)
		var second string
		for name := range d.byID {
			if strings.HasPrefix(name, sid+"+") && len(name) == len(sid)+idSuffixLen {
				second = name
			}
		}
		for _, nid := range []string{sid, second} {
			files := d.byID[nid]
			if len(files[parser.Before]) != 1 || len(files[parser.After]) != 1 || len(files[parser.Info]) != 1 {
				t.Errorf("id %q (%q): files %v", id, nid, files)
				continue
			}
			name := files[parser.Info][0]
			if len(name) > 255 {
				t.Errorf("name of %d bytes", len(name))
			}
			info := h.info(name)
			want := id
			if len(want) > 1024 {
				want = want[:1024]
			}
			if info.RequestID != nid || (nid != id && info.UpstreamID != want) || !info.AfterObserved ||
				(nid == second && info.ServerID != sid) {
				t.Errorf("id %q: info request_id %q upstream_id %q server_id %q observed %v", id, info.RequestID, info.UpstreamID, info.ServerID, info.AfterObserved)
			}
		}
	}
	if n := h.counter("delta_exporter_capture_request_ids_sanitized_total"); n < 2*float64(len(ids)-1) {
		t.Errorf("sanitized ids counted %v", n)
	}
}

// TestHostileRequestIDHeader: through the fake, which builds the id from
// X-Request-Id as vLLM does.
func TestHostileRequestIDHeader(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{}, nil)
	h.waitReady()
	for _, hdr := range []string{"../../x", "/", strings.Repeat("z", 8000)} {
		r := h.chat(true, 2, http.Header{"X-Request-Id": {hdr}})
		if r.id != "chatcmpl-"+hdr {
			t.Fatalf("id %q", r.id)
		}
		h.p.Wait()
		d := h.files()
		d.one(t, SanitizeID(r.id), parser.After)
		d.one(t, SanitizeID(r.id), parser.First)
	}
}

// TestSameRequestIDTwice: two clients send the same X-Request-Id at once
// (the server then gives both requests the same id). Each request gets
// file names of its own, so the exporter measures both instead of
// rejecting both as duplicates: one client cannot cancel another's
// measurement. The second request's names carry a suffix; its info keeps
// the server's id, and the exporter publishes that id.
func TestSameRequestIDTwice(t *testing.T) {
	h := newHarness(t, fakeupstream.Config{Plan: func(*fakeupstream.Request) fakeupstream.Plan {
		return fakeupstream.Plan{Prefill: 5 * time.Millisecond, Decode: 60 * time.Millisecond, GenerationTokens: 3}
	}}, nil)
	h.waitReady()
	const serverID = "chatcmpl-someone-elses-id"
	hdr := http.Header{"X-Request-Id": {"someone-elses-id"}}
	var wg sync.WaitGroup
	for _, stream := range []bool{true, false, true} {
		wg.Go(func() {
			if r := h.chat(stream, 3, hdr); r.status != 200 || r.id != serverID {
				t.Errorf("status %d id %q", r.status, r.id)
			}
		})
	}
	wg.Wait()
	h.p.Wait()
	// A later request with the same id, once the others are written.
	h.chat(false, 3, hdr)
	h.p.Wait()
	d := h.files()
	if len(d.byID) != 4 {
		t.Fatalf("file names for %d ids, want 4 (one per request): %v", len(d.byID), d.byID)
	}
	bare := 0
	for id := range d.byID {
		info := h.info(d.one(t, id, parser.Info))
		d.one(t, id, parser.Before)
		d.one(t, id, parser.After)
		if info.RequestID != id {
			t.Errorf("%s: info request_id %q", id, info.RequestID)
		}
		if id == serverID {
			bare++
			if info.ServerID != "" || info.UpstreamID != "" {
				t.Errorf("%s: server_id %q upstream_id %q", id, info.ServerID, info.UpstreamID)
			}
			continue
		}
		if !strings.HasPrefix(id, serverID+"+") || len(id) != len(serverID)+idSuffixLen ||
			info.ServerID != serverID || info.UpstreamID != serverID {
			t.Errorf("%s: server_id %q upstream_id %q", id, info.ServerID, info.UpstreamID)
		}
	}
	if bare != 1 {
		t.Errorf("%d requests named by the server's id alone, want 1", bare)
	}
	if n := h.counter("delta_exporter_capture_request_ids_reused_total"); n != 3 {
		t.Errorf("reused ids counted %v, want 3", n)
	}
	if n := h.counter("delta_exporter_capture_request_ids_sanitized_total"); n != 0 {
		t.Errorf("sanitized ids counted %v", n)
	}
	res := h.attribute()
	if len(res.Results) != 4 {
		t.Fatalf("%d results, want 4: %+v", len(res.Results), res.Results)
	}
	for _, r := range res.Results {
		if r.Outcome == attribution.Rejected || r.Outcome == attribution.Unpaired || r.RequestID != serverID {
			t.Errorf("published %s as %s (%s), want the server's id, not rejected", r.RequestID, r.Outcome, r.RejectReason)
		}
	}
}
