package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BottlerocketNodeSpec is the controller's intent for one node. Only the controller writes it.
//
// +kubebuilder:validation:XValidation:rule="!has(self.action) || self.action == 'None' || has(self.targetVersion)",message="targetVersion is required when action is Stage or Reboot"
type BottlerocketNodeSpec struct {
	// action is what the agent should do: None, Stage (download the target while workloads
	// run) or Reboot (activate the staged target and reboot).
	// +kubebuilder:default=None
	// +optional
	Action NodeAction `json:"action,omitempty"`

	// targetVersion is the exact version the node should run, never "latest".
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[0-9]+\.[0-9]+\.[0-9]+$`
	// +optional
	TargetVersion string `json:"targetVersion,omitempty"`

	// policy is the name of the UpdatePolicy governing the node; empty when none does.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Policy string `json:"policy,omitempty"`

	// refreshRequest, when it differs from status.agent.refreshRequest, asks the agent to
	// refresh the host's list of updates now and echo the value back.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	RefreshRequest string `json:"refreshRequest,omitempty"`
}

// HostUpdateState is the host's update state as its update API reports it.
// +kubebuilder:validation:Enum=Idle;Available;Staged;Ready;Unknown
type HostUpdateState string

const (
	HostStateIdle      HostUpdateState = "Idle"
	HostStateAvailable HostUpdateState = "Available"
	HostStateStaged    HostUpdateState = "Staged"
	HostStateReady     HostUpdateState = "Ready"
	// HostStateUnknown: the host has not reported an update status since it booted.
	HostStateUnknown HostUpdateState = "Unknown"
)

// ActionResult is the outcome of the agent's last action.
// +kubebuilder:validation:Enum=InProgress;Succeeded;Failed
type ActionResult string

const (
	ActionInProgress ActionResult = "InProgress"
	ActionSucceeded  ActionResult = "Succeeded"
	ActionFailed     ActionResult = "Failed"
)

// AgentAction is the agent's account of the last action it carried out.
//
// +kubebuilder:validation:XValidation:rule="self.result != 'Failed' || (has(self.message) && size(self.message) > 0)",message="a failed action carries a message"
type AgentAction struct {
	// action carried out.
	// +required
	Action NodeAction `json:"action"`
	// targetVersion it was carried out for.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	TargetVersion string `json:"targetVersion,omitempty"`
	// result of the action.
	// +required
	Result ActionResult `json:"result"`
	// reason is a machine-readable cause of a failure, such as StageFailed or BootFallback.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Reason Reason `json:"reason,omitempty"`
	// message is a human-readable account; on failure, the host's error text.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Message string `json:"message,omitempty"`
	// time the result was recorded.
	// +required
	Time metav1.Time `json:"time"`
}

// RebootRecord is what the agent recorded before rebooting its host, so that a boot-failure
// fallback is recognised after the reboot although the host's update status is lost.
type RebootRecord struct {
	// bootID of the host before the reboot.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	BootID string `json:"bootID"`
	// fromVersion is the version the host ran before the reboot.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	FromVersion string `json:"fromVersion"`
	// toVersion is the version the reboot was meant to bring.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	ToVersion string `json:"toVersion"`
	// time the record was written, before activating the target.
	// +required
	Time metav1.Time `json:"time"`
	// acceptedTime is when the host accepted the reboot (answered it). The host keeps running
	// its boot for a while after that; the agent does not ask again meanwhile.
	// +optional
	AcceptedTime *metav1.Time `json:"acceptedTime,omitempty"`
}

// HostUpdateSettings are a host's own update settings (settings.updates).
type HostUpdateSettings struct {
	// versionLock is "latest" or the version the host is pinned to.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	VersionLock string `json:"versionLock"`
	// ignoreWaves makes the host take a release before its wave reaches it.
	// +optional
	IgnoreWaves bool `json:"ignoreWaves,omitempty"`
}

// AgentStatus is what the agent reports about its host. Only the agent writes it.
type AgentStatus struct {
	// observedGeneration is the spec generation the agent last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// currentVersion is the Bottlerocket version the host runs.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[0-9]+\.[0-9]+\.[0-9]+$`
	// +optional
	CurrentVersion string `json:"currentVersion,omitempty"`
	// variant of the host, such as aws-k8s-1.31.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Variant string `json:"variant,omitempty"`
	// arch of the host, such as x86_64.
	// +kubebuilder:validation:MaxLength=16
	// +optional
	Arch string `json:"arch,omitempty"`
	// bootID of the host's current boot.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	BootID string `json:"bootID,omitempty"`
	// availableVersions the host's update repository offers, newest first.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:items:Pattern=`^[0-9]+\.[0-9]+\.[0-9]+$`
	// +listType=atomic
	// +optional
	AvailableVersions []string `json:"availableVersions,omitempty"`
	// updateState is the host's update state.
	// +optional
	UpdateState HostUpdateState `json:"updateState,omitempty"`
	// stagedVersion is the version written to the inactive partition, if any.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[0-9]+\.[0-9]+\.[0-9]+$`
	// +optional
	StagedVersion string `json:"stagedVersion,omitempty"`
	// lastAction is the last action the agent carried out and its result.
	// +optional
	LastAction *AgentAction `json:"lastAction,omitempty"`
	// rebootRecord is what the agent recorded before its last reboot.
	// +optional
	RebootRecord *RebootRecord `json:"rebootRecord,omitempty"`
	// ownerSettings are the host's own update settings, as the agent found them before it
	// first changed them for the operator; they are put back when the node is no longer
	// governed. Absent: the agent has not changed the host's settings.
	// +optional
	OwnerSettings *HostUpdateSettings `json:"ownerSettings,omitempty"`
	// refreshRequest echoes the spec.refreshRequest the agent last honoured.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	RefreshRequest string `json:"refreshRequest,omitempty"`
}

// BottlerocketNodeStatus is the agent's report (agent) and the controller's view (the rest).
type BottlerocketNodeStatus struct {
	// agent is what the agent reports about the host. Only the agent writes it.
	// +optional
	Agent *AgentStatus `json:"agent,omitempty"`

	// phase is where the node is in its update (see the lifecycle contract).
	// +optional
	Phase NodePhase `json:"phase,omitempty"`
	// reason says why the node waits, or why it failed.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Reason Reason `json:"reason,omitempty"`
	// message says the same for a person, naming what blocks (a pod, a PDB, a window).
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
	// wave is the name of the rollout wave the node belongs to; assigned once per rollout.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Wave string `json:"wave,omitempty"`
	// rolloutTarget is the target version of the rollout the wave and phase belong to.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	RolloutTarget string `json:"rolloutTarget,omitempty"`
	// phaseStartTime is when the node entered its phase; the deadlines of staging and
	// draining are measured from it.
	// +optional
	PhaseStartTime *metav1.Time `json:"phaseStartTime,omitempty"`
	// rebootStartTime is when the node entered Rebooting for its current update:
	// health.readyTimeout is measured from it, across Rebooting, Verifying and Stabilizing.
	// +optional
	RebootStartTime *metav1.Time `json:"rebootStartTime,omitempty"`
	// drainStartTime is when the node entered Draining for its current update: its
	// disruption lasts from it to updatedTime.
	// +optional
	DrainStartTime *metav1.Time `json:"drainStartTime,omitempty"`
	// updateStartTime is when the node left Pending for its current update.
	// +optional
	UpdateStartTime *metav1.Time `json:"updateStartTime,omitempty"`
	// updatedTime is when the operator last finished updating the node: it left Stabilizing
	// for Updated, having held a disruption slot; pauseBetweenNodes counts from it. A node
	// found already running the target becomes Updated without it: it held no slot.
	// +optional
	UpdatedTime *metav1.Time `json:"updatedTime,omitempty"`
	// failedTarget is the target the node failed for; it is not retried for it unless a
	// person asks.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	FailedTarget string `json:"failedTarget,omitempty"`
	// failureCount is how many times in a row the node failed; retries back off by it.
	// +optional
	FailureCount int32 `json:"failureCount,omitempty"`
	// failedTime is when the node last failed.
	// +optional
	FailedTime *metav1.Time `json:"failedTime,omitempty"`
	// healthySince is when the node, in Stabilizing, was last found healthy after being
	// unhealthy; health.stableFor counts from it. Empty while it is not healthy.
	// +optional
	HealthySince *metav1.Time `json:"healthySince,omitempty"`
	// evictedPDBs names ("namespace/name") the PodDisruptionBudgets of the pods the controller
	// evicted from the node in this update; they must be healthy again before the node counts
	// as Updated. Cleared once the node no longer holds its cordon.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=317
	// +listType=set
	// +optional
	EvictedPDBs []string `json:"evictedPDBs,omitempty"`
	// conditions of the node's update: Healthy in the Stabilizing phase.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BottlerocketNode is one Bottlerocket node's update: the controller's intent (spec), the
// agent's report (status.agent) and the controller's view (the rest of status). Its name is
// the node's name.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=brn,categories=bottlerocket
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.agent.currentVersion`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.targetVersion`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.policy`
// +kubebuilder:printcolumn:name="Wave",type=string,JSONPath=`.status.wave`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BottlerocketNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the controller's intent.
	// +kubebuilder:default={}
	// +optional
	Spec BottlerocketNodeSpec `json:"spec,omitempty"`
	// status is the agent's report and the controller's view.
	// +optional
	Status BottlerocketNodeStatus `json:"status,omitempty"`
}

// BottlerocketNodeList is a list of BottlerocketNode.
//
// +kubebuilder:object:root=true
type BottlerocketNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BottlerocketNode `json:"items"`
}
