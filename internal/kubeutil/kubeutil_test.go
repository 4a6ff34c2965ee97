package kubeutil

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestNodeAvailability(t *testing.T) {
	withReady := func(s corev1.ConditionStatus) []corev1.NodeCondition {
		return []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue}, {Type: corev1.NodeReady, Status: s}}
	}
	for _, tt := range []struct {
		name           string
		node           corev1.Node
		ready, unavail bool
	}{
		{"Ready", corev1.Node{Status: corev1.NodeStatus{Conditions: withReady(corev1.ConditionTrue)}}, true, false},
		{"NotReady", corev1.Node{Status: corev1.NodeStatus{Conditions: withReady(corev1.ConditionFalse)}}, false, true},
		{"Unknown", corev1.Node{Status: corev1.NodeStatus{Conditions: withReady(corev1.ConditionUnknown)}}, false, true},
		{"no Ready condition yet", corev1.Node{}, false, true},
		{"Ready but cordoned", corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}, Status: corev1.NodeStatus{Conditions: withReady(corev1.ConditionTrue)}}, true, true},
	} {
		if got := NodeReady(&tt.node); got != tt.ready {
			t.Errorf("%s: NodeReady = %v, want %v", tt.name, got, tt.ready)
		}
		if got := NodeUnavailable(&tt.node); got != tt.unavail {
			t.Errorf("%s: NodeUnavailable = %v, want %v", tt.name, got, tt.unavail)
		}
	}
}
