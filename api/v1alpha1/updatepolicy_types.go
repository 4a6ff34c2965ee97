package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// VersionLatest asks for the newest version the governed hosts are offered.
const VersionLatest = "latest"

// TargetSource says where a rollout's target came from.
// +kubebuilder:validation:Enum=Latest;Pin
type TargetSource string

const (
	// TargetSourceLatest: spec.version "latest" resolved the target.
	TargetSourceLatest TargetSource = "Latest"
	// TargetSourcePin: spec.version named the target.
	TargetSourcePin TargetSource = "Pin"
)

// DrainTimeoutAction is what happens when a drain outlasts drain.timeout.
// +kubebuilder:validation:Enum=Abort;Force
type DrainTimeoutAction string

const (
	// DrainTimeoutAbort uncordons the node and marks it Failed (DrainTimeout).
	DrainTimeoutAbort DrainTimeoutAction = "Abort"
	// DrainTimeoutForce reboots the node although pods remain; they restart with the node.
	DrainTimeoutForce DrainTimeoutAction = "Force"
)

// UpdatePolicySpec is what the operator should do with the Bottlerocket nodes it selects.
//
// +kubebuilder:validation:XValidation:rule="!has(self.waves) || self.waves.all(w, self.waves.exists_one(x, x.name == w.name))",message="wave names must be unique"
type UpdatePolicySpec struct {
	// nodeSelector selects the Bottlerocket nodes this policy governs; empty selects every
	// Bottlerocket node. A node selected by two policies is governed by neither, and both
	// report the conflict.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// version is the Bottlerocket version to run: "latest" or a version such as "1.26.1". A
	// version below the one running rolls the nodes back.
	//
	// "latest" resolves to the newest release (three dotted numbers; no pre-release or
	// malformed version) that more than half of the governed hosts whose agent reports are
	// offered or run, so that no single host's report sets the fleet's target. It is kept
	// while its rollout can progress; once it cannot (it ended, or no node left is offered it
	// and none is in flight for it, e.g. it was withdrawn), a newer release so resolved starts
	// the next rollout. "latest" never resolves below the target it carries.
	// +kubebuilder:default=latest
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self == 'latest' || self.matches('^[0-9]+\\\\.[0-9]+\\\\.[0-9]+$')",message="version must be 'latest' or a Bottlerocket version such as 1.26.1"
	// +optional
	Version string `json:"version,omitempty"`

	// maxUnavailable is how many governed nodes may be unavailable at once: a count, or a
	// percentage of the governed nodes rounded up. Every governed node that is cordoned, not
	// Ready, or being updated counts, whoever caused it. 0 disrupts nothing.
	// +kubebuilder:default=1
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="maxUnavailable must be a count of 0 or more or a percentage from 0% to 100%, such as 1 or 10%"
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// maxUnavailablePerZone is how many nodes of one zone (label topology.kubernetes.io/zone)
	// may be unavailable at once: a count, or a percentage of the zone's governed nodes rounded
	// up. Unset means only maxUnavailable applies.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="maxUnavailablePerZone must be a count of 0 or more or a percentage from 0% to 100%, such as 1 or 10%"
	// +optional
	MaxUnavailablePerZone *intstr.IntOrString `json:"maxUnavailablePerZone,omitempty"`

	// pauseBetweenNodes is how long a disruption slot stays unused after the node that held it
	// became healthy (Updated), before another node may take it. A node found already running
	// the target held no slot and starts no pause. At most 24h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+)$') && duration(self) <= duration('24h')",message="pauseBetweenNodes must be a duration such as 30s or 5m, from 0s to 24h"
	// +optional
	PauseBetweenNodes *metav1.Duration `json:"pauseBetweenNodes,omitempty"`

	// staging controls downloading the target ahead of disruption.
	// +optional
	Staging *StagingSpec `json:"staging,omitempty"`

	// waves are the ordered stages of a rollout. A wave starts when every node of the
	// previous wave is Updated or Failed and that wave's soakTime has passed. Nodes in no wave
	// form an implicit last wave. No waves: every node is in one wave.
	// +kubebuilder:validation:MaxItems=20
	// +optional
	Waves []Wave `json:"waves,omitempty"`

	// maintenanceWindows are the times a node may start being disrupted (enter Draining).
	// Nodes in flight when a window closes finish; none starts until a window opens. None
	// means always. A wave's own windows replace these for that wave.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	MaintenanceWindows []MaintenanceWindow `json:"maintenanceWindows,omitempty"`

	// drain controls how a node's pods are evicted before its reboot.
	// +kubebuilder:default={}
	// +optional
	Drain DrainSpec `json:"drain,omitempty"`

	// health controls how a node is judged healthy after its reboot.
	// +kubebuilder:default={}
	// +optional
	Health HealthSpec `json:"health,omitempty"`

	// failurePolicy controls when a rollout halts.
	// +kubebuilder:default={}
	// +optional
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// paused, when true, starts nothing new; nodes in flight finish.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// dryRun, when true, computes and reports every decision (status, reasons, next nodes)
	// and starts none: no node is staged or drained. Like paused, it lets a node already in
	// flight when it was turned on finish its update.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`

	// finishWithinWindow, when true, starts disrupting a node only if its expected update
	// ends before the open maintenance window closes; otherwise the node waits for the next
	// window with reason WindowTooShort. The expected update is the mean observed in this
	// rollout (before any, drain.timeout + health.readyTimeout + health.stableFor). Without
	// it, a node started in a window may finish after the window closes.
	// +optional
	FinishWithinWindow bool `json:"finishWithinWindow,omitempty"`
}

// StagingSpec controls downloading the target ahead of disruption.
type StagingSpec struct {
	// maxConcurrent is how many nodes of the current wave may stage (download and write the
	// target to the inactive partition) at once, while their workloads still run: a count, or
	// a percentage of the governed nodes rounded up. Staging is not a disruption and is
	// allowed outside maintenance windows. Unset: the policy's maxUnavailable (at least 1).
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^(100|[1-9][0-9]?)%$')",message="staging.maxConcurrent must be a count of 1 or more or a percentage from 1% to 100%"
	// +optional
	MaxConcurrent *intstr.IntOrString `json:"maxConcurrent,omitempty"`
}

// Wave is one stage of a rollout.
//
// +kubebuilder:validation:XValidation:rule="has(self.nodes) != has(self.nodeSelector)",message="a wave sets exactly one of nodes or nodeSelector"
type Wave struct {
	// name identifies the wave in status and events.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// nodes is the size of the wave: a count, or a percentage of the governed nodes rounded
	// up, taken in a stable order from the nodes no selector wave claimed.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 1 : self.matches('^(100|[1-9][0-9]?)%$')",message="nodes must be a count of 1 or more or a percentage from 1% to 100%"
	// +optional
	Nodes *intstr.IntOrString `json:"nodes,omitempty"`

	// nodeSelector selects the wave's nodes by label; selector waves claim their nodes before
	// count waves.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`

	// soakTime is how long the rollout waits after this wave is done before the next wave
	// starts. At most 168h.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+)$') && duration(self) <= duration('168h')",message="soakTime must be a duration such as 30s or 2h, from 0s to 168h"
	// +optional
	SoakTime *metav1.Duration `json:"soakTime,omitempty"`

	// maxUnavailable limits how many of this wave's nodes may be unavailable at once (count
	// or percentage of the wave, rounded up); the policy's limits apply too.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=4
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="maxUnavailable must be a count of 0 or more or a percentage from 0% to 100%, such as 1 or 10%"
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// maintenanceWindows, when set, replace the policy's windows for this wave.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	MaintenanceWindows []MaintenanceWindow `json:"maintenanceWindows,omitempty"`
}

// MaintenanceWindow is a recurring time in which nodes may start being disrupted.
type MaintenanceWindow struct {
	// schedule is a cron expression (minute hour day-of-month month day-of-week, or a
	// descriptor such as @daily) for when the window opens, in timeZone.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches('^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') || self.matches('^[^ ]+( +[^ ]+){4}$')",message="schedule must be a cron expression of five fields (minute hour day-of-month month day-of-week) such as '0 22 * * 1-5', or a descriptor such as @daily"
	Schedule string `json:"schedule"`

	// duration is how long the window stays open from each start; from 1s to 168h.
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('168h')",message="duration must be a duration such as 30m or 4h, from 1s to 168h"
	Duration metav1.Duration `json:"duration"`

	// timeZone is the IANA time zone the schedule is read in, such as Europe/Berlin, UTC or
	// Japan; daylight saving time is handled. A zone this cluster does not know is reported as
	// a condition and opens no window.
	// +kubebuilder:default=UTC
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self != 'Local' && self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$')",message="timeZone must be an IANA time zone name such as UTC, Europe/Berlin or America/New_York"
	// +optional
	TimeZone string `json:"timeZone,omitempty"`
}

// DrainSpec controls how a node's pods are evicted before its reboot.
type DrainSpec struct {
	// timeout is how long a drain may take, measured from when it started; then onTimeout
	// applies. From 1s to 24h.
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="drain.timeout must be a duration such as 15m, from 1s to 24h"
	// +optional
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// onTimeout is what happens when the drain outlasts timeout: Abort (uncordon, node
	// Failed) or Force (reboot although pods remain; they restart with the node).
	// +kubebuilder:default=Abort
	// +optional
	OnTimeout DrainTimeoutAction `json:"onTimeout,omitempty"`

	// deleteEmptyDirData allows evicting pods that use emptyDir volumes (their data is lost).
	// +kubebuilder:default=true
	// +optional
	DeleteEmptyDirData *bool `json:"deleteEmptyDirData,omitempty"`

	// podSelector, when set, limits eviction to the pods it selects; other pods stay and
	// restart with the node.
	// +optional
	PodSelector *metav1.LabelSelector `json:"podSelector,omitempty"`

	// gracePeriodSeconds overrides each evicted pod's termination grace period. Unset: the
	// pod's own.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=3600
	// +optional
	GracePeriodSeconds *int64 `json:"gracePeriodSeconds,omitempty"`
}

// TimeoutAction is what a drain that outlasts its timeout does: Force only when asked, else
// Abort (the API server's default, and what an object written without it gets).
func (d DrainSpec) TimeoutAction() DrainTimeoutAction {
	if d.OnTimeout == DrainTimeoutForce {
		return DrainTimeoutForce
	}
	return DrainTimeoutAbort
}

// HealthSpec controls how a node is judged healthy after its reboot.
type HealthSpec struct {
	// readyTimeout is how long a node may take from its reboot to being Ready on the target
	// with its workloads healthy; past it the node is Failed (ReadyTimeout). From 1s to 24h.
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="health.readyTimeout must be a duration such as 10m, from 1s to 24h"
	// +optional
	ReadyTimeout *metav1.Duration `json:"readyTimeout,omitempty"`

	// stableFor is how long the node and its workloads must stay healthy after the reboot
	// before the node counts as Updated and its slot is released. From 0s to 24h.
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^(0|([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+)$') && duration(self) <= duration('24h')",message="health.stableFor must be a duration such as 2m, from 0s to 24h"
	// +optional
	StableFor *metav1.Duration `json:"stableFor,omitempty"`

	// blockingPodSelector selects pods that, while present on the node, keep it from being
	// judged healthy (for example a post-update check that must finish).
	// +optional
	BlockingPodSelector *metav1.LabelSelector `json:"blockingPodSelector,omitempty"`
}

// FailurePolicy controls when a rollout halts.
type FailurePolicy struct {
	// maxFailedNodes is how many nodes of a rollout may fail before it halts (condition
	// Degraded, reason FailureBudgetSpent): no new node starts until a person resumes it
	// (annotation updates.bottlerocket.aws/resume) or changes the version.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	// +optional
	MaxFailedNodes int32 `json:"maxFailedNodes,omitempty"`
}

// RolloutPhase summarises an UpdatePolicy for `kubectl get upol`.
// +kubebuilder:validation:Enum=UpToDate;Progressing;Waiting;Paused;Halted;Invalid
type RolloutPhase string

const (
	RolloutUpToDate    RolloutPhase = "UpToDate"
	RolloutProgressing RolloutPhase = "Progressing"
	RolloutWaiting     RolloutPhase = "Waiting"
	RolloutPaused      RolloutPhase = "Paused"
	RolloutHalted      RolloutPhase = "Halted"
	RolloutInvalid     RolloutPhase = "Invalid"
)

// DeletedNode is a node whose Node was deleted mid-update.
type DeletedNode struct {
	// name of the Node.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// targetVersion is the version the node was being updated to.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	TargetVersion string `json:"targetVersion,omitempty"`
	// phase is where the node was in its update when its Node was deleted.
	// +optional
	Phase NodePhase `json:"phase,omitempty"`
	// reason is NodeDeleted.
	// +kubebuilder:validation:MaxLength=64
	// +required
	Reason Reason `json:"reason"`
	// time is when the controller saw the Node gone.
	// +required
	Time metav1.Time `json:"time"`
}

// UpdatePolicyStatus is computed by the controller from the world at every reconcile; only
// what cannot be observed (the rollout's target and start, wave completion times, resume
// times) is carried over.
type UpdatePolicyStatus struct {
	// observedGeneration is the spec generation this status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Progressing, Paused, Degraded.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// phase summarises the rollout.
	// +optional
	Phase RolloutPhase `json:"phase,omitempty"`

	// targetVersion is the rollout's resolved target; "latest" keeps it while the rollout
	// can progress (see spec.version).
	// +kubebuilder:validation:MaxLength=32
	// +optional
	TargetVersion string `json:"targetVersion,omitempty"`

	// targetSource says where targetVersion came from: Pin (spec.version named it) or Latest
	// (spec.version "latest" resolved it). A target carried from a pin is not kept once
	// spec.version is "latest" again: "latest" resolves afresh. Unset (a status written
	// before this field existed) reads as Latest.
	// +optional
	TargetSource TargetSource `json:"targetSource,omitempty"`

	// rolloutStartTime is when the rollout to targetVersion started.
	// +optional
	RolloutStartTime *metav1.Time `json:"rolloutStartTime,omitempty"`

	// resumeTime is when a person last resumed the rollout; failures before it no longer
	// count toward failurePolicy.maxFailedNodes.
	// +optional
	ResumeTime *metav1.Time `json:"resumeTime,omitempty"`

	// deletedNodes are the nodes whose Node was deleted while the operator was disrupting them
	// (cordoned: Draining, Rebooting or Verifying), such as instances an autoscaler replaced
	// after a bad image: their BottlerocketNode goes with the Node, so the failure is kept
	// here. Each counts toward failurePolicy.maxFailedNodes of the rollout to its
	// targetVersion, as a Failed node does, unless it was deleted before resumeTime. The
	// newest 32 are kept.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +optional
	DeletedNodes []DeletedNode `json:"deletedNodes,omitempty"`

	// progress is "updated/governed", for example 12/50.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Progress string `json:"progress,omitempty"`

	// nodes counts the governed nodes per phase.
	// +optional
	Nodes NodeCounts `json:"nodes,omitempty"`

	// maxUnavailable is the resolved disruption budget (nodes).
	// +optional
	MaxUnavailable int32 `json:"maxUnavailable,omitempty"`

	// unavailable is how many governed nodes consume the budget now.
	// +optional
	Unavailable int32 `json:"unavailable,omitempty"`

	// waves is each wave's progress.
	// +kubebuilder:validation:MaxItems=21
	// +listType=atomic
	// +optional
	Waves []WaveStatus `json:"waves,omitempty"`

	// nextMaintenanceWindow is when the next window opens (unset while one is open or when
	// there are none).
	// +optional
	NextMaintenanceWindow *metav1.Time `json:"nextMaintenanceWindow,omitempty"`

	// nextNodes are the nodes planned to move next, in order.
	// +kubebuilder:validation:MaxItems=10
	// +listType=atomic
	// +optional
	NextNodes []string `json:"nextNodes,omitempty"`

	// estimatedCompletionTime is when every governed node is expected to run the target:
	// estimated from the update durations observed in this rollout (before any, from the
	// policy's deadlines), the budgets, waves and soaks, pauseBetweenNodes and the
	// maintenance windows. Unset when nothing is left to do or the rollout cannot move on
	// by itself (paused, halted, invalid, or no window opens again).
	// +optional
	EstimatedCompletionTime *metav1.Time `json:"estimatedCompletionTime,omitempty"`
}

// NodeCounts counts governed nodes per phase.
type NodeCounts struct {
	// total is the number of nodes the policy governs.
	Total int32 `json:"total"`
	// +optional
	Idle int32 `json:"idle,omitempty"`
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// staging counts Staging and Staged nodes.
	// +optional
	Staging int32 `json:"staging,omitempty"`
	// inProgress counts Draining, Rebooting, Verifying and Stabilizing nodes.
	// +optional
	InProgress int32 `json:"inProgress,omitempty"`
	// +optional
	Updated int32 `json:"updated,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
}

// WaveStatus is one wave's progress in the current rollout.
type WaveStatus struct {
	// name of the wave; the implicit last wave is called "rest".
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// nodes in the wave.
	Nodes int32 `json:"nodes"`
	// updated nodes of the wave.
	// +optional
	Updated int32 `json:"updated,omitempty"`
	// failed nodes of the wave.
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// completionTime is when every node of the wave became Updated or Failed; its soak
	// starts then.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// UpdatePolicy says which Bottlerocket nodes to update to which version, and how: waves,
// budgets, maintenance windows, drain and health rules, failure budget, pause and dry-run.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=upol,categories=bottlerocket
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.targetVersion`
// +kubebuilder:printcolumn:name="Progress",type=string,JSONPath=`.status.progress`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="ETA",type=string,JSONPath=`.status.estimatedCompletionTime`
// +kubebuilder:printcolumn:name="Unavailable",type=integer,JSONPath=`.status.unavailable`,priority=1
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type UpdatePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the operator should do.
	// +kubebuilder:default={}
	// +optional
	Spec UpdatePolicySpec `json:"spec,omitempty"`
	// status is what the controller sees.
	// +optional
	Status UpdatePolicyStatus `json:"status,omitempty"`
}

// UpdatePolicyList is a list of UpdatePolicy.
//
// +kubebuilder:object:root=true
type UpdatePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []UpdatePolicy `json:"items"`
}
