package controllers_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/yaml"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/test/framework/promtool"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// dashboardQuery is one PromQL query of the dashboard, and where it is.
type dashboardQuery struct{ where, expr string }

// dashboardQueries returns every panel's queries and the template variables' metrics
// (label_values(metric, label)) of config/grafana/dashboard.json.
func dashboardQueries() []dashboardQuery {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "grafana", "dashboard.json"))
	Expect(err).NotTo(HaveOccurred())
	var d struct {
		Panels     []dashboardPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	Expect(json.Unmarshal(b, &d)).To(Succeed())
	var out []dashboardQuery
	var walk func([]dashboardPanel)
	walk = func(panels []dashboardPanel) {
		for _, p := range panels {
			if p.Type != "row" {
				Expect(p.Targets).NotTo(BeEmpty(), "panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				Expect(t.Expr).NotTo(BeEmpty(), "panel %q query %s", p.Title, t.RefID)
				out = append(out, dashboardQuery{fmt.Sprintf("panel %q query %s", p.Title, t.RefID), t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,`)
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			m := labelValues.FindStringSubmatch(v.Definition)
			Expect(m).NotTo(BeNil(), "variable %s: want label_values(metric, label), have %q", v.Name, v.Definition)
			out = append(out, dashboardQuery{"variable " + v.Name, m[1]})
		}
	}
	return out
}

type dashboardPanel struct {
	Title   string           `json:"title"`
	Type    string           `json:"type"`
	Panels  []dashboardPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

var (
	grafanaIntervalRE = regexp.MustCompile(`\$__(rate_interval|interval|range)\b`)
	// What is not a metric name in PromQL: strings, label matchers, ranges, grouping clauses.
	promStringRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promNotNames = []*regexp.Regexp{
		regexp.MustCompile(`\{[^}]*\}`), regexp.MustCompile(`\[[^\]]*\]`),
		regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
	}
	promIdentRE  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(?`)
	promKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
		"sum": true, "min": true, "max": true, "avg": true, "count": true, "stddev": true, "stdvar": true, "topk": true,
		"bottomk": true, "quantile": true, "count_values": true, "group": true, "limitk": true, "limit_ratio": true,
	}
)

// promQL makes a dashboard query plain PromQL: Grafana's intervals become 5m.
func promQL(expr string) string { return grafanaIntervalRE.ReplaceAllString(expr, "5m") }

// metricNames returns the metric names a PromQL query selects (functions and keywords aside).
func metricNames(expr string) []string {
	expr = promStringRE.ReplaceAllString(promQL(expr), `""`)
	for _, re := range promNotNames {
		expr = re.ReplaceAllString(expr, " ")
	}
	var names []string
	for _, tok := range promIdentRE.FindAllString(expr, -1) {
		if strings.HasSuffix(tok, "(") || promKeywords[strings.TrimSpace(tok)] {
			continue
		}
		names = append(names, strings.TrimSpace(tok))
	}
	return names
}

// exportedNames returns the sample names (histograms' _bucket, _sum and _count included) of
// a scrape of the controller's registry and of the agents' (running in this process).
func exportedNames() map[string]bool {
	names := map[string]bool{}
	for _, text := range []string{scrapeText(), gatherText(agent.Registry)} {
		for _, l := range strings.Split(text, "\n") {
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			names[strings.FieldsFunc(l, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	return names
}

// checkDashboard checks that every query of the dashboard is PromQL promtool accepts and
// selects only metrics the operator exported in this test.
func checkDashboard() {
	queries := dashboardQueries()
	Expect(queries).NotTo(BeEmpty())
	exported := exportedNames()
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for i, q := range queries {
		names := metricNames(q.expr)
		Expect(names).NotTo(BeEmpty(), "%s selects no metric: %s", q.where, q.expr)
		for _, n := range names {
			Expect(exported).To(HaveKey(n), "%s: %s is not a metric the operator exports", q.where, n)
		}
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: promQL(q.expr)})
	}
	file := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	b, err := yaml.Marshal(file)
	Expect(err).NotTo(HaveOccurred())
	dir, err := os.MkdirTemp("", "dashboard")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = os.RemoveAll(dir) }()
	Expect(os.WriteFile(filepath.Join(dir, "queries.yaml"), b, 0o644)).To(Succeed())
	promtool.Run(GinkgoT(), dir, nil, "check", "rules", "queries.yaml")
}
