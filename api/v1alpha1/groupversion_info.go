// Package v1alpha1 contains the API of the Bottlerocket update operator: UpdatePolicy (what the
// operator should do) and BottlerocketNode (one per node: the controller's intent, the agent's
// report and the controller's view). The node lifecycle contract that the planner, the
// controller, the agent and the end-to-end tests implement is written down in lifecycle.go.
//
// +kubebuilder:object:generate=true
// +groupName=updates.bottlerocket.aws
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "updates.bottlerocket.aws", Version: "v1alpha1"}

	// SchemeBuilder registers this API's types with a scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
