package controllers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/metricsample"
	"github.com/bottlerocket-ops/update-operator/test/framework/promtool"
)

// startHost starts a simulated Bottlerocket host on fromVersion offered toVersion, whose
// Node goes NotReady while it reboots, and the node's agent; both stop at the end.
func startHost(node string) *hostsim.Host {
	dir, err := os.MkdirTemp("", "ctl") // short: Unix socket paths are limited to 108 bytes
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	socket, bootID := filepath.Join(dir, "api.sock"), filepath.Join(dir, "boot_id")
	host := hostsim.New(hostsim.Config{
		Version: fromVersion, Releases: append(hostsim.Releases(toVersion), hostsim.Reached(fromVersion)...), BootIDFile: bootID,
		RefreshDuration: 5 * time.Millisecond, PrepareDuration: 20 * time.Millisecond,
		ActivateDuration: 5 * time.Millisecond, RebootDuration: 50 * time.Millisecond,
		OnReboot: func(ev hostsim.RebootEvent) { kubeletReports(node, ev.Phase == hostsim.RebootUp) },
	})
	Expect(host.Start(socket)).To(Succeed())
	DeferCleanup(host.Close)

	mgr, err := agent.NewManager(env.Config, &agent.Agent{
		NodeName: node, BootIDFile: bootID, Clock: clock.RealClock{},
		Host: hostapi.New(socket, clock.RealClock{}, hostapi.WithPollInterval(5*time.Millisecond),
			hostapi.WithLockBackoff(5*time.Millisecond, 50*time.Millisecond, 200), hostapi.WithHTTPTimeout(2*time.Second)),
		RefreshInterval: time.Hour, RetryInterval: 20 * time.Millisecond,
	}, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(func() { cancel(); <-done })
	return host
}

// kubeletReports sets the Node's Ready condition from the simulator's goroutine, as the
// kubelet would around a reboot.
func kubeletReports(name string, ready bool) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var node corev1.Node
		if err := k8s.Get(context.Background(), client.ObjectKey{Name: name}, &node); err != nil {
			return err
		}
		node.Status.Conditions = []corev1.NodeCondition{readyCondition(ready)}
		return k8s.Status().Update(context.Background(), &node)
	})
	if err != nil {
		GinkgoWriter.Printf("setting Node %s Ready=%v: %v\n", name, ready, err)
	}
}

// sample returns the value of a gauge or counter of the controller's registry with the
// given labels.
func sample(g Gomega, name string, labels map[string]string) float64 {
	v, matched, err := metricsample.Sum(metrics.Registry, name, labels)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(matched).To(Equal(1), "samples of %s with %v", name, labels)
	return v
}

// owners returns the field managers owning a field path (such as "f:status", "f:agent")
// of the object.
func owners(obj client.Object, path ...string) []string {
	var out []string
	for _, e := range obj.GetManagedFields() {
		var fields map[string]any
		Expect(json.Unmarshal(e.FieldsV1.GetRawBytes(), &fields)).To(Succeed())
		found := true
		for _, p := range path {
			next, ok := fields[p].(map[string]any)
			if !ok {
				found = false
				break
			}
			fields = next
		}
		if found {
			out = append(out, e.Manager)
		}
	}
	return out
}

var _ = Describe("A rollout driven by real agents on simulated hosts", Ordered, func() {
	var (
		f      *fleet
		m      *monitor
		policy *v1alpha1.UpdatePolicy
		nodes  []string
		hosts  []*hostsim.Host
		pdb    *policyv1.PodDisruptionBudget
	)

	BeforeAll(func() {
		f = newFleet()
		m = f.watchFleet()
		policy = f.addPolicy("p", rolloutSpec())
		nodes = f.addBottlerocketNodes("a", "b")
		pod := addPod(f.name("app"), nodes[0])
		pdb = addPDB(pod.Name, 0)
		// The first agent starts alone so that its node is the first to go.
		hosts = append(hosts, startHost(nodes[0]))
		expectNode(nodes[0], v1alpha1.PhaseStaging)
		hosts = append(hosts, startHost(nodes[1]))
	})

	It("resumes after the controller restarts mid-drain: nothing is done twice and the rollout completes", func() {
		expectNode(nodes[0], v1alpha1.PhaseDraining, reason(v1alpha1.ReasonEvictionBlocked))
		f.stopController()
		f.startController()
		setDisruptionsAllowed(pdb, 1)

		f.stabilize(nodes...)
		m.settled(v1alpha1.PhaseUpdated, nodes...)
		maxUnavailable, phases, reboots := m.report()
		Expect(maxUnavailable).To(Equal(1), "never more nodes unavailable than maxUnavailable")
		for i, n := range nodes {
			Expect(phases[n]).To(HaveExactElements(lifecycleFrom(phases[n])), "%s visits every phase once, in order", n)
			Expect(reboots[n]).To(Equal(1), "Reboot written once into %s", n)
			Expect(hosts[i].State().Boots).To(Equal(2), "%s rebooted once", n)
			Expect(hosts[i].Version()).To(Equal(toVersion))
			Expect(getNode(Default, n).Spec.Unschedulable).To(BeFalse(), "%s schedulable", n)
		}
	})

	It("publishes the fleet by phase and the policy's disruption budget as metrics", func() {
		Eventually(func(g Gomega) {
			g.Expect(sample(g, "bottlerocket_nodes", map[string]string{"policy": policy.Name, "phase": string(v1alpha1.PhaseUpdated)})).To(Equal(2.0))
			g.Expect(sample(g, "bottlerocket_disruptions_allowed", map[string]string{"policy": policy.Name})).To(Equal(1.0))
			g.Expect(sample(g, "bottlerocket_disruptions_consumed", map[string]string{"policy": policy.Name})).To(Equal(0.0))
			g.Expect(sample(g, "bottlerocket_nodes_by_reason", map[string]string{"policy": policy.Name,
				"phase": string(v1alpha1.PhaseUpdated), "reason": string(v1alpha1.ReasonUpToDate)})).To(Equal(2.0))
			g.Expect(sample(g, "bottlerocket_update_policy_phase", map[string]string{"policy": policy.Name, "phase": string(v1alpha1.RolloutUpToDate)})).To(Equal(1.0))
			g.Expect(sample(g, "bottlerocket_update_policy_phase", map[string]string{"policy": policy.Name, "phase": string(v1alpha1.RolloutProgressing)})).To(Equal(0.0))
			g.Expect(sample(g, "bottlerocket_update_policy_target_version_info", map[string]string{"policy": policy.Name, "version": toVersion})).To(Equal(1.0))
			g.Expect(sample(g, "bottlerocket_update_policy_halted", map[string]string{"policy": policy.Name})).To(Equal(0.0))
		}).Should(Succeed())
		// The first node's drain was held up by its PodDisruptionBudget.
		Expect(sample(Default, "bottlerocket_evictions_blocked_total", nil)).To(BeNumerically(">=", 1))
		// Progress: when the last node became Updated.
		last := 0.0
		for _, n := range nodes {
			last = max(last, float64(getBRN(Default, n).Status.UpdatedTime.Unix()))
		}
		Expect(sample(Default, "bottlerocket_update_policy_last_progress_timestamp_seconds", map[string]string{"policy": policy.Name})).To(Equal(last))
		promtool.Run(GinkgoT(), "", []byte(scrapeText()), "check", "metrics")
		GinkgoWriter.Printf("series of a done policy of 2 nodes: %d\n", len(policySeries(policy.Name)))
	})

	It("keeps the two writers apart: the controller owns spec, the agent alone owns status.agent", func() {
		for _, n := range nodes {
			brn := getBRN(Default, n)
			Expect(owners(brn, "f:spec")).To(ConsistOf(controllers.FieldManager), "%s spec", n)
			Expect(owners(brn, "f:status", "f:agent")).To(ConsistOf(agent.FieldManager), "%s status.agent", n)
			Expect(owners(brn, "f:status", "f:phase")).To(ConsistOf(controllers.FieldManager), "%s status.phase", n)
		}
	})

	It("shows on its dashboard only metrics it exports, in queries promtool accepts", func() {
		checkDashboard()
	})

	It("deletes every series of a deleted policy", func() {
		Expect(policySeries(policy.Name)).NotTo(BeEmpty())
		Expect(k8s.Delete(context.Background(), policy)).To(Succeed())
		Eventually(func() []string { return policySeries(policy.Name) }).Should(BeEmpty())
	})
})

// scrapeText is the controller's registry as a scrape of its endpoint returns it.
func scrapeText() string { return gatherText(metrics.Registry) }

// gatherText is what g gathers in the text format of a scrape.
func gatherText(g prometheus.Gatherer) string {
	families, err := g.Gather()
	Expect(err).NotTo(HaveOccurred())
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		Expect(enc.Encode(f)).To(Succeed())
	}
	return buf.String()
}

// policySeries returns the series of the controller's registry labelled with the policy.
func policySeries(policy string) []string {
	var out []string
	for _, l := range strings.Split(scrapeText(), "\n") {
		if strings.Contains(l, `policy="`+policy+`"`) {
			out = append(out, l)
		}
	}
	return out
}

var _ = Describe("A host that refuses to reboot", func() {
	It("fails the node with the host's words, uncordoned, instead of waiting out the readiness deadline", func() {
		f := newFleet()
		f.addPolicy("p", rolloutSpec())
		nodes := f.addBottlerocketNodes("a")
		host := startHost(nodes[0])
		host.RefuseReboot(-1) // a shutdown inhibitor that never lets go

		expectNode(nodes[0], v1alpha1.PhaseFailed, reason(v1alpha1.ReasonRebootFailed))
		brn := getBRN(Default, nodes[0])
		Expect(brn.Status.Message).To(ContainSubstring("Operation inhibited by"))
		Eventually(func(g Gomega) { g.Expect(getNode(g, nodes[0]).Spec.Unschedulable).To(BeFalse()) }).Should(Succeed())
		Expect(host.State().Boots).To(Equal(1))
		Expect(host.State().UpdateState).To(Equal(hostapi.StateStaged), "the activation was undone: no surprise at the next boot")
	})
})
