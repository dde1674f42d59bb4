// Package browser drives Debian's headless Chromium for the tests of the
// pictures (the /requests page, `report --format=html`): it loads a page,
// returns the DOM as rendered, and takes screenshots. Tests only.
//
// A page is measured by a script the test appends to it (Measure): it
// writes each element's rendered box into data-px-* attributes, which
// --dump-dom then shows, so a test asserts on the layout the browser
// computed, not on the HTML it was sent.
package browser

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// Find returns Chromium's path. Without it the test is skipped, except in
// CI, where .ci/run installs it and its absence is a failure.
func Find(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.Missing(t, "chromium not found (apt-get install chromium)")
	return ""
}

// run runs Chromium headless on url with extra flags and a fresh profile.
func run(t testing.TB, chromium, url string, width, height int, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--user-data-dir=" + t.TempDir(),
		"--window-size=" + strconv.Itoa(width) + "," + strconv.Itoa(height)}
	args = append(append(args, extra...), url)
	cmd := exec.CommandContext(ctx, chromium, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("chromium %s: %v\n%s", url, err, stderr)
	}
	return out
}

// DumpDOM loads url in a window of the given size and returns the DOM as
// serialised after the load event.
func DumpDOM(t testing.TB, chromium, url string, width, height int) []byte {
	t.Helper()
	return run(t, chromium, url, width, height, "--dump-dom")
}

// Screenshot saves a PNG of url's first screen to path. When the
// environment variable DELTA_SCREENSHOTS names a directory, a copy is
// kept there too (t's temporary directory is removed after the test).
func Screenshot(t testing.TB, chromium, url, path string, width, height int) {
	t.Helper()
	run(t, chromium, url, width, height, "--screenshot="+path)
	st, err := os.Stat(path)
	if err != nil || st.Size() < 1000 {
		t.Fatalf("screenshot %s: %v (%v)", path, err, st)
	}
	t.Logf("screenshot: %s", path)
	if keep := os.Getenv("DELTA_SCREENSHOTS"); keep != "" {
		b, _ := os.ReadFile(path)
		if err := os.WriteFile(filepath.Join(keep, filepath.Base(path)), b, 0o644); err != nil {
			t.Error(err)
		}
	}
}

// Measure is a script for the end of a page's body: it records, for each
// element matching the selector, its rendered left offset within its
// parent, its width and height (data-px-left, data-px-width,
// data-px-height), each table row's height (data-px-height), and on <body> the document's and the window's
// widths (data-scroll-width, data-inner-width).
const Measure = `<script id="measure">
(function () {
  document.querySelectorAll(".bar, .track, .bar > div, .track > div, .bins, .bins > div, td").forEach(function (e) {
    var r = e.getBoundingClientRect(), p = e.parentElement.getBoundingClientRect();
    e.setAttribute("data-px-left", (r.left - p.left).toFixed(2));
    e.setAttribute("data-px-width", r.width.toFixed(2));
    e.setAttribute("data-px-height", r.height.toFixed(2));
  });
  document.querySelectorAll("tr").forEach(function (e) {
    e.setAttribute("data-px-height", e.getBoundingClientRect().height.toFixed(2));
  });
  document.body.setAttribute("data-scroll-width", document.documentElement.scrollWidth);
  document.body.setAttribute("data-inner-width", window.innerWidth);
})();
</script>`

// Parse parses a dumped DOM.
func Parse(t testing.TB, b []byte) *html.Node {
	t.Helper()
	n, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// All returns the element nodes under n (n included) for which keep
// holds, in document order.
func All(n *html.Node, keep func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && keep(d) {
			out = append(out, d)
		}
	}
	return out
}

// Attr is n's attribute key, "" when it has none.
func Attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// Float is n's attribute key as a number; the test fails when it is not one.
func Float(t testing.TB, n *html.Node, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(Attr(n, key), 64)
	if err != nil {
		t.Fatalf("<%s class=%q> %s: %v", n.Data, Attr(n, "class"), key, err)
	}
	return v
}

// HasClass reports whether n's class attribute holds c.
func HasClass(n *html.Node, c string) bool {
	return slices.Contains(strings.Fields(Attr(n, "class")), c)
}

// Text is the text content of n.
func Text(n *html.Node) string {
	var b strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			b.WriteString(d.Data)
		}
	}
	return b.String()
}
