// Package controllers holds the cluster-wide controller: it discovers Bottlerocket nodes,
// evaluates UpdatePolicies through the planner, and turns decisions into intents, drains and
// health checks. The RBAC markers below are the controller's whole role. It writes with
// patches only (merge patch or server-side apply), never update; the one update verb is on
// updatepolicies/finalizers, which the API server asks of whoever sets a finalizer.
package controllers

// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=updatepolicies,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=updatepolicies/status,verbs=get;patch
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=updatepolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=bottlerocketnodes,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=bottlerocketnodes/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;patch
// Pods are not deleted but by eviction. Completing an eviction the API server granted but did
// not carry out needs pods' delete too: an opt-in role, config/rbac/complete-evictions.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// The metrics endpoint asks the API server who a client is and whether it may read /metrics.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
