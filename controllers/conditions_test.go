package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// window is a one-hour maintenance window.
func window(schedule, zone string) func(*v1alpha1.UpdatePolicySpec) {
	return func(s *v1alpha1.UpdatePolicySpec) {
		s.MaintenanceWindows = []v1alpha1.MaintenanceWindow{{Schedule: schedule, TimeZone: zone, Duration: metav1.Duration{Duration: 3600e9}}}
	}
}

// expectStatus waits until the policy's status, computed for its current generation,
// passes check.
func expectStatus(name string, check func(Gomega, *v1alpha1.UpdatePolicy)) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		p := getPolicy(g, name)
		g.Expect(p.Status.ObservedGeneration).To(Equal(p.Generation))
		for _, c := range p.Status.Conditions {
			g.Expect(c.ObservedGeneration).To(Equal(p.Generation), "condition %s", c.Type)
		}
		check(g, p)
	}).Should(Succeed())
}

func hasCondition(t string, status metav1.ConditionStatus, r v1alpha1.Reason) func(Gomega, *v1alpha1.UpdatePolicy) {
	return func(g Gomega, p *v1alpha1.UpdatePolicy) {
		g.Expect(p.Status.Conditions).To(ContainElement(condition(t, status, r)))
	}
}

var _ = Describe("Policy conditions", func() {
	DescribeTable("report what the policy does, for the generation observed",
		func(mutate func(*v1alpha1.UpdatePolicySpec), nodeReason v1alpha1.Reason, checks ...func(Gomega, *v1alpha1.UpdatePolicy)) {
			f := newFleet()
			p := f.addPolicy("p", rolloutSpec(mutate))
			nodes := f.addBottlerocketNodes("a", "b")
			for _, n := range nodes {
				agentReady(n)
			}
			expectStatus(p.Name, func(g Gomega, p *v1alpha1.UpdatePolicy) {
				for _, c := range checks {
					c(g, p)
				}
			})
			if nodeReason != "" { // the first node in line says why it waits; none has an intent
				expectNode(nodes[0], v1alpha1.PhasePending, intent(v1alpha1.ActionNone), reason(nodeReason))
				expectNode(nodes[1], v1alpha1.PhasePending, intent(v1alpha1.ActionNone))
			}
		},
		Entry("a schedule that is no cron expression is Degraded", window("61 * * * *", ""), v1alpha1.Reason(""),
			hasCondition(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonInvalidSchedule),
			hasCondition(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonInvalidSchedule),
			hasCondition(v1alpha1.ConditionStalled, metav1.ConditionTrue, v1alpha1.ReasonInvalidSchedule),
			hasCondition(v1alpha1.ConditionProgressing, metav1.ConditionFalse, v1alpha1.ReasonInvalidSchedule)),
		Entry("an unknown time zone is Degraded", window("0 22 * * *", "Mars/Olympus_Mons"), v1alpha1.Reason(""),
			hasCondition(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonInvalidTimeZone)),
		Entry("a paused policy writes no intent", func(s *v1alpha1.UpdatePolicySpec) { s.Paused = true }, v1alpha1.ReasonPolicyPaused,
			hasCondition(v1alpha1.ConditionPaused, metav1.ConditionTrue, v1alpha1.ReasonPaused),
			hasCondition(v1alpha1.ConditionDegraded, metav1.ConditionFalse, v1alpha1.ReasonHealthy)),
		Entry("a dry run plans, reports the next nodes and writes no intent", func(s *v1alpha1.UpdatePolicySpec) { s.DryRun = true }, v1alpha1.ReasonDryRun,
			hasCondition(v1alpha1.ConditionPaused, metav1.ConditionTrue, v1alpha1.ReasonDryRun),
			func(g Gomega, p *v1alpha1.UpdatePolicy) { g.Expect(p.Status.NextNodes).NotTo(BeEmpty()) }),
	)

	It("reports two policies selecting the same node as conflicting, and governs the node by neither", func() {
		f := newFleet()
		p1 := f.addPolicy("p1", rolloutSpec())
		p2 := f.addPolicy("p2", rolloutSpec())
		node := f.addBottlerocketNodes("a")[0]
		agentReady(node)
		for _, p := range []*v1alpha1.UpdatePolicy{p1, p2} {
			expectStatus(p.Name, hasCondition(v1alpha1.ConditionDegraded, metav1.ConditionTrue, v1alpha1.ReasonPolicyConflict))
			expectStatus(p.Name, hasCondition(v1alpha1.ConditionStalled, metav1.ConditionTrue, v1alpha1.ReasonPolicyConflict))
			expectStatus(p.Name, hasCondition(v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonPolicyConflict))
		}
		expectNode(node, v1alpha1.PhaseIdle, intent(v1alpha1.ActionNone), reason(v1alpha1.ReasonPolicyConflict))
	})
})
