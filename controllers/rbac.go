// Package controllers holds the cluster-wide controller: it discovers Bottlerocket nodes,
// evaluates UpdatePolicies through the planner, and turns decisions into intents, drains and
// health checks. The RBAC markers below are the controller's whole role.
package controllers

// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=updatepolicies,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=updatepolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=updatepolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=bottlerocketnodes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=updates.bottlerocket.aws,resources=bottlerocketnodes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;update;patch
// Pods are deleted only to complete an eviction the API server granted but did not carry out.
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;delete
// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create
// +kubebuilder:rbac:groups=apps,resources=daemonsets,verbs=get
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
