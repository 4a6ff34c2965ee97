package controllers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// cordon records that the operator cordons the node, cordons it, and asks autoscalers to
// leave it alone, in one patch. A node somebody else cordoned stays theirs: it is not recorded
// as ours, so it is never uncordoned by us. Autoscaler annotations somebody else set are
// likewise left to them: the operator sets only those the node lacks, and records which.
func (r *RolloutReconciler) cordon(ctx context.Context, cached *corev1.Node) error {
	orig, node := cached, cached.DeepCopy() // the pass's Nodes are the cache's own: see read
	if node.Annotations == nil {
		node.Annotations = map[string]string{}
	}
	changed := addGuard(node.Annotations)
	if !node.Spec.Unschedulable {
		node.Annotations[v1alpha1.AnnotationCordonedBy] = FieldManager
		node.Spec.Unschedulable = true
		changed = true
	}
	if !changed {
		return nil
	}
	if err := r.Client.Patch(ctx, node, client.MergeFrom(orig), client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("cordoning Node %s: %w", node.Name, err)
	}
	return nil
}

// release uncordons the node if, and only if, the operator cordoned it, and unless keepGuard
// removes the autoscaler annotations the operator set. It reports whether it changed anything.
func (r *RolloutReconciler) release(ctx context.Context, cached *corev1.Node, keepGuard bool) (bool, error) {
	_, cordoned := cached.Annotations[v1alpha1.AnnotationCordonedBy]
	_, guarded := cached.Annotations[v1alpha1.AnnotationAutoscalerGuard]
	dropGuard := guarded && !keepGuard
	if !cordoned && !dropGuard {
		return false, nil
	}
	patch, node := client.MergeFrom(cached), cached.DeepCopy() // the cache's own: see read
	if cordoned {
		node.Spec.Unschedulable = false
		delete(node.Annotations, v1alpha1.AnnotationCordonedBy)
	}
	if dropGuard {
		removeGuard(node.Annotations)
	}
	if err := r.Client.Patch(ctx, node, patch, client.FieldOwner(FieldManager)); err != nil {
		return false, fmt.Errorf("releasing Node %s: %w", node.Name, err)
	}
	return true, nil
}

// guardAnnotations are the autoscaler annotations that keep a node being updated.
var guardAnnotations = []string{v1alpha1.AnnotationKarpenterDoNotDisrupt, v1alpha1.AnnotationClusterAutoscalerScaleDownDisabled}

// addGuard sets the autoscaler annotations the node lacks and adds them to the list in
// AnnotationAutoscalerGuard; one already there, set by anybody else, is left as it is. It
// reports whether it changed anything.
func addGuard(ann map[string]string) bool {
	ours := guardSetByUs(ann)
	changed := false
	for _, a := range guardAnnotations {
		if _, ok := ann[a]; ok {
			continue
		}
		ann[a] = "true"
		ours = append(ours, a)
		changed = true
	}
	if changed {
		ann[v1alpha1.AnnotationAutoscalerGuard] = strings.Join(ours, ",")
	}
	return changed
}

// removeGuard removes the autoscaler annotations the operator set, and its record of them.
func removeGuard(ann map[string]string) {
	for _, a := range guardSetByUs(ann) {
		delete(ann, a)
	}
	delete(ann, v1alpha1.AnnotationAutoscalerGuard)
}

// guardSetByUs lists the autoscaler annotations AnnotationAutoscalerGuard records as set by the
// operator. A record from before the list (the field manager's name) stands for both, which
// that version always set.
func guardSetByUs(ann map[string]string) []string {
	v, ok := ann[v1alpha1.AnnotationAutoscalerGuard]
	if !ok {
		return nil
	}
	if v == FieldManager {
		return slices.Clone(guardAnnotations)
	}
	var ours []string
	for _, a := range strings.Split(v, ",") {
		if slices.Contains(guardAnnotations, a) && !slices.Contains(ours, a) {
			ours = append(ours, a)
		}
	}
	return ours
}

// evictPass makes one eviction pass over the node's pods, through the Eviction API so that
// PodDisruptionBudgets hold. It never waits: the reconcile comes back for the next pass. What
// the pass cannot do is evidence too: a pod it may not or cannot evict is left, named with
// the reason (DrainRefused), and a pass that cannot list the pods is Incomplete; either way
// the planner applies drain.timeout and drain.onTimeout.
func (r *RolloutReconciler) evictPass(ctx context.Context, node *corev1.Node, spec v1alpha1.DrainSpec) planner.DrainEvidence {
	var res planner.DrainEvidence
	h, err := r.drainer(ctx, spec, &res)
	if err != nil {
		return incomplete(ctx, err)
	}
	list, errs := h.GetPodsForDeletion(node.Name)
	if list == nil {
		return incomplete(ctx, fmt.Errorf("listing the pods of Node %s: %w", node.Name, errors.Join(errs...)))
	}
	for _, err := range errs { // pods kubectl's rules refuse (a failed DaemonSet lookup); each error names its pods
		res.Remaining++
		refuse(&res, v1alpha1.ReasonDrainRefused, err.Error())
	}
	pods := list.Pods()
	res.Remaining += len(pods)
	for i := range pods {
		if pod := &pods[i]; pod.DeletionTimestamp.IsZero() { // else going already
			r.evict(ctx, h, pod, &res)
		}
	}
	return res
}

// incomplete is the evidence of a pass that could not cordon the node or list its pods; the
// error is logged (the logger carries the node).
func incomplete(ctx context.Context, err error) planner.DrainEvidence {
	log.FromContext(ctx).Error(err, "The eviction pass cannot go on; the drain waits, within drain.timeout")
	return planner.DrainEvidence{Incomplete: true, Blocked: v1alpha1.ReasonDrainRefused, Message: err.Error()}
}

// refuse records what refused an eviction. A refusal that waiting does not end (MultiplePDBs,
// DrainRefused) is said over a budget's, which does; otherwise the first one is kept.
func refuse(res *planner.DrainEvidence, reason v1alpha1.Reason, message string) {
	if res.Blocked == "" || (res.Blocked == v1alpha1.ReasonEvictionBlocked && reason != v1alpha1.ReasonEvictionBlocked) {
		res.Blocked, res.Message = reason, message
	}
}

// drainer is kubectl's drain helper set up with the policy's drain rules; the pods the rules
// refuse to evict are recorded in res as left, named, with why.
func (r *RolloutReconciler) drainer(ctx context.Context, spec v1alpha1.DrainSpec, res *planner.DrainEvidence) (*drain.Helper, error) {
	left := func(pod *corev1.Pod, why string) {
		res.Remaining++
		refuse(res, v1alpha1.ReasonDrainRefused, fmt.Sprintf("pod %s/%s is not evicted: it %s", pod.Namespace, pod.Name, why))
	}
	return drainHelper(ctx, r.Kube, spec, left, r.skipOperatorPods)
}

// RefusedPod is a pod a drain refuses to evict and leaves on the node, and why: the drain
// does not finish while it is there, and drain.onTimeout applies at drain.timeout.
type RefusedPod struct {
	Pod corev1.Pod
	// Why completes "pod NAMESPACE/NAME ...": "has emptyDir data and drain.deleteEmptyDirData is false".
	Why string
}

// PodsToEvict lists the pods a drain of the node under spec would evict now, and those it
// would refuse to evict, with why, by the controller's own rules (the same helper and filters
// its eviction passes use). The operator's own pods, which the controller leaves alone, are
// not told apart.
func PodsToEvict(ctx context.Context, kube kubernetes.Interface, node string, spec v1alpha1.DrainSpec) ([]corev1.Pod, []RefusedPod, error) {
	var refused []RefusedPod
	h, err := drainHelper(ctx, kube, spec, func(pod *corev1.Pod, why string) {
		refused = append(refused, RefusedPod{Pod: *pod, Why: why})
	})
	if err != nil {
		return nil, nil, err
	}
	list, errs := h.GetPodsForDeletion(node)
	if list == nil {
		return nil, nil, fmt.Errorf("listing the pods of Node %s: %w", node, errors.Join(errs...))
	}
	return list.Pods(), refused, nil
}

// drainHelper is kubectl's drain helper set up with the policy's drain rules and filters;
// left is told of each pod the rules refuse to evict, and why.
func drainHelper(ctx context.Context, kube kubernetes.Interface, spec v1alpha1.DrainSpec, left func(pod *corev1.Pod, why string), filters ...drain.PodFilter) (*drain.Helper, error) {
	h := &drain.Helper{
		Ctx:                 ctx,
		Client:              kube,
		Force:               true, // pods without a controller die with the reboot anyway
		IgnoreAllDaemonSets: true,
		DeleteEmptyDirData:  true, // refused, if the policy says so, by refuseLocalData: a pod left, not an error
		GracePeriodSeconds:  -1,
		Out:                 io.Discard,
		ErrOut:              io.Discard,
		AdditionalFilters:   filters,
	}
	if spec.DeleteEmptyDirData != nil && !*spec.DeleteEmptyDirData {
		h.AdditionalFilters = append(h.AdditionalFilters, refuseLocalData(left))
	}
	if spec.GracePeriodSeconds != nil {
		h.GracePeriodSeconds = int(*spec.GracePeriodSeconds)
	}
	if spec.PodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(spec.PodSelector)
		if err != nil {
			return nil, fmt.Errorf("drain.podSelector: %w", err)
		}
		h.PodSelector = sel.String()
	}
	return h, nil
}

// refuseLocalData keeps a running pod with emptyDir volumes from being evicted (its data would
// be lost) under drain.deleteEmptyDirData: false, and tells left of it, with why. A finished
// pod or one being deleted goes all the same, as kubectl drain has it.
func refuseLocalData(left func(pod *corev1.Pod, why string)) drain.PodFilter {
	return func(pod corev1.Pod) drain.PodDeleteStatus {
		finished := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
		if finished || pod.DeletionTimestamp != nil || !hasEmptyDir(&pod) {
			return drain.MakePodDeleteStatusOkay()
		}
		left(&pod, "has emptyDir data and drain.deleteEmptyDirData is false")
		return drain.MakePodDeleteStatusSkip()
	}
}

func hasEmptyDir(pod *corev1.Pod) bool {
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir != nil {
			return true
		}
	}
	return false
}

// evict asks the API server to evict one pod and records in res the budgets it was evicted
// from, or what refused it.
func (r *RolloutReconciler) evict(ctx context.Context, h *drain.Helper, pod *corev1.Pod, res *planner.DrainEvidence) {
	err := h.EvictPod(*pod, policyv1.SchemeGroupVersion)
	switch {
	case err == nil:
		res.EvictedPDBs = append(res.EvictedPDBs, pdbNames(r.pdbsOf(ctx, pod))...)
	case apierrors.IsNotFound(err):
	case apierrors.IsTooManyRequests(err):
		r.budgetRefused(ctx, h, pod, res)
	case apierrors.IsInternalError(err) && strings.Contains(err.Error(), "more than one PodDisruptionBudget"):
		refuse(res, v1alpha1.ReasonMultiplePDBs, fmt.Sprintf("pod %s/%s is covered by more than one PodDisruptionBudget (%s); the API server refuses to evict it",
			pod.Namespace, pod.Name, describePDBs(pdbNames(r.pdbsOf(ctx, pod)))))
	default: // an admission webhook, the API server away: the pod is left, and says why
		refuse(res, v1alpha1.ReasonDrainRefused, fmt.Sprintf("eviction of pod %s/%s failed: %v", pod.Namespace, pod.Name, err))
	}
}

// budgetRefused handles an eviction a PodDisruptionBudget refused: it completes one the budget
// records as granted but that was not carried out, and otherwise records the refusal.
func (r *RolloutReconciler) budgetRefused(ctx context.Context, h *drain.Helper, pod *corev1.Pod, res *planner.DrainEvidence) {
	pdbs := r.pdbsOf(ctx, pod)
	granted := grantedEviction(pod, pdbs)
	if granted == "" {
		evictionsBlocked.Inc()
		refuse(res, v1alpha1.ReasonEvictionBlocked, fmt.Sprintf("eviction of pod %s/%s refused: it would violate PodDisruptionBudget %s",
			pod.Namespace, pod.Name, describePDBs(pdbNames(pdbs))))
		return
	}
	err := r.completeEviction(ctx, pod, h.GracePeriodSeconds, granted)
	switch {
	case err == nil:
		res.EvictedPDBs = append(res.EvictedPDBs, pdbNames(pdbs)...)
	case apierrors.IsForbidden(err): // the opt-in role is not granted: the budget lets the pod go in time
		evictionsBlocked.Inc()
		refuse(res, v1alpha1.ReasonEvictionBlocked, fmt.Sprintf("eviction of pod %s/%s was granted by PodDisruptionBudget %s but not carried out; "+
			"the budget refuses it until the disruption controller gives the disruption up (about 2 minutes), as the controller may not delete pods "+
			"to complete it (config/rbac/complete-evictions): %v", pod.Namespace, pod.Name, granted, err))
	default:
		res.EvictedPDBs = append(res.EvictedPDBs, pdbNames(pdbs)...)
		refuse(res, v1alpha1.ReasonDrainRefused, err.Error())
	}
}

// skipOperatorPods keeps the operator's own pods: the controller resumes after the reboot.
func (r *RolloutReconciler) skipOperatorPods(pod corev1.Pod) drain.PodDeleteStatus {
	if r.OperatorNamespace != "" && pod.Namespace == r.OperatorNamespace {
		return drain.MakePodDeleteStatusSkip()
	}
	return drain.MakePodDeleteStatusOkay()
}

// pdbsOf returns the PodDisruptionBudgets that select a pod, as the API server has them.
func (r *RolloutReconciler) pdbsOf(ctx context.Context, pod *corev1.Pod) []policyv1.PodDisruptionBudget {
	var pdbs policyv1.PodDisruptionBudgetList
	if err := r.APIReader.List(ctx, &pdbs, client.InNamespace(pod.Namespace)); err != nil {
		log.FromContext(ctx).Error(err, "Listing PodDisruptionBudgets", "namespace", pod.Namespace)
		return nil
	}
	return SelectingPDBs(pod, pdbs.Items)
}

// SelectingPDBs returns the PodDisruptionBudgets of pdbs that select the pod, as the API
// server's eviction matches them (same namespace, a non-empty selector matching its labels).
func SelectingPDBs(pod *corev1.Pod, pdbs []policyv1.PodDisruptionBudget) []policyv1.PodDisruptionBudget {
	var selecting []policyv1.PodDisruptionBudget
	for i := range pdbs {
		if pdbs[i].Namespace != pod.Namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdbs[i].Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) {
			selecting = append(selecting, pdbs[i])
		}
	}
	return selecting
}

// pdbNames names PodDisruptionBudgets "namespace/name".
func pdbNames(pdbs []policyv1.PodDisruptionBudget) []string {
	names := make([]string, len(pdbs))
	for i := range pdbs {
		names[i] = pdbs[i].Namespace + "/" + pdbs[i].Name
	}
	return names
}

// grantedEviction names the PodDisruptionBudget that records the pod's eviction as granted
// (status.disruptedPods, since the pod was created) although the pod is not being deleted, or
// returns "". The API server grants an eviction in the budget's status and then deletes the
// pod; if it fails in between (it crashed), the budget counts the pod disrupted and refuses
// every other eviction until the disruption controller gives up on it, minutes later.
func grantedEviction(pod *corev1.Pod, pdbs []policyv1.PodDisruptionBudget) string {
	if pod.DeletionTimestamp != nil {
		return ""
	}
	for i := range pdbs {
		if at, ok := pdbs[i].Status.DisruptedPods[pod.Name]; ok && !at.Before(&pod.CreationTimestamp) {
			return pdbs[i].Namespace + "/" + pdbs[i].Name
		}
	}
	return ""
}

// completeEviction deletes a pod whose eviction was granted but not carried out, as the
// eviction would have (same pod, same grace period): the budget has already counted it.
func (r *RolloutReconciler) completeEviction(ctx context.Context, pod *corev1.Pod, gracePeriod int, pdb string) error {
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}}
	if gracePeriod >= 0 {
		opts.GracePeriodSeconds = ptr.To(int64(gracePeriod))
	}
	err := r.Kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, opts)
	switch {
	case err == nil:
		log.FromContext(ctx).Info("Completed an eviction granted but not carried out", "pod", pod.Namespace+"/"+pod.Name,
			"podDisruptionBudget", pdb)
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err): // gone already, or another pod by now
	default:
		return fmt.Errorf("completing the granted eviction of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func describePDBs(names []string) string {
	if len(names) == 0 {
		return "(none found)"
	}
	return strings.Join(names, ", ")
}
