package planner

import (
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// Evidence is what the controller observed this pass about a node in flight, beyond its Node
// and its BottlerocketNode (which are in NodeState already). A missing part means "not
// observed this pass": the node keeps its phase and is looked at again soon.
type Evidence struct {
	// Drain is the outcome of the eviction pass the controller made on a Draining node.
	Drain *DrainEvidence
	// Pods are the pods bound to the node, read this pass; nil unless PodsRead.
	Pods     []corev1.Pod
	PodsRead bool
	// PDBs are the PodDisruptionBudgets the probe asked for (status.evictedPDBs), by
	// "namespace/name", as read this pass; a name without an entry no longer exists.
	PDBs map[string]*policyv1.PodDisruptionBudget
}

// DrainEvidence is the outcome of one eviction pass. A pass that failed is evidence too: a
// pod it could not evict is left (Blocked says why), and a pass that could not even list the
// node's pods is Incomplete; either way the drain's deadline applies.
type DrainEvidence struct {
	// Remaining counts the pods still to go (evicted but not yet gone, and refused, included).
	Remaining int
	// Incomplete is set when the pass could not cordon the node or list its pods: what
	// remains is not known, and the node is not drained. Blocked and Message say why.
	Incomplete bool
	// Blocked and Message say what refused an eviction (EvictionBlockedByPDB, MultiplePDBs,
	// DrainRefused), naming the pod; empty when nothing did.
	Blocked v1alpha1.Reason
	Message string
	// EvictedPDBs are the PodDisruptionBudgets ("namespace/name") of the pods evicted in the
	// pass.
	EvictedPDBs []string
}

// Probe is what the controller must observe of one node before Compute can move it on.
type Probe struct {
	// Index is the node's index in Input.Nodes.
	Index int
	// Drain, when set, asks for one eviction pass under these rules: the node is Draining
	// (the controller cordons it first: that is the Draining phase applied).
	Drain *v1alpha1.DrainSpec
	// Pods asks for the pods bound to the node.
	Pods bool
	// PDBs names the PodDisruptionBudgets to read ("namespace/name").
	PDBs []string
}

// Probes lists what the controller must observe this pass: an eviction pass for every
// governed Draining node, the pods of every node being verified (once it is Ready on the
// target) or stabilized (once it is Ready), and the budgets it evicted from. Nodes not
// governed any more are not probed: the plan releases them.
func Probes(in Input) []Probe {
	passes := preparePolicies(&in) // selectors only: no node is observed
	idx := newSelectorIndex(passes)
	var probes []Probe
	for i, ns := range in.Nodes {
		brn := ns.BRN
		if brn == nil || !brn.Status.Phase.Unavailable() {
			continue
		}
		j := idx.governor(ns.Node)
		if j < 0 {
			continue
		}
		ready := kubeutil.NodeReady(ns.Node)
		switch brn.Status.Phase {
		case v1alpha1.PhaseDraining:
			probes = append(probes, Probe{Index: i, Drain: &passes[j].spec.Drain})
		case v1alpha1.PhaseVerifying:
			if ready && rebootFailure(brn) == nil && runsTarget(brn).ok() { // verify's gates before the pods
				probes = append(probes, Probe{Index: i, Pods: true})
			}
		case v1alpha1.PhaseStabilizing:
			if ready {
				probes = append(probes, Probe{Index: i, Pods: true, PDBs: brn.Status.EvictedPDBs})
			}
		}
	}
	return probes
}
