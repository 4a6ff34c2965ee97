package controllers

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/kubectl/pkg/drain"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// cordon records that the operator cordons the node, cordons it, and asks autoscalers to
// leave it alone, in one patch. A node somebody else cordoned stays theirs: it is not recorded
// as ours, so it is never uncordoned by us. Autoscaler annotations somebody else set are
// likewise left to them.
func (r *RolloutReconciler) cordon(ctx context.Context, node *corev1.Node) error {
	_, guarded := node.Annotations[v1alpha1.AnnotationKarpenterDoNotDisrupt]
	if node.Spec.Unschedulable && guarded {
		return nil
	}
	patch := client.MergeFrom(node.DeepCopy())
	if node.Annotations == nil {
		node.Annotations = map[string]string{}
	}
	if !node.Spec.Unschedulable {
		node.Annotations[v1alpha1.AnnotationCordonedBy] = FieldManager
		node.Spec.Unschedulable = true
	}
	if !guarded {
		node.Annotations[v1alpha1.AnnotationAutoscalerGuard] = FieldManager
		node.Annotations[v1alpha1.AnnotationKarpenterDoNotDisrupt] = "true"
		node.Annotations[v1alpha1.AnnotationClusterAutoscalerScaleDownDisabled] = "true"
	}
	if err := r.Client.Patch(ctx, node, patch, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("cordoning Node %s: %w", node.Name, err)
	}
	return nil
}

// release uncordons the node if, and only if, the operator cordoned it, and unless keepGuard
// removes the autoscaler annotations the operator set. It reports whether it changed anything.
func (r *RolloutReconciler) release(ctx context.Context, node *corev1.Node, keepGuard bool) (bool, error) {
	_, cordoned := node.Annotations[v1alpha1.AnnotationCordonedBy]
	_, guarded := node.Annotations[v1alpha1.AnnotationAutoscalerGuard]
	dropGuard := guarded && !keepGuard
	if !cordoned && !dropGuard {
		return false, nil
	}
	patch := client.MergeFrom(node.DeepCopy())
	if cordoned {
		node.Spec.Unschedulable = false
		delete(node.Annotations, v1alpha1.AnnotationCordonedBy)
	}
	if dropGuard {
		delete(node.Annotations, v1alpha1.AnnotationAutoscalerGuard)
		delete(node.Annotations, v1alpha1.AnnotationKarpenterDoNotDisrupt)
		delete(node.Annotations, v1alpha1.AnnotationClusterAutoscalerScaleDownDisabled)
	}
	if err := r.Client.Patch(ctx, node, patch, client.FieldOwner(FieldManager)); err != nil {
		return false, fmt.Errorf("releasing Node %s: %w", node.Name, err)
	}
	return true, nil
}

// drainResult is the outcome of one eviction pass.
type drainResult struct {
	// remaining counts the pods still to go.
	remaining int
	// reason and message say what holds the drain up, when something does.
	reason  v1alpha1.Reason
	message string
	// pdbs are the PodDisruptionBudgets of the pods evicted in this pass ("namespace/name"):
	// they must be healthy again before the node counts as Updated.
	pdbs []string
}

// evictPass makes one eviction pass over the node's pods, through the Eviction API so that
// PodDisruptionBudgets hold. It never waits: the reconcile comes back for the next pass.
func (r *RolloutReconciler) evictPass(ctx context.Context, node *corev1.Node, spec v1alpha1.DrainSpec, capacity bool) (drainResult, error) {
	h := &drain.Helper{
		Ctx:                 ctx,
		Client:              r.Kube,
		Force:               true, // pods without a controller die with the reboot anyway
		IgnoreAllDaemonSets: true,
		DeleteEmptyDirData:  spec.DeleteEmptyDirData == nil || *spec.DeleteEmptyDirData,
		GracePeriodSeconds:  -1,
		Out:                 io.Discard,
		ErrOut:              io.Discard,
		AdditionalFilters:   []drain.PodFilter{r.skipOperatorPods},
	}
	if spec.GracePeriodSeconds != nil {
		h.GracePeriodSeconds = int(*spec.GracePeriodSeconds)
	}
	if spec.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(spec.PodSelector)
		if err != nil {
			return drainResult{}, fmt.Errorf("drain.podSelector: %w", err)
		}
		h.PodSelector = sel.String()
	}
	list, errs := h.GetPodsForDeletion(node.Name)
	if len(errs) > 0 {
		return drainResult{}, fmt.Errorf("listing the pods of Node %s: %v", node.Name, errs)
	}
	pods := list.Pods()
	res := drainResult{remaining: len(pods)}
	if len(pods) > 0 && !capacity {
		res.reason = v1alpha1.ReasonNoCapacity
		res.message = "no other node can take the evicted pods (every other node is cordoned or not Ready); drain.onTimeout decides at the deadline"
	}
	for i := range pods {
		pod := &pods[i]
		if !pod.DeletionTimestamp.IsZero() {
			continue // going already
		}
		err := h.EvictPod(*pod, policyv1.SchemeGroupVersion)
		switch {
		case err == nil:
			res.pdbs = append(res.pdbs, r.pdbsOf(ctx, pod)...)
		case apierrors.IsNotFound(err):
		case apierrors.IsTooManyRequests(err):
			if res.reason == "" {
				res.reason = v1alpha1.ReasonEvictionBlocked
				res.message = fmt.Sprintf("eviction of pod %s/%s refused: it would violate PodDisruptionBudget %s",
					pod.Namespace, pod.Name, describePDBs(r.pdbsOf(ctx, pod)))
			}
		case apierrors.IsInternalError(err) && strings.Contains(err.Error(), "more than one PodDisruptionBudget"):
			res.reason = v1alpha1.ReasonMultiplePDBs
			res.message = fmt.Sprintf("pod %s/%s is covered by more than one PodDisruptionBudget (%s); the API server refuses to evict it",
				pod.Namespace, pod.Name, describePDBs(r.pdbsOf(ctx, pod)))
		default:
			return res, fmt.Errorf("evicting pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	return res, nil
}

// skipOperatorPods keeps the operator's own pods: the controller resumes after the reboot.
func (r *RolloutReconciler) skipOperatorPods(pod corev1.Pod) drain.PodDeleteStatus {
	if r.OperatorNamespace != "" && pod.Namespace == r.OperatorNamespace {
		return drain.MakePodDeleteStatusSkip()
	}
	return drain.MakePodDeleteStatusOkay()
}

// pdbsOf names ("namespace/name") the PodDisruptionBudgets that select a pod.
func (r *RolloutReconciler) pdbsOf(ctx context.Context, pod *corev1.Pod) []string {
	var pdbs policyv1.PodDisruptionBudgetList
	if err := r.APIReader.List(ctx, &pdbs, client.InNamespace(pod.Namespace)); err != nil {
		log.FromContext(ctx).Error(err, "Listing PodDisruptionBudgets", "namespace", pod.Namespace)
		return nil
	}
	var names []string
	for i := range pdbs.Items {
		sel, err := metav1.LabelSelectorAsSelector(pdbs.Items[i].Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) {
			names = append(names, pdbs.Items[i].Namespace+"/"+pdbs.Items[i].Name)
		}
	}
	return names
}

func describePDBs(names []string) string {
	if len(names) == 0 {
		return "(none found)"
	}
	return strings.Join(names, ", ")
}
