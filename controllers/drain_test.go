package controllers_test

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/evictionguard"
)

// drainingBlocked sets up one node to update holding a pod that a PodDisruptionBudget
// protects (disruptionsAllowed 0), plus a worker node that can take evicted pods, and waits
// until the drain is blocked.
func (f *fleet) drainingBlocked(drain v1alpha1.DrainSpec) (node string, pod *corev1.Pod, pdb *policyv1.PodDisruptionBudget) {
	GinkgoHelper()
	f.addNode("worker", "Ubuntu 24.04.1 LTS") // capacity for the evicted pods
	f.addPolicy("p", rolloutSpec(func(s *v1alpha1.UpdatePolicySpec) { s.Drain = drain }))
	node = f.addBottlerocketNodes("a")[0]
	pod = addPod(f.name("app"), node)
	pdb = addPDB(pod.Name, 0)
	agentReady(node)
	expectNode(node, v1alpha1.PhaseStaging)
	agentStaged(node)
	expectNode(node, v1alpha1.PhaseDraining, intent(v1alpha1.ActionStage), reason(v1alpha1.ReasonEvictionBlocked), cordonedByUs(true),
		func(g Gomega, brn *v1alpha1.BottlerocketNode) {
			g.Expect(brn.Status.Message).To(SatisfyAll(ContainSubstring(podNS+"/"+pod.Name), ContainSubstring(podNS+"/"+pod.Name+"-pdb")))
		})
	return node, pod, pdb
}

func podExists(ctx context.Context, pod *corev1.Pod) bool {
	err := k8s.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})
	Expect(client.IgnoreNotFound(err)).To(Succeed())
	return err == nil
}

var _ = Describe("Draining", func() {
	It("waits while a PodDisruptionBudget forbids an eviction, says so, and goes on once it allows", func(ctx SpecContext) {
		f := newFleet()
		node, pod, pdb := f.drainingBlocked(v1alpha1.DrainSpec{GracePeriodSeconds: ptr.To[int64](0)})
		Eventually(func(g Gomega) {
			var events eventsv1.EventList
			g.Expect(k8s.List(ctx, &events)).To(Succeed())
			g.Expect(events.Items).To(ContainElement(SatisfyAll(
				HaveField("Regarding.Kind", "Node"), HaveField("Regarding.Name", node), HaveField("Reason", string(v1alpha1.ReasonEvictionBlocked)),
				HaveField("Type", corev1.EventTypeWarning), HaveField("Note", ContainSubstring(pod.Name)))))
		}).Should(Succeed())
		Expect(podExists(ctx, pod)).To(BeTrue(), "no eviction the PodDisruptionBudget forbids")

		setDisruptionsAllowed(pdb, 1)
		expectNode(node, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), cordonedByUs(true),
			func(g Gomega, brn *v1alpha1.BottlerocketNode) {
				g.Expect(brn.Status.EvictedPDBs).To(ConsistOf(podNS + "/" + pdb.Name))
			})
		Expect(podExists(ctx, pod)).To(BeFalse(), "the pod was evicted before the reboot")

		By("holding the node until the evicted pod's PodDisruptionBudget is healthy again")
		setPDBHealth(pdb, 0, 1)
		agentRebooted(node, toVersion)
		expectNode(node, v1alpha1.PhaseStabilizing, reason(v1alpha1.ReasonPDBUnhealthy))
		setPDBHealth(pdb, 1, 1)
		f.stabilize(node)
		Expect(getBRN(Default, node).Status.EvictedPDBs).To(BeEmpty())
	})

	It("keeps the record of the budgets it evicted from when writing it fails, until it is written", func(ctx SpecContext) {
		var conflicts atomic.Int32
		f := newFleetWith(func(o *ctrl.Options) {
			o.NewClient = func(cfg *rest.Config, opts client.Options) (client.Client, error) {
				c, err := client.NewWithWatch(cfg, opts)
				// The first status write that records an evicted budget meets a conflict (the
				// agent wrote in between): the pods are gone, the write is not.
				return interceptor.NewClient(c, interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
					if brn, ok := obj.(*v1alpha1.BottlerocketNode); ok && len(brn.Status.EvictedPDBs) > 0 && conflicts.Add(1) == 1 {
						return apierrors.NewConflict(v1alpha1.GroupVersion.WithResource("bottlerocketnodes").GroupResource(), brn.Name, errors.New("the object has been modified"))
					}
					return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
				}}), err
			}
		})
		node, pod, pdb := f.drainingBlocked(v1alpha1.DrainSpec{GracePeriodSeconds: ptr.To[int64](0)})
		setDisruptionsAllowed(pdb, 1)
		expectNode(node, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), func(g Gomega, brn *v1alpha1.BottlerocketNode) {
			g.Expect(brn.Status.EvictedPDBs).To(ConsistOf(podNS+"/"+pdb.Name), "the budget evicted from, recorded after the failed write")
		})
		Expect(conflicts.Load()).To(BeNumerically(">=", 1), "the first write recording the eviction failed")
		Expect(podExists(ctx, pod)).To(BeFalse())
	})

	It("completes an eviction the API server granted but did not carry out, and only that", func(ctx SpecContext) {
		f := newFleet()
		node, pod, pdb := f.drainingBlocked(v1alpha1.DrainSpec{GracePeriodSeconds: ptr.To[int64](0)})

		By("an eviction granted to an earlier pod of the same name: still refused, the pod stays")
		setDisruptedPod(pdb, pod.Name, pod.CreationTimestamp.Add(-time.Hour))
		f.tick()
		expectNode(node, v1alpha1.PhaseDraining, reason(v1alpha1.ReasonEvictionBlocked))
		Consistently(func() bool { return podExists(ctx, pod) }).WithTimeout(time.Second).Should(BeTrue())

		By("an eviction granted to this pod, whose deletion was lost (the API server crashed in between)")
		setDisruptedPod(pdb, pod.Name, time.Now())
		f.tick()
		expectNode(node, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot), func(g Gomega, brn *v1alpha1.BottlerocketNode) {
			g.Expect(brn.Status.EvictedPDBs).To(ConsistOf(podNS + "/" + pdb.Name))
		})
		Expect(podExists(ctx, pod)).To(BeFalse(), "the granted eviction was completed")
	})

	It("holds a node found healthy only after health.readyTimeout for stableFor, rather than failing it", func() {
		f := newFleet()
		node, _, pdb := f.drainingBlocked(v1alpha1.DrainSpec{GracePeriodSeconds: ptr.To[int64](0)})
		setDisruptionsAllowed(pdb, 1)
		expectNode(node, v1alpha1.PhaseRebooting)
		setPDBHealth(pdb, 0, 1)
		agentRebooted(node, toVersion)
		expectNode(node, v1alpha1.PhaseStabilizing, reason(v1alpha1.ReasonPDBUnhealthy))

		By("the workload recovering while the controller is away past the deadline (default readyTimeout 10m)")
		f.stopController()
		setPDBHealth(pdb, 1, 1)
		f.clock.Step(10*time.Minute + stableFor + time.Second)
		f.startController()
		expectNode(node, v1alpha1.PhaseStabilizing, reason(v1alpha1.ReasonStabilizing))
		f.stabilize(node)
	})

	It("updates a node somebody else cordoned, and leaves it cordoned", func() {
		f := newFleet()
		// maxUnavailable 1: the node already counts against the budget, and admitting it takes
		// no further slot.
		f.addPolicy("p", rolloutSpec())
		node := f.addNode("a", osImage, func(n *corev1.Node) { n.Spec.Unschedulable = true })
		agentReady(node)
		f.updateNode(node)
		Eventually(func(g Gomega) {
			n := getNode(g, node)
			g.Expect(n.Spec.Unschedulable).To(BeTrue(), "still cordoned by its owner")
			g.Expect(n.Annotations).NotTo(HaveKey(v1alpha1.AnnotationCordonedBy))
			g.Expect(n.Annotations).NotTo(HaveKey(v1alpha1.AnnotationKarpenterDoNotDisrupt), "the autoscaler guard is released")
		}).Should(Succeed())
	})

	It("leaves the autoscaler annotations a node's owner set, and removes only those it set", func() {
		f := newFleet()
		f.addPolicy("p", rolloutSpec())
		node := f.addNode("a", osImage, func(n *corev1.Node) {
			n.Annotations = map[string]string{v1alpha1.AnnotationClusterAutoscalerScaleDownDisabled: "true"}
		})
		agentReady(node)
		expectNode(node, v1alpha1.PhaseStaging)
		agentStaged(node)
		expectNode(node, v1alpha1.PhaseRebooting, cordonedByUs(true))
		n := getNode(Default, node)
		Expect(n.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationKarpenterDoNotDisrupt, "true"), "the guard the owner lacks is set")
		Expect(n.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationClusterAutoscalerScaleDownDisabled, "true"))
		agentRebooted(node, toVersion)
		f.stabilize(node)
		Eventually(func(g Gomega) {
			n := getNode(g, node)
			g.Expect(n.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationClusterAutoscalerScaleDownDisabled, "true"), "the owner's annotation stays")
			g.Expect(n.Annotations).NotTo(HaveKey(v1alpha1.AnnotationKarpenterDoNotDisrupt), "the guard the operator set is released")
			g.Expect(n.Annotations).NotTo(HaveKey(v1alpha1.AnnotationAutoscalerGuard))
		}).Should(Succeed())
	})

	It("counts a pod it may not evict as left, names it and why, and fails the node at drain.timeout", func(ctx SpecContext) {
		f := newFleet()
		f.addNode("worker", "Ubuntu 24.04.1 LTS") // capacity for the evicted pods
		f.addPolicy("p", rolloutSpec(func(s *v1alpha1.UpdatePolicySpec) {
			s.Drain.DeleteEmptyDirData = ptr.To(false)
			s.Drain.Timeout, s.Drain.OnTimeout = &metav1.Duration{Duration: time.Minute}, v1alpha1.DrainTimeoutAbort
		}))
		node := f.addBottlerocketNodes("a")[0]
		pod := addPod(f.name("cache"), node, withEmptyDir)
		agentReady(node)
		expectNode(node, v1alpha1.PhaseStaging)
		agentStaged(node)
		namesPod := message(ContainSubstring(podNS+"/"+pod.Name), ContainSubstring("emptyDir"), ContainSubstring("deleteEmptyDirData"))
		expectNode(node, v1alpha1.PhaseDraining, reason(v1alpha1.ReasonDrainRefused), namesPod, cordonedByUs(true))
		Expect(podExists(ctx, pod)).To(BeTrue(), "a pod with emptyDir data is not evicted under deleteEmptyDirData: false")

		By("drain.timeout passing with nothing watched changing: the pass wakes itself up")
		f.clock.Step(time.Minute + time.Second)
		expectNode(node, v1alpha1.PhaseFailed, reason(v1alpha1.ReasonDrainTimeout), namesPod, intent(v1alpha1.ActionNone), cordonedByUs(false))
		Expect(podExists(ctx, pod)).To(BeTrue())
	})

	It("names a pod whose eviction an admission policy denies, and fails the node at drain.timeout", func(ctx SpecContext) {
		f := newFleet()
		f.addNode("worker", "Ubuntu 24.04.1 LTS") // capacity for the evicted pods
		f.addPolicy("p", rolloutSpec(func(s *v1alpha1.UpdatePolicySpec) {
			s.Drain.Timeout, s.Drain.OnTimeout = &metav1.Duration{Duration: time.Minute}, v1alpha1.DrainTimeoutAbort
		}))
		node := f.addBottlerocketNodes("a")[0]
		pod := addPod(f.name("guarded"), node)
		denyEvictionOf(ctx, pod, "not during business hours")
		agentReady(node)
		expectNode(node, v1alpha1.PhaseStaging)
		agentStaged(node)
		namesPod := message(ContainSubstring(podNS+"/"+pod.Name), ContainSubstring("not during business hours"))
		expectNode(node, v1alpha1.PhaseDraining, reason(v1alpha1.ReasonDrainRefused), namesPod, cordonedByUs(true))
		Expect(podExists(ctx, pod)).To(BeTrue(), "the admission policy keeps the pod")

		f.clock.Step(time.Minute + time.Second)
		expectNode(node, v1alpha1.PhaseFailed, reason(v1alpha1.ReasonDrainTimeout), namesPod, cordonedByUs(false))
	})

	DescribeTable("at drain.timeout",
		func(ctx SpecContext, onTimeout v1alpha1.DrainTimeoutAction, phase v1alpha1.NodePhase, checks ...func(Gomega, *v1alpha1.BottlerocketNode)) {
			f := newFleet()
			node, pod, _ := f.drainingBlocked(v1alpha1.DrainSpec{GracePeriodSeconds: ptr.To[int64](0),
				Timeout: &metav1.Duration{Duration: time.Minute}, OnTimeout: onTimeout})
			f.advance(time.Minute + time.Second)
			expectNode(node, phase, checks...)
			Expect(podExists(ctx, pod)).To(BeTrue(), "the PodDisruptionBudget still holds the pod")
		},
		Entry("Abort fails the node and uncordons it", v1alpha1.DrainTimeoutAbort, v1alpha1.PhaseFailed,
			intent(v1alpha1.ActionNone), reason(v1alpha1.ReasonDrainTimeout), cordonedByUs(false)),
		Entry("Force reboots although the pod remains", v1alpha1.DrainTimeoutForce, v1alpha1.PhaseRebooting,
			intent(v1alpha1.ActionReboot), cordonedByUs(true)),
	)
})

// setDisruptedPod records in a PodDisruptionBudget's status that the API server granted the
// eviction of pod at the given time (disruptions allowed: none left), as its eviction handler does.
func setDisruptedPod(pdb *policyv1.PodDisruptionBudget, pod string, at time.Time) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(pdb), pdb)).To(Succeed())
		pdb.Status.DisruptionsAllowed = 0
		pdb.Status.DisruptedPods = map[string]metav1.Time{pod: metav1.NewTime(at)}
		g.Expect(k8s.Status().Update(context.Background(), pdb)).To(Succeed())
	}).Should(Succeed())
}

// setPDBHealth sets a PodDisruptionBudget's healthy and desired healthy pod counts, as the
// disruption controller would.
func setPDBHealth(pdb *policyv1.PodDisruptionBudget, current, desired int32) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(pdb), pdb)).To(Succeed())
		pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation,
			CurrentHealthy: current, DesiredHealthy: desired, ExpectedPods: desired}
		g.Expect(k8s.Status().Update(context.Background(), pdb)).To(Succeed())
	}).Should(Succeed())
}

// withEmptyDir gives a pod an emptyDir volume: local data a drain deletes with the pod.
func withEmptyDir(pod *corev1.Pod) {
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
}

// message checks status.message.
func message(matchers ...types.GomegaMatcher) func(Gomega, *v1alpha1.BottlerocketNode) {
	return func(g Gomega, brn *v1alpha1.BottlerocketNode) {
		g.Expect(brn.Status.Message).To(SatisfyAll(matchers...), "message of %s (reason %s)", brn.Name, brn.Status.Reason)
	}
}

// denyEvictionOf installs a ValidatingAdmissionPolicy that denies every eviction of pod with
// message, as an admission webhook guarding a workload would, and waits until the API server
// applies it (a dry-run eviction is refused).
func denyEvictionOf(ctx context.Context, pod *corev1.Pod, message string) {
	GinkgoHelper()
	for _, obj := range evictionguard.Objects("deny-eviction-"+pod.Name, pod, message) {
		Expect(k8s.Create(ctx, obj)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj))).To(Succeed()) })
	}
	eviction := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}
	dryRun := &client.SubResourceCreateOptions{CreateOptions: client.CreateOptions{DryRun: []string{metav1.DryRunAll}}}
	Eventually(func() error { return k8s.SubResource("eviction").Create(ctx, pod, eviction, dryRun) }).
		Should(MatchError(ContainSubstring(message)))
}
