package metrics

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
)

// The deploy files live outside any Go package, so their consistency with the metrics is
// checked here, next to the names they depend on.
const (
	alertsPath    = "../../deploy/prometheus/alerts.yaml"
	dashboardPath = "../../deploy/grafana/migrated.json"
)

// metricNameRE finds migrated_ identifiers in PromQL; the leading class keeps it from matching
// inside a longer identifier.
var metricNameRE = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:])(migrated_[a-zA-Z0-9_:]*)`)

func queriedMetrics(exprs []string) []string {
	var names []string
	for _, e := range exprs {
		for _, m := range metricNameRE.FindAllStringSubmatch(e, -1) {
			if !slices.Contains(names, m[1]) {
				names = append(names, m[1])
			}
		}
	}
	slices.Sort(names)
	return names
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readAlerts(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("parse %s: %v", alertsPath, err)
	}
	return f
}

type dashboardPanel struct {
	Title   string           `json:"title"`
	Type    string           `json:"type"`
	Panels  []dashboardPanel `json:"panels"` // a collapsed row's panels
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

type dashboard struct {
	Title      string           `json:"title"`
	Panels     []dashboardPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"` // a string, or {"query": "..."} in newer Grafana
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("parse %s: %v", dashboardPath, err)
	}
	return d
}

func (d dashboard) panels() []dashboardPanel {
	var all []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return all
}

func (d dashboard) exprs(t *testing.T) []string {
	t.Helper()
	var exprs []string
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var s string
		if err := json.Unmarshal(v.Query, &s); err != nil {
			var q struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &q); err != nil {
				t.Fatalf("template variable %s: query is neither a string nor an object: %v", v.Name, err)
			}
			s = q.Query
		}
		exprs = append(exprs, s)
	}
	return exprs
}

// exportedFamilies gathers a fresh Metrics, with one child in every vector so that each family
// is exported, and returns the type name of each family by name.
func exportedFamilies(t *testing.T) map[string]string {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.LagSeconds.WithLabelValues("forward")
	m.LagBytes.WithLabelValues("forward")
	m.SnapshotRowsCopied.WithLabelValues("public.t")
	m.SnapshotRowsEstimated.WithLabelValues("public.t")
	m.ChangesReceived.WithLabelValues("forward")
	m.ChangesApplied.WithLabelValues("forward", "insert")
	m.TransactionsApplied.WithLabelValues("forward")
	m.StreamConnected.WithLabelValues("forward")
	m.StreamReconnects.WithLabelValues("forward")
	m.LastApplyTimestamp.WithLabelValues("forward")
	m.Errors.WithLabelValues("apply")
	m.CutoverPhaseDuration.WithLabelValues("drain")

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(mfs), len(m.collectors()); got != want {
		t.Fatalf("gathered %d families from %d collectors; give every new vector a child in exportedFamilies", got, want)
	}
	families := make(map[string]string, len(mfs))
	for _, mf := range mfs {
		families[mf.GetName()] = mf.GetType().String()
	}
	return families
}

// isExported reports whether name is a family, or a histogram's _bucket, _sum or _count series,
// which gather under the histogram's base name.
func isExported(families map[string]string, name string) bool {
	if _, ok := families[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		// The type's name, not the client_model constant, so that this test adds no direct
		// dependency to go.mod.
		switch families[base] {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			return true
		case "SUMMARY":
			return suffix != "_bucket"
		}
	}
	return false
}

func TestDeployQueriesExportedMetrics(t *testing.T) {
	families := exportedFamilies(t)

	var alertExprs []string
	for _, g := range readAlerts(t).Groups {
		for _, r := range g.Rules {
			alertExprs = append(alertExprs, r.Expr)
		}
	}
	files := []struct {
		path  string
		exprs []string
	}{
		{alertsPath, alertExprs},
		{dashboardPath, readDashboard(t).exprs(t)},
	}
	for _, f := range files {
		t.Run(f.path, func(t *testing.T) {
			names := queriedMetrics(f.exprs)
			if len(names) == 0 {
				t.Fatalf("no migrated_ metric found in the queries of %s", f.path)
			}
			for _, name := range names {
				if !isExported(families, name) {
					t.Errorf("%s queries %s, which migrated does not export", f.path, name)
				}
			}
		})
	}
}

func TestQueriedMetrics(t *testing.T) {
	got := queriedMetrics([]string{
		`rate(migrated_errors_total{component="apply"}[5m]) > 0 and notmigrated_x`,
		`histogram_quantile(0.99, sum by (le) (rate(migrated_apply_batch_duration_seconds_bucket[1m])))`,
		`time() - migrated_verify_last_run_timestamp_seconds`,
	})
	want := []string{"migrated_apply_batch_duration_seconds_bucket", "migrated_errors_total", "migrated_verify_last_run_timestamp_seconds"}
	if !slices.Equal(got, want) {
		t.Errorf("queriedMetrics = %q, want %q", got, want)
	}
	families := exportedFamilies(t)
	for name, want := range map[string]bool{
		"migrated_apply_batch_duration_seconds_bucket": true,
		"migrated_apply_batch_duration_seconds_count":  true,
		"migrated_apply_batch_duration_seconds":        true,
		"migrated_errors_total":                        true,
		"migrated_phase_count":                         false, // a gauge has no _count series
		"migrated_no_such_metric":                      false,
	} {
		if got := isExported(families, name); got != want {
			t.Errorf("isExported(%s) = %v, want %v", name, got, want)
		}
	}
}

func TestAlertRules(t *testing.T) {
	f := readAlerts(t)
	var alerts []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			if !slices.Contains([]string{"info", "warning", "critical"}, r.Labels["severity"]) {
				t.Errorf("alert %s: severity label %q, want info, warning or critical", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no summary annotation", r.Alert)
			}
			if d := r.Annotations["description"]; !strings.Contains(d, "docs/troubleshooting.md") && !strings.Contains(d, "docs/cutover.md") {
				t.Errorf("alert %s: the description does not point the operator at docs/troubleshooting.md or docs/cutover.md", r.Alert)
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("%s has no alerts", alertsPath)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		// As testenv.SkipOrFail: a missing tool skips locally but fails in CI.
		if os.Getenv("CI") != "true" {
			t.Skipf("skipping promtool check rules: %v (install prometheus; with CI=true this fails)", err)
		}
		t.Fatalf("promtool check rules: %v; install the prometheus package in CI", err)
	}
	out, err := exec.Command(promtool, "check", "rules", alertsPath).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertsPath, err, out)
	}
}

func TestDashboardPanels(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" {
		t.Error("the dashboard has no title")
	}
	var titles []string
	for _, p := range d.panels() {
		titles = append(titles, p.Title)
	}
	for _, want := range []string{
		"Phase timeline",
		"Replication lag (seconds)",
		"Replication lag (bytes)",
		"Changes per second received vs applied",
		"Snapshot progress per table",
		"Cutover phase durations",
		"Write-unavailable seconds",
		"Verify mismatched chunks",
		"Verify chunks",
		"Verify last run age",
		"Source slot retention",
	} {
		if !slices.Contains(titles, want) {
			t.Errorf("the dashboard has no panel titled %q (panels: %q)", want, titles)
		}
	}
	for _, p := range d.panels() {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
}

// TestPrometheusRuleInSync checks that the Kubernetes PrometheusRule carries exactly the groups
// of deploy/prometheus/alerts.yaml, which deploy/kubernetes/prometheusrule.sh copies into it.
func TestPrometheusRuleInSync(t *testing.T) {
	read := func(path string) any {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := yaml.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return v
	}
	rules, _ := read("../../deploy/prometheus/alerts.yaml").(map[string]any)
	wrapped, _ := read("../../deploy/kubernetes/prometheusrule.yaml").(map[string]any)
	spec, _ := wrapped["spec"].(map[string]any)
	a, _ := json.Marshal(rules["groups"])
	b, _ := json.Marshal(spec["groups"])
	if rules["groups"] == nil || string(a) != string(b) {
		t.Fatal("deploy/kubernetes/prometheusrule.yaml is out of date: run deploy/kubernetes/prometheusrule.sh and commit both files")
	}
}
