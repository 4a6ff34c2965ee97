// Package v1alpha1 contains the API of the Bottlerocket update operator: UpdatePolicy (what the
// operator should do) and BottlerocketNode (one per node: the controller's intent, the agent's
// report and the controller's view). The node lifecycle contract that the planner, the
// controller, the agent and the end-to-end tests implement is written down in lifecycle.go.
//
// +kubebuilder:object:generate=true
// +groupName=updates.bottlerocket.aws
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "updates.bottlerocket.aws", Version: "v1alpha1"}

	// SchemeBuilder registers this API's types with a scheme. It is apimachinery's builder:
	// an API package depends on apimachinery alone, not on controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the API's kinds and the group version's meta types (options,
// watch events) with s.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&UpdatePolicy{}, &UpdatePolicyList{},
		&BottlerocketNode{}, &BottlerocketNodeList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
