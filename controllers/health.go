package controllers

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// check is the outcome of one health check: empty when healthy, else why not.
type check struct {
	reason  v1alpha1.Reason
	message string
}

func (c check) ok() bool { return c.reason == "" }

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

func podReady(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded {
		return true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func ownedByDaemonSet(pod *corev1.Pod) bool {
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.Kind == "DaemonSet"
}

// verify is the gate out of Verifying: the Node is Ready, the agent reports the target
// running, and the node's DaemonSet pods are Ready.
func (r *RolloutReconciler) verify(ctx context.Context, node *corev1.Node, brn *v1alpha1.BottlerocketNode) (check, error) {
	if !kubeutil.NodeReady(node) {
		return check{v1alpha1.ReasonNodeNotReady, "waiting for the Node to be Ready"}, nil
	}
	if a := brn.Status.Agent; a == nil || a.CurrentVersion != brn.Spec.TargetVersion {
		running := ""
		if a != nil {
			running = a.CurrentVersion
		}
		return check{v1alpha1.ReasonWrongVersion, fmt.Sprintf("the agent reports %q running, waiting for %s", running, brn.Spec.TargetVersion)}, nil
	}
	pods, err := r.podsOn(ctx, node.Name)
	if err != nil {
		return check{}, err
	}
	for i := range pods {
		if ownedByDaemonSet(&pods[i]) && !podReady(&pods[i]) {
			return check{v1alpha1.ReasonDaemonSetsNotReady, fmt.Sprintf("DaemonSet pod %s/%s is not Ready", pods[i].Namespace, pods[i].Name)}, nil
		}
	}
	return check{}, nil
}

// stable is the gate out of Stabilizing: the node is Ready, its pods are Ready, no pod the
// policy calls blocking is on it, and the PodDisruptionBudgets of the pods evicted from it are
// back to their desired healthy count.
func (r *RolloutReconciler) stable(ctx context.Context, node *corev1.Node, brn *v1alpha1.BottlerocketNode, health v1alpha1.HealthSpec) (check, error) {
	if !kubeutil.NodeReady(node) {
		return check{v1alpha1.ReasonNodeNotReady, "the Node is not Ready"}, nil
	}
	blocking := labels.Nothing()
	if health.BlockingPodSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(health.BlockingPodSelector)
		if err != nil {
			return check{}, fmt.Errorf("health.blockingPodSelector: %w", err)
		}
		blocking = sel
	}
	pods, err := r.podsOn(ctx, node.Name)
	if err != nil {
		return check{}, err
	}
	for i := range pods {
		p := &pods[i]
		if blocking.Matches(labels.Set(p.Labels)) {
			return check{v1alpha1.ReasonBlockingPod, fmt.Sprintf("blocking pod %s/%s is on the node", p.Namespace, p.Name)}, nil
		}
		if !podReady(p) {
			return check{v1alpha1.ReasonPodsNotReady, fmt.Sprintf("pod %s/%s is not Ready", p.Namespace, p.Name)}, nil
		}
	}
	for _, key := range evictedPDBs(brn) {
		ns, name, _ := strings.Cut(key, "/")
		var pdb policyv1.PodDisruptionBudget
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pdb); err != nil {
			if apierrors.IsNotFound(err) {
				continue // gone with its workload
			}
			return check{}, fmt.Errorf("reading PodDisruptionBudget %s: %w", key, err)
		}
		if pdb.Status.ObservedGeneration < pdb.Generation || pdb.Status.CurrentHealthy < pdb.Status.DesiredHealthy {
			return check{v1alpha1.ReasonPDBUnhealthy, fmt.Sprintf("PodDisruptionBudget %s has %d healthy pods of %d desired",
				key, pdb.Status.CurrentHealthy, pdb.Status.DesiredHealthy)}, nil
		}
	}
	return check{}, nil
}
