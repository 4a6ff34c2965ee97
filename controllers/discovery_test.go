package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

var _ = Describe("Node discovery", func() {
	It("labels Bottlerocket nodes, keeps one BottlerocketNode per node, and leaves other nodes alone", func(ctx SpecContext) {
		f := newFleet()
		// Created first: discovery handles nodes in order, so by the time the later nodes are
		// done this one has been looked at too.
		other := f.addNode("ubuntu", "Ubuntu 24.04.1 LTS")
		current := f.addNode("br", osImage)
		old := f.addNode("old", "Bottlerocket OS 0.3.4 (aws-k8s-1.15)")

		Eventually(func(g Gomega) {
			node := getNode(g, current)
			g.Expect(node.Labels).To(HaveKeyWithValue(v1alpha1.LabelInterfaceVersion, v1alpha1.InterfaceVersion))
			// No owner: the garbage collector would delete it with its Node, before a deletion
			// mid-update is recorded.
			g.Expect(getBRN(g, current).OwnerReferences).To(BeEmpty())
		}).Should(Succeed())

		By("reporting a host without the update API as unsupported, without the agent's label")
		expectNode(old, v1alpha1.PhaseIdle, reason(v1alpha1.ReasonUnsupportedHost))
		Expect(getNode(Default, old).Labels).NotTo(HaveKey(v1alpha1.LabelInterfaceVersion))

		By("leaving a node that does not run Bottlerocket alone")
		Expect(getNode(Default, other).Labels).NotTo(HaveKey(v1alpha1.LabelInterfaceVersion))
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: other}, &v1alpha1.BottlerocketNode{}))).To(BeTrue(),
			"no BottlerocketNode for a node that does not run Bottlerocket")

		By("deleting the BottlerocketNode of a deleted Node (no garbage collector runs here)")
		Expect(k8s.Delete(ctx, getNode(Default, current))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: current}, &v1alpha1.BottlerocketNode{}))
		}).Should(BeTrue())
	})

	It("recreates a BottlerocketNode deleted by hand at once, not at the Node's next change", func(ctx SpecContext) {
		f := newFleet()
		name := f.addNode("br", osImage)
		var first *v1alpha1.BottlerocketNode
		Eventually(func(g Gomega) { first = getBRN(g, name) }).Should(Succeed())
		Expect(k8s.Delete(ctx, first)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(getBRN(g, name).UID).NotTo(Equal(first.UID))
		}).Should(Succeed(), "recreated while the Node stays as it was")
	})

	It("removes the BottlerocketNode of a Node that went while the controller was away", func(ctx SpecContext) {
		f := newFleet()
		// As the controller left it: a node idle under no policy, whose Node is gone since.
		brn := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: f.name("gone")}, Spec: v1alpha1.BottlerocketNodeSpec{Action: v1alpha1.ActionNone}}
		Expect(k8s.Create(ctx, brn)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(brn), &v1alpha1.BottlerocketNode{}))
		}).Should(BeTrue())
	})

	It("removes the owner reference to its Node an earlier release gave a BottlerocketNode", func(ctx SpecContext) {
		f := newFleet()
		name := f.addNode("br", osImage)
		node := getNode(Default, name)
		Eventually(func(g Gomega) {
			brn := getBRN(g, name)
			brn.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: node.UID}}
			g.Expect(k8s.Update(ctx, brn)).To(Succeed())
		}).Should(Succeed())
		// The Node's next change (here a label of someone's) makes discovery look at it again.
		patch := client.MergeFrom(node.DeepCopy())
		node.Labels["team"] = "payments"
		Expect(k8s.Patch(ctx, node, patch)).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(getBRN(g, name).OwnerReferences).To(BeEmpty()) }).Should(Succeed())
	})
})
