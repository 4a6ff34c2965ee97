package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// gather observes what the planner asks for (planner.Probes) and puts it in the input: an
// eviction pass for each Draining node (after cordoning it: the Draining phase applied), the
// pods and budgets of each node being verified or stabilized. A node whose evidence could not
// be gathered gets none (the planner keeps it waiting, within its deadline); the others get
// theirs, and the errors come back joined.
func (r *RolloutReconciler) gather(ctx context.Context, in *planner.Input) error {
	var errs []error
	for _, p := range planner.Probes(*in) {
		ns := &in.Nodes[p.Index]
		nodeCtx := log.IntoContext(ctx, log.FromContext(ctx).WithValues("node", ns.Node.Name))
		ev, err := r.probe(nodeCtx, ns.Node, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", ns.Node.Name, err))
		}
		ns.Evidence = ev
	}
	return errors.Join(errs...)
}

// probe gathers one node's evidence.
func (r *RolloutReconciler) probe(ctx context.Context, node *corev1.Node, p planner.Probe) (*planner.Evidence, error) {
	ev := &planner.Evidence{}
	if p.Drain != nil {
		if err := r.cordon(ctx, node); err != nil {
			return ev, err
		}
		res, err := r.evictPass(ctx, node, *p.Drain)
		if err != nil {
			return ev, err
		}
		ev.Drain = &res
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
