package agent_test

import (
	"bytes"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/metricsample"
	"github.com/bottlerocket-ops/update-operator/test/framework/promtool"
)

// scrape returns what g gathers in the text format a scrape of the endpoint returns.
func scrape(g prometheus.Gatherer) string {
	families, err := g.Gather()
	Expect(err).NotTo(HaveOccurred())
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		Expect(enc.Encode(f)).To(Succeed())
	}
	return buf.String()
}

// seriesCount counts the samples (lines that are not comments) of a text scrape.
func seriesCount(text string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return n
}

// value returns the sum of the agent's counters or gauges name with the given labels (0 when
// it has no such series yet).
func value(name string, labels map[string]string) float64 {
	sum, _, err := metricsample.Sum(agent.Registry, name, labels)
	Expect(err).NotTo(HaveOccurred())
	return sum
}

func familyNames(g prometheus.Gatherer) map[string]bool {
	families, err := g.Gather()
	Expect(err).NotTo(HaveOccurred())
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	return names
}

var _ = Describe("Metrics", func() {
	It("counts the host's errors by kind, its refreshes and the actions' outcomes", func() {
		errs := map[string]string{"kind": "server_error"}
		staged := map[string]string{"action": string(v1alpha1.ActionStage), "result": string(v1alpha1.ActionSucceeded)}
		errsBefore, stagedBefore := value("bottlerocket_agent_host_api_errors_total", errs), value("bottlerocket_agent_actions_total", staged)
		start := time.Now().Truncate(time.Second)

		n := newNode(fleetHost())
		n.host.Fail500(2)
		n.startAgent(20 * time.Millisecond)
		Eventually(func() float64 { return value("bottlerocket_agent_host_api_errors_total", errs) }).Should(BeNumerically(">", errsBefore))
		Eventually(func() float64 {
			return value("bottlerocket_agent_last_refresh_success_timestamp_seconds", nil)
		}).Should(BeNumerically(">=", float64(start.Unix())))

		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
		Expect(value("bottlerocket_agent_actions_total", staged)).To(Equal(stagedBefore + 1))
	})

	It("serves only its own metrics unless asked for the runtime's, all passing promtool check metrics", func() {
		n := newNode(fleetHost())
		n.startAgent(20 * time.Millisecond)
		Eventually(func(g Gomega) { g.Expect(n.report(g).CurrentVersion).NotTo(BeEmpty()) }).Should(Succeed())

		own, all := agent.MetricsRegistry(false), agent.MetricsRegistry(true)
		ownNames, allNames := familyNames(own), familyNames(all)
		Expect(ownNames).To(Equal(familyNames(agent.Registry)))
		for name := range ownNames {
			Expect(name).To(HavePrefix("bottlerocket_agent_"))
			Expect(allNames).To(HaveKey(name))
		}
		// What controller-runtime registers (Go runtime, process, work queue, client, reconciler).
		var runtime []string
		for name := range allNames {
			if !ownNames[name] {
				runtime = append(runtime, name)
			}
		}
		Expect(runtime).To(ContainElements("go_goroutines", "workqueue_depth", "controller_runtime_reconcile_total"))

		ownText, allText := scrape(own), scrape(all)
		promtool.Run(GinkgoT(), "", []byte(ownText), "check", "metrics")
		promtool.Run(GinkgoT(), "", []byte(allText), "check", "metrics")
		GinkgoWriter.Printf("agent series: %d by default, %d with -metrics-runtime\n", seriesCount(ownText), seriesCount(allText))
	})
})
