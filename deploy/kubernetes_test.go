package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const prometheusRulePath = "kubernetes/prometheusrule.yaml"

const prometheusRuleHeader = `# Generated from deploy/prometheus/rules.yml and slo-rules.yml: do not edit.
# Edit those files and run
#   go test ./deploy -run TestPrometheusRuleInSync -update
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: delta-exporter
  labels:
    app.kubernetes.io/name: delta-exporter
    # Add the labels your Prometheus CR's ruleSelector asks for, e.g.
    # release: kube-prometheus-stack.
spec:
`

// prometheusRule renders rule files as the spec of one PrometheusRule:
// the same text, indented, comments included; the groups of every file
// after the first continue the first one's list.
func prometheusRule(files ...[]byte) []byte {
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for i, rules := range files {
		for _, line := range strings.SplitAfter(string(rules), "\n") {
			switch {
			case i > 0 && strings.TrimSpace(line) == "groups:":
				continue
			case strings.TrimSpace(line) != "":
				b.WriteString("  ")
			}
			b.WriteString(line)
		}
	}
	return b.Bytes()
}

// ruleFiles are the rule files the shipped configuration loads, in order.
var ruleFiles = []string{rulesPath, sloRulesPath}

// TestPrometheusRuleInSync keeps the Kubernetes PrometheusRule generated
// from rules.yml, so the two cannot drift; -update rewrites it.
func TestPrometheusRuleInSync(t *testing.T) {
	var files [][]byte
	var groups []any
	for _, path := range ruleFiles {
		rules, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rules)
		var file struct {
			Groups []any `yaml:"groups"`
		}
		if err := yaml.Unmarshal(rules, &file); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		groups = append(groups, file.Groups...)
	}
	want := prometheusRule(files...)
	if *update {
		if err := os.WriteFile(prometheusRulePath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(prometheusRulePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not generated from %v; run: go test ./deploy -run TestPrometheusRuleInSync -update", prometheusRulePath, ruleFiles)
	}

	// The generated text must also mean the same groups.
	var pr struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Groups []any `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(got, &pr); err != nil {
		t.Fatalf("%s: %v", prometheusRulePath, err)
	}
	if pr.Kind != "PrometheusRule" || !reflect.DeepEqual(pr.Spec.Groups, groups) {
		t.Errorf("%s: spec.groups differ from the groups of %v", prometheusRulePath, ruleFiles)
	}
}

// Kubernetes objects, the fields the tests read.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec      yaml.Node `yaml:"spec"`
	Resources []string  `yaml:"resources"` // Kustomization
	file      string
}

type deploymentSpec struct {
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Containers []container `yaml:"containers"`
			Volumes    []struct {
				Name     string `yaml:"name"`
				EmptyDir *struct {
					SizeLimit string `yaml:"sizeLimit"`
				} `yaml:"emptyDir"`
			} `yaml:"volumes"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	TCPSocket *struct {
		Port string `yaml:"port"`
	} `yaml:"tcpSocket"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
	} `yaml:"resources"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	SecurityContext *struct {
		RunAsNonRoot           *bool `yaml:"runAsNonRoot"`
		ReadOnlyRootFilesystem bool  `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
}

func (c *container) port(name string) int {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

func (c *container) mount(volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

// flagValues returns the --name=value arguments of args.
func flagValues(args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			k, v, _ := strings.Cut(name, "=")
			out[k] = v
		}
	}
	return out
}

func loadManifests(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var out []k8sObject
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			if err := dec.Decode(&o); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.APIVersion == "" {
				t.Errorf("%s: a document without kind or apiVersion", f)
			}
			o.file = filepath.Base(f)
			out = append(out, o)
		}
	}
	return out
}

func subset(sub, super map[string]string) bool {
	if len(sub) == 0 {
		return false
	}
	for k, v := range sub {
		if super[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesManifests(t *testing.T) {
	objs := loadManifests(t)
	byKind := map[string]*k8sObject{}
	for i := range objs {
		if prev, dup := byKind[objs[i].Kind]; dup {
			t.Errorf("two %s objects (%s and %s)", objs[i].Kind, prev.file, objs[i].file)
		}
		byKind[objs[i].Kind] = &objs[i]
	}
	for _, kind := range []string{"Deployment", "Service", "PodMonitor", "PrometheusRule", "Kustomization"} {
		if byKind[kind] == nil {
			t.Fatalf("no %s in kubernetes/", kind)
		}
	}

	// The kustomization lists every other file.
	var files []string
	for _, o := range objs {
		if o.Kind != "Kustomization" {
			files = append(files, o.file)
		}
	}
	sort.Strings(files)
	files = slices.Compact(files)
	res := append([]string(nil), byKind["Kustomization"].Resources...)
	sort.Strings(res)
	if !reflect.DeepEqual(res, files) {
		t.Errorf("kustomization resources %v, want %v", res, files)
	}

	var dep deploymentSpec
	if err := byKind["Deployment"].Spec.Decode(&dep); err != nil {
		t.Fatal(err)
	}
	podLabels := dep.Template.Metadata.Labels
	if !subset(dep.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment selector %v does not select its pods %v", dep.Selector.MatchLabels, podLabels)
	}
	cs := map[string]*container{}
	for i := range dep.Template.Spec.Containers {
		c := &dep.Template.Spec.Containers[i]
		cs[c.Name] = c
		for _, r := range []string{"cpu", "memory"} {
			if dep.Template.Spec.Containers[i].Resources.Requests[r] == "" {
				t.Errorf("container %s: no %s request", c.Name, r)
			}
		}
	}
	vllm, capture, exporter := cs["vllm"], cs["capture"], cs["exporter"]
	if vllm == nil || capture == nil || exporter == nil {
		t.Fatalf("want containers vllm, capture and exporter, got %v", slices.Sorted(maps.Keys(cs)))
	}

	// The snapshot volume: an emptyDir both sidecars mount at one path.
	isEmptyDir := false
	for _, v := range dep.Template.Spec.Volumes {
		isEmptyDir = isEmptyDir || (v.Name == "snapshots" && v.EmptyDir != nil && v.EmptyDir.SizeLimit != "")
	}
	if !isEmptyDir {
		t.Error("want a volume snapshots: emptyDir with a sizeLimit")
	}
	dir := capture.mount("snapshots")
	if dir == "" || exporter.mount("snapshots") != dir {
		t.Errorf("capture mounts snapshots at %q, exporter at %q: want the same path", dir, exporter.mount("snapshots"))
	}
	if vllm.mount("snapshots") != "" {
		t.Error("vllm does not need the snapshot volume")
	}

	// capture proxies to vLLM over localhost and writes into the volume.
	if len(capture.Args) == 0 || capture.Args[0] != "capture" {
		t.Errorf("capture args %v: want the capture subcommand first", capture.Args)
	}
	cf := flagValues(capture.Args)
	if want := fmt.Sprintf("http://127.0.0.1:%d", vllm.port("vllm")); cf["upstream.url"] != want {
		t.Errorf("capture --upstream.url=%q, want %q (vLLM's port)", cf["upstream.url"], want)
	}
	if want := fmt.Sprintf(":%d", capture.port("http")); cf["web.listen-address"] != want {
		t.Errorf("capture --web.listen-address=%q, want %q (its port named http)", cf["web.listen-address"], want)
	}
	if cf["snapshots.dir"] != dir {
		t.Errorf("capture --snapshots.dir=%q, want the volume at %q", cf["snapshots.dir"], dir)
	}

	// exporter reads the volume and serves /metrics on its port.
	if len(exporter.Args) == 0 || exporter.Args[0] != "serve" {
		t.Errorf("exporter args %v: want the serve subcommand first", exporter.Args)
	}
	ef := flagValues(exporter.Args)
	if ef["snapshots.dir"] != dir {
		t.Errorf("exporter --snapshots.dir=%q, want %q", ef["snapshots.dir"], dir)
	}
	if want := fmt.Sprintf(":%d", exporter.port("metrics")); ef["web.listen-address"] != want || exporter.port("metrics") == 0 {
		t.Errorf("exporter --web.listen-address=%q, want %q (its port named metrics)", ef["web.listen-address"], want)
	}
	if ef["snapshots.retention"] == "" {
		t.Error("exporter: no --snapshots.retention; the emptyDir would fill up")
	}
	// Retention by size must act before the kubelet evicts the pod for
	// exceeding the volume's sizeLimit.
	var sizeLimit string
	for _, v := range dep.Template.Spec.Volumes {
		if v.Name == "snapshots" && v.EmptyDir != nil {
			sizeLimit = v.EmptyDir.SizeLimit
		}
	}
	limit, err1 := parseBinarySize(sizeLimit)
	retained, err2 := parseBinarySize(ef["snapshots.retention-size"])
	if err1 != nil || err2 != nil || retained <= 0 || retained >= limit {
		t.Errorf("exporter --snapshots.retention-size=%q must be below the snapshot volume's sizeLimit %q (%v, %v)",
			ef["snapshots.retention-size"], sizeLimit, err1, err2)
	}
	// The state file goes to --data.dir (default: ./data); with a read-only
	// root it must be a mounted volume other than the snapshots.
	if dd := ef["data.dir"]; dd == "" || dd == dir || !mountedVolume(exporter, dd, dep) {
		t.Errorf("exporter --data.dir=%q: want the mount path of its own volume (the root filesystem is read-only)", dd)
	}
	for name, p := range map[string]*probe{"/-/ready": exporter.ReadinessProbe, "/-/healthy": exporter.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port != "metrics" {
			got := "none"
			if p != nil && p.HTTPGet != nil {
				got = p.HTTPGet.Path + " on port " + p.HTTPGet.Port
			}
			t.Errorf("exporter: want an HTTP probe of %s on port metrics, got %s", name, got)
		}
	}

	for _, c := range []*container{capture, exporter} {
		if c.Image != capture.Image {
			t.Errorf("capture and exporter run different images (%s, %s): they are one binary", capture.Image, c.Image)
		}
		if c.SecurityContext == nil || c.SecurityContext.RunAsNonRoot == nil || !*c.SecurityContext.RunAsNonRoot || !c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("container %s: want runAsNonRoot and readOnlyRootFilesystem", c.Name)
		}
	}
	for _, c := range []*container{vllm, capture, exporter} {
		if _, tag, ok := strings.Cut(c.Image, ":"); !ok || tag == "" || tag == "latest" {
			t.Errorf("container %s: image %q is not pinned to a version", c.Name, c.Image)
		}
	}

	// The Service sends clients to the capture proxy, and selects the pods.
	var svc struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	}
	if err := byKind["Service"].Spec.Decode(&svc); err != nil {
		t.Fatal(err)
	}
	if !subset(svc.Selector, podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Selector, podLabels)
	}
	toCapture := false
	for _, p := range svc.Ports {
		found := false
		for _, c := range cs {
			found = found || c.port(p.TargetPort) != 0
		}
		if !found {
			t.Errorf("Service port %s: targetPort %q is no named container port", p.Name, p.TargetPort)
		}
		if p.TargetPort == "vllm" {
			t.Errorf("Service port %s goes to vLLM directly: its requests would not be measured", p.Name)
		}
		toCapture = toCapture || capture.port(p.TargetPort) != 0
	}
	if !toCapture {
		t.Error("no Service port leads to the capture proxy")
	}

	// The PodMonitor scrapes the exporter, protobuf first.
	var pm struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		ScrapeProtocols []string `yaml:"scrapeProtocols"`
		Endpoints       []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"podMetricsEndpoints"`
	}
	if err := byKind["PodMonitor"].Spec.Decode(&pm); err != nil {
		t.Fatal(err)
	}
	if !subset(pm.Selector.MatchLabels, podLabels) {
		t.Errorf("PodMonitor selector %v does not select the pods %v", pm.Selector.MatchLabels, podLabels)
	}
	scrapesExporter := false
	for _, ep := range pm.Endpoints {
		scrapesExporter = scrapesExporter || (ep.Port == "metrics" && ep.Path == "/metrics")
	}
	if !scrapesExporter {
		t.Error("the PodMonitor does not scrape the exporter's port metrics at /metrics")
	}
	if len(pm.ScrapeProtocols) == 0 || pm.ScrapeProtocols[0] != "PrometheusProto" || !slices.Contains(pm.ScrapeProtocols, "OpenMetricsText1.0.0") {
		t.Errorf("PodMonitor scrapeProtocols %v: want PrometheusProto first (native histograms) and OpenMetricsText1.0.0 (exemplars)", pm.ScrapeProtocols)
	}

	// The flags the manifests pass exist in the binary.
	bin := exporterBinary(t)
	for _, c := range []*container{capture, exporter} {
		checkFlagsExist(t, bin, c.Args)
	}
}

// checkFlagsExist runs `bin help <subcommand>` and requires every --flag of
// args in its output.
func checkFlagsExist(t *testing.T, bin string, args []string) {
	t.Helper()
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		t.Errorf("args %v: want a subcommand first", args)
		return
	}
	sub := args[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "help", sub).CombinedOutput()
	if err != nil {
		t.Errorf("%s help %s: %v\n%s", bin, sub, err, out)
		return
	}
	for name := range flagValues(args) {
		if !regexp.MustCompile(`--` + regexp.QuoteMeta(name) + `(=|\s|$)`).Match(out) {
			t.Errorf("%s %s has no flag --%s:\n%s", filepath.Base(bin), sub, name, out)
		}
	}
}

// parseBinarySize reads the sizes the manifests use: a number with a
// Kubernetes (Ki, Mi, Gi) or kingpin (KiB, MiB, GiB) binary suffix.
func parseBinarySize(s string) (int64, error) {
	m := regexp.MustCompile(`^([0-9]+)(Ki|Mi|Gi|Ti)B?$`).FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: want <n>Ki|Mi|Gi|Ti[B]", s)
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, err
	}
	shift := map[string]uint{"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40}[m[2]]
	return n << shift, nil
}

// mountedVolume reports whether c mounts one of the pod's volumes at path.
func mountedVolume(c *container, path string, dep deploymentSpec) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath != path {
			continue
		}
		for _, v := range dep.Template.Spec.Volumes {
			if v.Name == m.Name {
				return true
			}
		}
	}
	return false
}
