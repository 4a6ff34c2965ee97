// Package agent holds the per-node agent: it reads its own node's BottlerocketNode, carries out
// the controller's intent on the host through the host's update API, and reports what is true
// in status.agent (by server-side apply: a patch). The RBAC markers below are the agent's whole role; an admission policy
// further confines each agent to its own node's object.
package agent

// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=bottlerocketnodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=bottlerocketnodes/status,verbs=patch
// The metrics endpoint asks the API server who a client is and whether it may read /metrics.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
