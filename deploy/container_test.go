package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/delta-exporter/delta-exporter/internal/testutil"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case
	args string
	line int
}

func parseDockerfile(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// stage is one FROM ... [AS name] and its instructions.
type stage struct {
	image, name string
	body        []instruction
}

func stages(t *testing.T, ins []instruction) []stage {
	t.Helper()
	var out []stage
	for _, in := range ins {
		if in.cmd == "FROM" {
			var fields []string
			for _, f := range strings.Fields(in.args) {
				if !strings.HasPrefix(f, "--") {
					fields = append(fields, f)
				}
			}
			s := stage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				s.name = fields[2]
			}
			out = append(out, s)
			continue
		}
		if len(out) == 0 {
			if in.cmd != "ARG" {
				t.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
			}
			continue
		}
		out[len(out)-1].body = append(out[len(out)-1].body, in)
	}
	return out
}

// pinned reports whether an image reference names a fixed version: a
// digest, or a tag other than latest with a version number in the tag or
// the repository name (distroless puts the Debian release in the name:
// static-debian12:nonroot).
func pinned(ref string) bool {
	if strings.Contains(ref, "@sha256:") {
		return true
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return false // no tag: latest
	}
	repo, tag := ref[:i], ref[i+1:]
	if tag == "latest" || strings.Contains(tag, "$") {
		return false
	}
	digit := regexp.MustCompile(`[0-9]`)
	return digit.MatchString(tag) || digit.MatchString(path.Base(repo))
}

func goDirective(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// TestDockerfile lints what issue 5 asks of the image: multi-stage, pinned
// base images, a static build with version ldflags, distroless nonroot,
// the binary as entrypoint, the ports exposed.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t)
	st := stages(t, ins)
	if len(st) < 2 {
		t.Fatalf("%d stages: want a build stage and a runtime stage", len(st))
	}
	names := map[string]bool{}
	for _, s := range st {
		if !names[s.image] && !pinned(s.image) {
			t.Errorf("FROM %s: base image not pinned by version", s.image)
		}
		if s.name != "" {
			names[s.name] = true
		}
	}

	build := st[0]
	if want := "golang:" + goDirective(t) + "-"; !strings.HasPrefix(build.image, want) && build.image != strings.TrimSuffix(want, "-") {
		t.Errorf("build stage FROM %s: want %s… to match go.mod's go directive", build.image, want)
	}
	var goBuild string
	for _, in := range build.body {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			goBuild = in.args
		}
	}
	switch {
	case goBuild == "":
		t.Fatal("build stage: no RUN go build")
	case !strings.Contains(goBuild, "CGO_ENABLED=0"):
		t.Error("go build without CGO_ENABLED=0: the binary would not be static")
	case !strings.Contains(goBuild, "./cmd/delta-exporter"):
		t.Error("go build does not build ./cmd/delta-exporter")
	case !strings.Contains(goBuild, "-X github.com/prometheus/common/version.Version="):
		t.Error("go build sets no version through -ldflags -X github.com/prometheus/common/version.Version")
	}

	final := st[len(st)-1]
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") || !strings.Contains(final.image, ":nonroot") {
		t.Errorf("runtime stage FROM %s: want gcr.io/distroless/static…:nonroot", final.image)
	}
	var copied, user, entrypoint string
	var exposed []string
	var cmdArgs []string
	for _, in := range final.body {
		switch in.cmd {
		case "COPY":
			if f := strings.Fields(in.args); strings.HasPrefix(in.args, "--from=") && len(f) == 3 {
				copied = f[2]
			}
		case "USER":
			user = in.args
		case "EXPOSE":
			exposed = append(exposed, strings.Fields(in.args)...)
		case "ENTRYPOINT":
			entrypoint = in.args
		case "CMD":
			if err := json.Unmarshal([]byte(in.args), &cmdArgs); err != nil {
				t.Errorf("CMD %s: want the exec (JSON) form: %v", in.args, err)
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("runtime stage USER %q: want a non-root user", user)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) != 1 || copied == "" || ep[0] != copied {
		t.Errorf("ENTRYPOINT %s: want [%q], the binary copied from the build stage", entrypoint, copied)
	}
	for _, port := range []string{"9464", "11434"} {
		if !slices.Contains(exposed, port) {
			t.Errorf("EXPOSE %v: want %s", exposed, port)
		}
	}
	// The default command must be one the binary accepts.
	checkFlagsExist(t, exporterBinary(t), cmdArgs)
}

// TestDockerfileLdflags builds the binary with the Dockerfile's -ldflags,
// build arguments filled in, and requires --version to show them.
func TestDockerfileLdflags(t *testing.T) {
	skipStaticBuildInShort(t)
	var goBuild string
	for _, in := range parseDockerfile(t) {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			goBuild = in.args
		}
	}
	m := regexp.MustCompile(`-ldflags="([^"]*)"`).FindStringSubmatch(goBuild)
	if m == nil {
		t.Fatalf("no -ldflags=\"…\" in %q", goBuild)
	}
	args := map[string]string{
		"VERSION": "9.8.7-test", "REVISION": "0123abcd", "BRANCH": "test-branch",
		"BUILD_USER": "tester", "BUILD_DATE": "20260101-00:00:00",
	}
	ldflags := os.Expand(m[1], func(k string) string {
		v, ok := args[k]
		if !ok {
			t.Errorf("-ldflags uses ${%s}, which this test does not know", k)
		}
		return v
	})
	build := &testutil.Exporter{Ldflags: ldflags, Static: true}
	t.Cleanup(build.Remove)
	bin := build.Path(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		// The exit status is main's business; this test is about -ldflags.
		t.Logf("%s --version: %v", bin, err)
	}
	for k, v := range args {
		if !strings.Contains(string(out), v) {
			t.Errorf("--version does not show %s=%s:\n%s", k, v, out)
		}
	}
}

// dockerignore is the exclusion list of .dockerignore, in the subset of
// its syntax the file uses: path patterns, **/ prefixes, ! exceptions.
type dockerignore []string

func (d dockerignore) excluded(rel string) bool {
	out := false
	for _, p := range d {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if matchIgnore(p, rel) {
			out = !neg
		}
	}
	return out
}

// matchIgnore reports whether rel or one of its parent directories
// matches pattern.
func matchIgnore(pattern, rel string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, prefix); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			for j := 0; j < i; j++ {
				if ok, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}

// TestDockerignore requires every file the build of ./cmd/delta-exporter
// reads (go.mod, go.sum, Go files and embedded files of the module's
// packages) to stay in the build context, and .git to leave it.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var d dockerignore
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		d = append(d, path.Clean(strings.TrimPrefix(line, "/")))
	}
	if !d.excluded(".git") || !d.excluded(".git/config") {
		t.Error(".dockerignore does not exclude .git")
	}

	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goCmd, "list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}{{end}}`,
		"./cmd/delta-exporter")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./cmd/delta-exporter: %v", err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dir, err := filepath.Rel(root, f[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range f[1:] {
			needed = append(needed, filepath.ToSlash(filepath.Join(dir, file)))
		}
	}
	if len(needed) < 3 {
		t.Fatalf("go list found no files for ./cmd/delta-exporter: %q", out)
	}
	for _, f := range needed {
		if d.excluded(f) {
			t.Errorf(".dockerignore excludes %s, which the build needs", f)
		}
	}
	t.Logf("%d files needed by the build are in the context", len(needed))
}
