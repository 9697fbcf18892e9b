// Package monitoring is the monitoring pack; its test checks the PrometheusRule
// with Prometheus' own rule checker and unit-test runner (promtool, built by
// hack/promtool.sh), the Grafana dashboard as JSON whose queries name only metrics
// Latchkey exports, and the kustomization as kubectl renders it.
package monitoring

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/latchkey-dev/latchkey/internal/testenv"
)

const dir = "."

// promtool returns the binary hack/promtool.sh built; the test fails (never skips)
// without it.
func promtool(t *testing.T) string {
	bin, err := testenv.BuiltTool("promtool", "PROMETHEUS_VERSION", "v0.315.0")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestAlertingRules(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(dir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil || rule.Kind != "PrometheusRule" || len(rule.Spec.Groups) == 0 {
		t.Fatalf("prometheusrule.yaml is not a PrometheusRule with groups: %v", err)
	}
	groups, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "rules.yaml"), groups, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(dir, "rules_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "rules_test.yaml"), tests, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := promtool(t)
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = work
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert the rule file defines is exercised by a test case.
	for _, alert := range regexp.MustCompile(`alert: (\w+)`).FindAllStringSubmatch(string(raw), -1) {
		if !strings.Contains(string(tests), "alertname: "+alert[1]) {
			t.Errorf("alert %s has no test case in rules_test.yaml", alert[1])
		}
	}
}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(dir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dashboard struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dashboard); err != nil {
		t.Fatalf("dashboard.json is not valid JSON: %v", err)
	}
	if dashboard.UID == "" || dashboard.Title == "" || len(dashboard.Panels) < 6 {
		t.Fatalf("dashboard: uid %q, title %q, %d panels", dashboard.UID, dashboard.Title, len(dashboard.Panels))
	}
	// The metrics the product exports (tokenserver/metrics.go, authz, controllers/metrics.go,
	// internal/index) and controller-runtime's: a typo would show an empty panel.
	known := regexp.MustCompile(`^(latchkey_(tokenserver_requests_total|tokenserver_request_duration_seconds_bucket|authz_decisions_total|` +
		`credential_ready|credential_withdrawn|credential_expiration_timestamp_seconds|credential_last_used_timestamp_seconds)|` +
		`controller_runtime_reconcile_total|controller_runtime_reconcile_errors_total)$`)
	metric := regexp.MustCompile(`\b(latchkey_[a-z_]+|controller_runtime_[a-z_]+)\b`)
	for _, p := range dashboard.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			for _, m := range metric.FindAllString(target.Expr, -1) {
				if !known.MatchString(m) && !strings.HasSuffix(m, "_") {
					t.Errorf("panel %q queries %s, which nothing exports", p.Title, m)
				}
			}
		}
	}
}
