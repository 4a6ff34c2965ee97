package monitoring_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/test/framework/promtool"
)

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// ruleTests is the part of a promtool unit test file the tests read.
type ruleTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		AlertRuleTest []struct {
			AlertName string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestAlertRules checks the rule file with promtool and runs its unit tests.
func TestAlertRules(t *testing.T) {
	promtool.Run(t, promDir, nil, "check", "rules", "rules.yaml")
	out := promtool.Run(t, promDir, nil, "test", "rules", "rules_test.yaml")
	t.Logf("promtool test rules:\n%s", out)
}

// TestEveryAlertIsTestedBothWays: each alert of rules.yaml has a unit test where it fires and
// one where it does not; the unit tests test the rule file there is, and no alert that is
// not there.
func TestEveryAlertIsTestedBothWays(t *testing.T) {
	var rules ruleFile
	readYAML(t, filepath.Join(promDir, "rules.yaml"), &rules)
	var tests ruleTests
	b, err := os.ReadFile(filepath.Join(promDir, "rules_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Not strict: promtool's test format has more fields than these.
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tests.RuleFiles, []string{"rules.yaml"}) {
		t.Errorf("rules_test.yaml tests %v, want [rules.yaml]", tests.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.AlertName] = true
			} else {
				quiet[a.AlertName] = true
			}
		}
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if !fires[r.Alert] {
				t.Errorf("%s: no unit test where it fires", r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("%s: no unit test where it does not fire", r.Alert)
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("rules.yaml has no alert")
	}
	for name := range fires {
		if !alerts[name] {
			t.Errorf("rules_test.yaml tests %s, which rules.yaml does not define", name)
		}
	}
}
