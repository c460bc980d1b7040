package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/migrated/migrated/internal/testenv"
	"gopkg.in/yaml.v3"
)

// alertsFile is the rule file shipped for operators; the test loads that very file, so a rule
// Prometheus refuses or cannot evaluate fails here rather than in someone's monitoring.
const alertsFile = "../../deploy/prometheus/alerts.yaml"

// TestPrometheusScrapesMigrated runs a real Prometheus against a streaming daemon: it scrapes
// /metrics, answers queries for the phase and lag series, and loads and evaluates every alert
// rule of deploy/prometheus/alerts.yaml.
func TestPrometheusScrapesMigrated(t *testing.T) {
	bin := prometheusBinary(t)
	e := newEnv(t, "prom")
	seed(t, e.src, 500)
	d := e.start()
	e.waitStreaming(d)

	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	prom := startPrometheus(t, bin, rules, e.listen)

	e.waitFor(d, `prometheus to see migrated_phase{phase="streaming"} == 1`, 60*time.Second, func() bool {
		s, err := prom.query(`migrated_phase{phase="streaming"}`)
		return err == nil && len(s) == 1 && s[0].value == "1"
	})
	for _, q := range []string{
		`migrated_replication_lag_seconds{direction="forward"}`,
		`migrated_replication_lag_bytes{direction="forward"}`,
	} {
		s, err := prom.query(q)
		if err != nil {
			t.Fatalf("query %s: %v", q, err)
		}
		if got, want := len(s), 1; got != want {
			t.Fatalf("query %s: got %d samples, want %d: %+v", q, got, want, s)
		}
		if _, err := strconv.ParseFloat(s[0].value, 64); err != nil {
			t.Errorf("query %s: value %q is not a number", q, s[0].value)
		}
		t.Logf("%s = %s", q, s[0].value)
	}
	s, err := prom.query(`up{job="migrated"}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 1 || s[0].value != "1" {
		t.Fatalf(`up{job="migrated"}: got %+v, want one sample of 1`, s)
	}

	// A rule's health is "unknown" until its first evaluation, so wait for every alert to
	// have been evaluated; "err" means its expression fails against real series.
	want := alertNames(t, rules)
	deadline := time.Now().Add(60 * time.Second)
	for {
		health, err := prom.alertHealth()
		var pending []string
		for _, name := range want {
			h, ok := health[name]
			if h.Health == "err" {
				t.Fatalf("alert %s: health err: %s", name, h.LastError)
			}
			if !ok {
				pending = append(pending, name+" (not loaded)")
			} else if h.Health != "ok" {
				pending = append(pending, fmt.Sprintf("%s (health %q)", name, h.Health))
			}
		}
		if err == nil && len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert rules not all loaded and evaluated after 60s (last error %v): %s", err, strings.Join(pending, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%d alert rules loaded and evaluated: %s", len(want), strings.Join(want, ", "))

	e.stop(d)
}

// prometheusBinary finds the prometheus server, skipping when it is not installed unless
// CI=true, where a missing binary is a broken CI image.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	const p = "/usr/bin/prometheus"
	if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("prometheus is not installed (install the Debian package prometheus)")
	}
	t.Skip("skipping: prometheus is not installed (install the Debian package prometheus; with CI=true this fails)")
	return ""
}

// alertNames returns the names of the alert rules in a Prometheus rule file, sorted.
func alertNames(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	var names []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				names = append(names, r.Alert)
			}
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s has no alert rules", path)
	}
	sort.Strings(names)
	return names
}

// promServer is a running Prometheus whose HTTP API the test queries.
type promServer struct {
	base string // http://127.0.0.1:port
	log  string // path of its output
}

// startPrometheus starts Prometheus scraping target every second with the rules of
// ruleFile, waits until it is ready and stops it when the test ends.
func startPrometheus(t *testing.T, bin, ruleFile, target string) *promServer {
	t.Helper()
	dir := t.TempDir()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: migrated
    static_configs:
      - targets: [%q]
`, ruleFile, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &promServer{base: fmt.Sprintf("http://127.0.0.1:%d", port), log: filepath.Join(dir, "prometheus.log")}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port),
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The test binary may die without running its cleanups; Prometheus must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start prometheus: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.logTail())
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("prometheus exited before it was ready; log:\n%s", p.logTail())
		default:
		}
		if resp, err := http.Get(p.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 60s; log:\n%s", p.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *promServer) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// get decodes the data field of a successful API response into data.
func (p *promServer) get(path string, data any) error {
	resp, err := http.Get(p.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("GET %s: decode: %w", path, err)
	}
	if body.Status != "success" {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body.Error)
	}
	return json.Unmarshal(body.Data, data)
}

// promSample is one element of an instant vector.
type promSample struct {
	labels map[string]string
	value  string
}

// query runs an instant query and returns its vector.
func (p *promServer) query(q string) ([]promSample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.get("/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result type %q, want vector", q, data.ResultType)
	}
	var out []promSample
	for _, r := range data.Result {
		v, _ := r.Value[1].(string)
		out = append(out, promSample{labels: r.Metric, value: v})
	}
	return out, nil
}

// ruleHealth is what /api/v1/rules says of one rule.
type ruleHealth struct {
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// alertHealth returns the loaded alert rules by name.
func (p *promServer) alertHealth() (map[string]ruleHealth, error) {
	var data struct {
		Groups []struct {
			Rules []struct {
				Name string `json:"name"`
				Type string `json:"type"`
				ruleHealth
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules?type=alert", &data); err != nil {
		return nil, err
	}
	out := map[string]ruleHealth{}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			if r.Type == "alerting" {
				out[r.Name] = r.ruleHealth
			}
		}
	}
	return out, nil
}
