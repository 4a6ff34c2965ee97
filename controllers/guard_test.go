package controllers

import (
	"maps"
	"testing"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// TestAutoscalerGuard checks that the operator sets only the autoscaler annotations a Node
// lacks, never overwrites an owner's value, and removes only what it recorded as its own.
func TestAutoscalerGuard(t *testing.T) {
	const karpenter, ca, guard = v1alpha1.AnnotationKarpenterDoNotDisrupt, v1alpha1.AnnotationClusterAutoscalerScaleDownDisabled, v1alpha1.AnnotationAutoscalerGuard
	tests := []struct {
		name           string
		owner, guarded map[string]string
	}{
		{"none of the owner's", map[string]string{}, map[string]string{karpenter: "true", ca: "true", guard: karpenter + "," + ca}},
		{"the owner's scale-down-disabled", map[string]string{ca: "false"}, map[string]string{karpenter: "true", ca: "false", guard: karpenter}},
		{"the owner's do-not-disrupt", map[string]string{karpenter: "true"}, map[string]string{karpenter: "true", ca: "true", guard: ca}},
		{"both of the owner's", map[string]string{karpenter: "true", ca: "true"}, map[string]string{karpenter: "true", ca: "true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ann := maps.Clone(tt.owner)
			addGuard(ann)
			if !maps.Equal(ann, tt.guarded) {
				t.Fatalf("guarded: %v, want %v", ann, tt.guarded)
			}
			if addGuard(ann) {
				t.Errorf("a second guard changed the node")
			}
			removeGuard(ann)
			if !maps.Equal(ann, tt.owner) {
				t.Errorf("released: %v, want the owner's %v", ann, tt.owner)
			}
		})
	}
	legacy := map[string]string{karpenter: "true", ca: "true", guard: FieldManager}
	removeGuard(legacy)
	if len(legacy) != 0 {
		t.Errorf("a guard recorded by the field manager's name left %v", legacy)
	}
}
