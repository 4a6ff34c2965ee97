package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// gather observes what the planner asks for (planner.Probes) and puts it in the input: an
// eviction pass for each Draining node (after cordoning it: the Draining phase applied), the
// pods and budgets of each node being verified or stabilized. What goes wrong is evidence
// too (a drain that cannot go on says why; pods that cannot be read keep the health gate
// shut), so one node's error costs no other node its decision, nor the pass its wake-up: it
// is logged with the node, not returned.
func (r *RolloutReconciler) gather(ctx context.Context, in *planner.Input) {
	for _, p := range planner.Probes(*in) {
		ns := &in.Nodes[p.Index]
		nodeCtx := log.IntoContext(ctx, log.FromContext(ctx).WithValues("node", ns.Node.Name))
		ev, err := r.probe(nodeCtx, ns.Node, p)
		if err != nil {
			log.FromContext(nodeCtx).Error(err, "Observing the node; its health gate waits")
		}
		ns.Evidence = ev
	}
}

// probe gathers one node's evidence. An eviction pass always has an outcome; reading pods
// or budgets may fail, and then the evidence says they were not read.
func (r *RolloutReconciler) probe(ctx context.Context, node *corev1.Node, p planner.Probe) (*planner.Evidence, error) {
	ev := &planner.Evidence{}
	if p.Drain != nil {
		ev.Drain = r.drainPass(ctx, node, *p.Drain)
	}
	if p.Pods {
		pods, err := r.podsOn(ctx, node.Name)
		if err != nil {
			return ev, err
		}
		pdbs, err := r.readPDBs(ctx, p.PDBs)
		if err != nil {
			return ev, err
		}
		ev.Pods, ev.PDBs, ev.PodsRead = pods, pdbs, true
	}
	return ev, nil
}

// drainPass cordons the node and makes one eviction pass. A node that cannot be cordoned is
// not drained: pods would come back.
func (r *RolloutReconciler) drainPass(ctx context.Context, node *corev1.Node, spec v1alpha1.DrainSpec) *planner.DrainEvidence {
	if err := r.cordon(ctx, node); err != nil {
		res := incomplete(ctx, err)
		return &res
	}
	res := r.evictPass(ctx, node, spec)
	if len(res.EvictedPDBs) > 0 || len(r.unrecorded[node.Name]) > 0 {
		if r.unrecorded == nil {
			r.unrecorded = map[string][]string{}
		}
		res.EvictedPDBs = slices.Compact(slices.Sorted(slices.Values(slices.Concat(r.unrecorded[node.Name], res.EvictedPDBs))))
		r.unrecorded[node.Name] = res.EvictedPDBs
	}
	return &res
}

// podsOn lists the pods on a node, straight from the API server: the controller keeps no
// cluster-wide pod cache, and asks only for nodes being verified or stabilized.
func (r *RolloutReconciler) podsOn(ctx context.Context, node string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.MatchingFieldsSelector{
		Selector: fields.OneTermEqualSelector("spec.nodeName", node)}); err != nil {
		return nil, fmt.Errorf("listing the pods of Node %s: %w", node, err)
	}
	return pods.Items, nil
}

// readPDBs reads the named PodDisruptionBudgets ("namespace/name"); those that no longer
// exist are left out.
func (r *RolloutReconciler) readPDBs(ctx context.Context, keys []string) (map[string]*policyv1.PodDisruptionBudget, error) {
	out := make(map[string]*policyv1.PodDisruptionBudget, len(keys))
	for _, key := range keys {
		ns, name, _ := strings.Cut(key, "/")
		var pdb policyv1.PodDisruptionBudget
		switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pdb); {
		case apierrors.IsNotFound(err): // gone with its workload
		case err != nil:
			return nil, fmt.Errorf("reading PodDisruptionBudget %s: %w", key, err)
		default:
			out[key] = &pdb
		}
	}
	return out, nil
}
