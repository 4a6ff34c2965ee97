package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// lifecycle is the order of the phases of an update; a node's phase never goes back in it.
var lifecycle = []v1alpha1.NodePhase{
	v1alpha1.PhasePending, v1alpha1.PhaseStaging, v1alpha1.PhaseStaged, v1alpha1.PhaseDraining, v1alpha1.PhaseRebooting,
	v1alpha1.PhaseVerifying, v1alpha1.PhaseStabilizing, v1alpha1.PhaseUpdated,
}

// theOther returns the node of the pair that is not name.
func theOther(pair []string, name string) string {
	if pair[0] == name {
		return pair[1]
	}
	return pair[0]
}

// staging waits until exactly one of the nodes is Staging and returns it.
func staging(names []string) string {
	GinkgoHelper()
	var first string
	Eventually(func(g Gomega) {
		var stage []string
		for _, n := range names {
			if brn := getBRN(g, n); brn.Spec.Action == v1alpha1.ActionStage {
				stage = append(stage, n)
			}
		}
		g.Expect(stage).To(HaveLen(1), "exactly one node gets the Stage intent")
		first = stage[0]
	}).Should(Succeed())
	return first
}

var _ = Describe("A rollout", func() {
	It("moves one node at a time through the lifecycle, each step on the evidence the agent reports", func() {
		f := newFleet()
		m := f.watchFleet()
		f.addPolicy("p", rolloutSpec())
		nodes := f.addBottlerocketNodes("a", "b")
		for _, n := range nodes {
			agentReady(n)
		}

		first := staging(nodes)
		second := theOther(nodes, first)
		expectNode(first, v1alpha1.PhaseStaging, intent(v1alpha1.ActionStage))
		expectNode(second, v1alpha1.PhasePending, intent(v1alpha1.ActionNone), reason(v1alpha1.ReasonStagingLimit))

		By("draining once staged; rebooting once drained, cordoned by us")
		agentStaged(first)
		expectNode(first, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), cordonedByUs(true))
		m.settled(v1alpha1.PhaseRebooting, first)
		_, phases, _ := m.report()
		Expect(phases[first]).To(ContainElements(v1alpha1.PhaseStaged, v1alpha1.PhaseDraining))

		By("verifying once the host is back with a new boot ID, until the Node is Ready")
		setReady(first, false)
		agentRebooted(first, toVersion)
		expectNode(first, v1alpha1.PhaseVerifying, intent(v1alpha1.ActionReboot), reason(v1alpha1.ReasonNodeNotReady), cordonedByUs(true))
		setReady(first, true)
		expectNode(first, v1alpha1.PhaseStabilizing, intent(v1alpha1.ActionNone), cordonedByUs(false))

		By("holding the slot while stabilizing: the second node stages but is not disrupted")
		expectNode(second, v1alpha1.PhaseStaging, intent(v1alpha1.ActionStage))
		agentStaged(second)
		expectNode(second, v1alpha1.PhaseStaged, intent(v1alpha1.ActionStage), reason(v1alpha1.ReasonBudgetExhausted))

		By("updated once healthy for health.stableFor; then the second node goes")
		f.stabilize(first)
		expectNode(first, v1alpha1.PhaseUpdated, cordonedByUs(false))
		expectNode(second, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), cordonedByUs(true))
		agentRebooted(second, toVersion)
		f.stabilize(second)
		expectNode(second, v1alpha1.PhaseUpdated, cordonedByUs(false))

		m.settled(v1alpha1.PhaseUpdated, nodes...)
		maxUnavailable, phases, reboots := m.report()
		Expect(maxUnavailable).To(Equal(1), "never more nodes unavailable than maxUnavailable")
		for _, n := range nodes {
			Expect(phases[n]).To(HaveExactElements(lifecycleFrom(phases[n])), "%s visits every phase once, in order", n)
			Expect(reboots[n]).To(Equal(1), "%s rebooted once", n)
		}
	})

	It("fails a node that fell back to the old version, halts at the failure budget, and resumes when asked", func(ctx SpecContext) {
		f := newFleet()
		p := f.addPolicy("p", rolloutSpec(func(s *v1alpha1.UpdatePolicySpec) { s.FailurePolicy.MaxFailedNodes = 1 }))
		nodes := f.addBottlerocketNodes("a", "b")
		// The second host reports only once the first failed: a halted rollout starts nothing.
		first, second := nodes[0], nodes[1]
		agentReady(first)
		expectNode(first, v1alpha1.PhaseStaging)
		agentStaged(first)
		expectNode(first, v1alpha1.PhaseRebooting, cordonedByUs(true))
		agentRebooted(first, fromVersion)
		expectNode(first, v1alpha1.PhaseFailed, intent(v1alpha1.ActionNone), reason(v1alpha1.ReasonFallback), cordonedByUs(false))
		failures := func(g Gomega) float64 {
			return sample(g, "bottlerocket_node_update_failures_total", map[string]string{"policy": p.Name, "reason": string(v1alpha1.ReasonFallback)})
		}
		Eventually(failures).Should(Equal(1.0))
		Consistently(failures, "500ms").Should(Equal(1.0), "one failure is counted once")

		agentReady(second)
		expectNode(second, v1alpha1.PhasePending, intent(v1alpha1.ActionNone), reason(v1alpha1.ReasonRolloutHalted))
		Eventually(func(g Gomega) {
			conds := getPolicy(g, p.Name).Status.Conditions
			g.Expect(conds).To(ContainElement(condition(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonFailureBudgetSpent)))
			g.Expect(conds).To(ContainElement(condition(v1alpha1.ConditionStalled, metav1.ConditionTrue, v1alpha1.ReasonFailureBudgetSpent)))
			g.Expect(conds).To(ContainElement(condition(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonFailureBudgetSpent)))
			g.Expect(conds).To(ContainElement(condition(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonFailureBudgetSpent)))
		}).Should(Succeed())

		By("resuming with one kubectl annotate")
		Expect(k8s.Patch(ctx, &v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: p.Name}}, client.RawPatch(client.Merge.Type(),
			[]byte(`{"metadata":{"annotations":{"`+v1alpha1.AnnotationResume+`":"1767607200"}}}`)))).To(Succeed())
		Eventually(func(g Gomega) {
			got := getPolicy(g, p.Name)
			g.Expect(got.Annotations).NotTo(HaveKey(v1alpha1.AnnotationResume))
			g.Expect(got.Status.ResumeTime).NotTo(BeNil())
			g.Expect(got.Status.Conditions).To(ContainElement(condition(v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonHealthy)))
			g.Expect(got.Status.Conditions).To(ContainElement(condition(v1alpha1.ConditionStalled, metav1.ConditionFalse, v1alpha1.ReasonHealthy)))
		}).Should(Succeed())
		expectNode(second, v1alpha1.PhaseStaging, intent(v1alpha1.ActionStage))
		expectNode(first, v1alpha1.PhaseFailed, intent(v1alpha1.ActionNone), reason(v1alpha1.ReasonFallback))
	})
})

// condition matches a condition by type, status and reason.
func condition(t string, status metav1.ConditionStatus, r v1alpha1.Reason) any {
	return SatisfyAll(HaveField("Type", t), HaveField("Status", status), HaveField("Reason", string(r)))
}

// lifecycleFrom returns the lifecycle from the first phase seen on: an update visits every
// phase once, in order, and never goes back.
func lifecycleFrom(seen []v1alpha1.NodePhase) []v1alpha1.NodePhase {
	var want []v1alpha1.NodePhase
	for _, p := range lifecycle {
		if len(seen) > 0 && (len(want) > 0 || p == seen[0]) {
			want = append(want, p)
		}
	}
	return want
}

var _ = Describe("A node excluded mid-reboot", func() {
	It("stays charged to the budget and cordoned until it is back, then is released", func() {
		f := newFleet()
		m := f.watchFleet()
		f.addPolicy("p", rolloutSpec())
		nodes := f.addBottlerocketNodes("a", "b")
		for _, n := range nodes {
			agentReady(n)
		}
		first := staging(nodes)
		second := theOther(nodes, first)
		agentStaged(first)
		expectNode(first, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), cordonedByUs(true))
		expectNode(second, v1alpha1.PhaseStaging)
		agentStaged(second)
		expectNode(second, v1alpha1.PhaseStaged, reason(v1alpha1.ReasonBudgetExhausted))

		By("excluding the rebooting node: its reboot is carried on, its slot stays taken")
		setReady(first, false)
		Eventually(func(g Gomega) {
			node := getNode(g, first)
			orig := node.DeepCopy()
			node.Annotations[v1alpha1.AnnotationExclude] = "true"
			g.Expect(k8s.Patch(context.Background(), node, client.MergeFrom(orig))).To(Succeed())
		}).Should(Succeed())
		expectNode(first, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), cordonedByUs(true),
			func(g Gomega, brn *v1alpha1.BottlerocketNode) {
				g.Expect(brn.Status.Message).To(ContainSubstring("carried on"))
			})
		expectNode(second, v1alpha1.PhaseStaged, reason(v1alpha1.ReasonBudgetExhausted))

		By("released once back: uncordoned, our annotations gone; then the next node goes")
		agentRebooted(first, toVersion)
		expectNode(first, v1alpha1.PhaseVerifying, cordonedByUs(true))
		setReady(first, true)
		expectNode(first, v1alpha1.PhaseIdle, intent(v1alpha1.ActionNone), reason(v1alpha1.ReasonExcluded), cordonedByUs(false),
			func(g Gomega, brn *v1alpha1.BottlerocketNode) {
				g.Expect(getNode(g, brn.Name).Annotations).NotTo(HaveKey(v1alpha1.AnnotationAutoscalerGuard))
				g.Expect(getNode(g, brn.Name).Annotations).NotTo(HaveKey(v1alpha1.AnnotationKarpenterDoNotDisrupt))
			})
		expectNode(second, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), cordonedByUs(true))
		maxUnavailable, _, _ := m.report()
		Expect(maxUnavailable).To(Equal(1), "never more nodes unavailable than maxUnavailable")
	})
})

var _ = Describe("A Node deleted mid-update", func() {
	It("is a failure: the policy records it and halts at failurePolicy.maxFailedNodes", func(ctx SpecContext) {
		f := newFleet()
		p := f.addPolicy("p", rolloutSpec(func(s *v1alpha1.UpdatePolicySpec) { s.FailurePolicy.MaxFailedNodes = 1 }))
		nodes := f.addBottlerocketNodes("a", "b")
		for _, n := range nodes {
			agentReady(n)
		}
		first := staging(nodes)
		second := theOther(nodes, first)
		agentStaged(first)
		expectNode(first, v1alpha1.PhaseRebooting, cordonedByUs(true))
		expectNode(second, v1alpha1.PhaseStaging)
		agentStaged(second)
		expectNode(second, v1alpha1.PhaseStaged, reason(v1alpha1.ReasonBudgetExhausted))

		By("an autoscaler replaces the rebooting instance: its Node goes")
		Expect(k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: first}})).To(Succeed())
		Eventually(func(g Gomega) {
			got := getPolicy(g, p.Name)
			g.Expect(got.Status.DeletedNodes).To(ConsistOf(SatisfyAll(
				HaveField("Name", first), HaveField("TargetVersion", toVersion),
				HaveField("Phase", v1alpha1.PhaseRebooting), HaveField("Reason", v1alpha1.ReasonNodeDeleted))))
			g.Expect(got.Status.Conditions).To(ContainElement(condition(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonFailureBudgetSpent)))
		}).Should(Succeed())
		expectNode(second, v1alpha1.PhaseStaged, reason(v1alpha1.ReasonRolloutHalted))
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: first}, &v1alpha1.BottlerocketNode{}))
		}).Should(BeTrue(), "the BottlerocketNode goes with its Node")
	})
})
