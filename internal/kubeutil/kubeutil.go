// Package kubeutil reads core Kubernetes objects the one way the controller, the planner, the
// independent checker and the harnesses all need: when a Node is Ready, and when it counts
// against a disruption budget.
package kubeutil

import corev1 "k8s.io/api/core/v1"

// NodeReady reports whether the Node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for i := range n.Status.Conditions {
		if c := &n.Status.Conditions[i]; c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// NodeUnavailable reports whether a Node counts against a disruption budget: cordoned or not
// Ready, whoever caused it.
func NodeUnavailable(n *corev1.Node) bool {
	return n.Spec.Unschedulable || !NodeReady(n)
}
