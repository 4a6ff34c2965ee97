package v1alpha1

// The node lifecycle contract.
//
// A rollout is one UpdatePolicy moving the nodes it governs to one target version. Each
// governed node has a BottlerocketNode whose status.phase says where it is. The controller
// alone moves a node between phases; it does so on the evidence listed for each phase. The
// agent alone acts on the host, and only on the intent in spec.action. docs/lifecycle.md
// holds the same table for readers of the repository.
//
//	phase        spec.action  entered by the controller when …                        deadline               unavailable
//	Idle         None         the node needs nothing: not governed, or no rollout      –                      no
//	Pending      None         the node needs the target; waits with a Reason           –                      no
//	Staging      Stage        a staging slot is free in the node's (current) wave      staging timeout        no
//	Staged       Stage        the agent reports the target staged (status.agent)       –                      no
//	Draining     Stage        budget, window, wave and pause allow a disruption         drain.timeout          yes
//	Rebooting    Reboot       the node holds no evictable pods (or onTimeout: Force)   health.readyTimeout    yes
//	Verifying    Reboot       the agent reports a new boot ID                          health.readyTimeout    yes
//	Stabilizing  None         Node Ready, target version running, DaemonSet pods Ready health.readyTimeout    holds its slot
//	Updated      None         workloads Ready, PDBs healthy, held for health.stableFor –                      no
//	Failed       None         fallback, agent error or a deadline passed (Reason)      –                      no; counts toward failurePolicy.maxFailedNodes
//
// "Unavailable" nodes consume the policy's maxUnavailable budget (in total, per zone and per
// wave). Besides the phases marked yes, every governed node that is cordoned or not Ready
// counts, whoever caused it. A slot freed by a node is usable again pauseBetweenNodes after
// that node became Updated.
//
// A Failed node keeps status.failedTarget and is not retried for that target until a person
// asks (AnnotationRetry). When failurePolicy.maxFailedNodes nodes of a rollout have failed,
// no new node starts until a person resumes the rollout (AnnotationResume) or changes the
// target version.

// NodePhase is where a node is in its update, as decided by the controller.
// +kubebuilder:validation:Enum=Idle;Pending;Staging;Staged;Draining;Rebooting;Verifying;Stabilizing;Updated;Failed
type NodePhase string

const (
	// PhaseIdle: the node needs nothing (not governed by a policy, or no rollout for it).
	PhaseIdle NodePhase = "Idle"
	// PhasePending: the node needs the rollout's target and waits; Reason says why.
	PhasePending NodePhase = "Pending"
	// PhaseStaging: the agent downloads and writes the target to the inactive partition.
	PhaseStaging NodePhase = "Staging"
	// PhaseStaged: the target is staged; the node waits for a disruption slot.
	PhaseStaged NodePhase = "Staged"
	// PhaseDraining: the controller cordons the node and evicts its pods.
	PhaseDraining NodePhase = "Draining"
	// PhaseRebooting: the agent activates the staged image and reboots the host.
	PhaseRebooting NodePhase = "Rebooting"
	// PhaseVerifying: the host came back; the controller checks it runs the target and is Ready.
	PhaseVerifying NodePhase = "Verifying"
	// PhaseStabilizing: the node is uncordoned; its workloads must stay healthy for stableFor.
	PhaseStabilizing NodePhase = "Stabilizing"
	// PhaseUpdated: the node runs the rollout's target and its workloads are healthy.
	PhaseUpdated NodePhase = "Updated"
	// PhaseFailed: the update of this node failed; Reason and Message say why.
	PhaseFailed NodePhase = "Failed"
)

// Unavailable reports whether a node in this phase consumes a disruption slot.
func (p NodePhase) Unavailable() bool {
	switch p {
	case PhaseDraining, PhaseRebooting, PhaseVerifying, PhaseStabilizing:
		return true
	}
	return false
}

// InFlight reports whether a node in this phase is part of an update under way (staging or
// disrupted); such a node keeps its slot and finishes even when a window closes or the policy
// is paused.
func (p NodePhase) InFlight() bool {
	return p == PhaseStaging || p == PhaseStaged || p.Unavailable()
}

// NodeAction is the controller's intent for the agent.
// +kubebuilder:validation:Enum=None;Stage;Reboot
type NodeAction string

const (
	// ActionNone: do nothing disruptive. An activated but not yet rebooted update is
	// deactivated; a host no longer governed gets its version lock back to "latest".
	ActionNone NodeAction = "None"
	// ActionStage: lock the host to spec.targetVersion, ignore its own waves, refresh, and
	// prepare (download and write) the target while workloads still run.
	ActionStage NodeAction = "Stage"
	// ActionReboot: record the boot ID and version, activate the staged target and reboot.
	ActionReboot NodeAction = "Reboot"
)

// Reason is a typed, machine-readable explanation of why a node waits or failed, or of a
// policy condition. Every reason a person can see is one of these constants.
type Reason string

// Reasons a governed node waits in Pending (or Staged).
const (
	ReasonUpToDate             Reason = "UpToDate"
	ReasonNotGoverned          Reason = "NotGoverned"
	ReasonPolicyConflict       Reason = "PolicyConflict"
	ReasonExcluded             Reason = "Excluded"
	ReasonUnsupportedHost      Reason = "UnsupportedHost"
	ReasonAwaitingAgent        Reason = "AwaitingAgent"
	ReasonTargetNotOffered     Reason = "TargetNotOffered"
	ReasonWaitingForWave       Reason = "WaitingForWave"
	ReasonSoaking              Reason = "Soaking"
	ReasonOutsideWindow        Reason = "OutsideMaintenanceWindow"
	ReasonInvalidSchedule      Reason = "InvalidSchedule"
	ReasonBudgetExhausted      Reason = "MaxUnavailable"
	ReasonZoneBudgetExhausted  Reason = "MaxUnavailablePerZone"
	ReasonWaveBudgetExhausted  Reason = "WaveMaxUnavailable"
	ReasonPauseBetweenNodes    Reason = "PauseBetweenNodes"
	ReasonStagingLimit         Reason = "StagingLimit"
	ReasonBackoff              Reason = "Backoff"
	ReasonRolloutHalted        Reason = "RolloutHalted"
	ReasonPolicyPaused         Reason = "PolicyPaused"
	ReasonDryRun               Reason = "DryRun"
	ReasonFailedForTarget      Reason = "FailedForTarget"
	ReasonControllerNodeLast   Reason = "ControllerNodeLast"
	ReasonWaitingForDisruption Reason = "WaitingForDisruptionSlot"
)

// Reasons a node in flight reports while it waits inside a phase.
const (
	ReasonStaging            Reason = "Staging"
	ReasonEvicting           Reason = "Evicting"
	ReasonEvictionBlocked    Reason = "EvictionBlockedByPDB"
	ReasonMultiplePDBs       Reason = "MultiplePDBs"
	ReasonNoCapacity         Reason = "NoCapacity"
	ReasonWaitingForReboot   Reason = "WaitingForReboot"
	ReasonNodeNotReady       Reason = "NodeNotReady"
	ReasonWrongVersion       Reason = "WrongVersion"
	ReasonDaemonSetsNotReady Reason = "DaemonSetPodsNotReady"
	ReasonPodsNotReady       Reason = "PodsNotReady"
	ReasonPDBUnhealthy       Reason = "PDBUnhealthy"
	ReasonBlockingPod        Reason = "BlockingPod"
	ReasonStabilizing        Reason = "Stabilizing"
)

// Reasons a node is Failed.
const (
	ReasonStageFailed  Reason = "StageFailed"
	ReasonRebootFailed Reason = "RebootFailed"
	ReasonFallback     Reason = "BootFallback"
	ReasonStageTimeout Reason = "StageTimeout"
	ReasonDrainTimeout Reason = "DrainTimeout"
	ReasonReadyTimeout Reason = "ReadyTimeout"
	ReasonNodeDeleted  Reason = "NodeDeleted"
)

// Labels and annotations of the operator. The retry, exclude and resume annotations are the
// one-line `kubectl annotate` controls documented in the README.
const (
	// LabelInterfaceVersion is set by the controller on every supported Bottlerocket Node;
	// the agent DaemonSet schedules on it.
	LabelInterfaceVersion = "bottlerocket.aws/updater-interface-version"
	// InterfaceVersion is the value of LabelInterfaceVersion for hosts driven through the
	// host's update API (Bottlerocket 0.4.1 and later).
	InterfaceVersion = "2.0.0"

	// AnnotationExclude on a Node ("true") keeps the operator from updating it.
	AnnotationExclude = "updates.bottlerocket.aws/exclude"
	// AnnotationRetry on a BottlerocketNode asks the controller to retry a Failed node; the
	// controller removes it once acted upon.
	AnnotationRetry = "updates.bottlerocket.aws/retry"
	// AnnotationResume on an UpdatePolicy resumes a rollout halted by its failure policy; the
	// controller removes it once acted upon.
	AnnotationResume = "updates.bottlerocket.aws/resume"
	// AnnotationCordonedBy on a Node records that the operator cordoned it, so that it never
	// uncordons a node somebody else cordoned. It lives on the Node to survive our objects.
	AnnotationCordonedBy = "updates.bottlerocket.aws/cordoned-by"

	// AnnotationEvictedPDBs on a BottlerocketNode lists ("namespace/name", comma-separated)
	// the PodDisruptionBudgets of the pods the controller evicted from the node; they must be
	// healthy again before the node counts as Updated. The controller removes it after.
	AnnotationEvictedPDBs = "updates.bottlerocket.aws/evicted-pdbs"

	// AnnotationAutoscalerGuard on a Node records that the operator set the two autoscaler
	// annotations below, so that it removes only what it set.
	AnnotationAutoscalerGuard = "updates.bottlerocket.aws/autoscaler-guard"

	// AnnotationKarpenterDoNotDisrupt and AnnotationClusterAutoscalerScaleDownDisabled keep
	// autoscalers from removing a node while it is being updated.
	AnnotationKarpenterDoNotDisrupt              = "karpenter.sh/do-not-disrupt"
	AnnotationClusterAutoscalerScaleDownDisabled = "cluster-autoscaler.kubernetes.io/scale-down-disabled"

	// LabelZone is the well-known zone label that maxUnavailablePerZone groups nodes by.
	LabelZone = "topology.kubernetes.io/zone"
)

// Condition types of an UpdatePolicy.
const (
	// ConditionReady is True when the policy is valid and every governed node runs the
	// target (or the rollout has nothing to do); kubectl wait and GitOps tools read it.
	ConditionReady = "Ready"
	// ConditionProgressing is True while a rollout moves nodes or waits to move them.
	ConditionProgressing = "Progressing"
	// ConditionPaused is True when spec.paused is set or the policy is in dry-run.
	ConditionPaused = "Paused"
	// ConditionDegraded is True when the rollout halted at its failure budget, the policy is
	// invalid (schedule, time zone), or it conflicts with another policy.
	ConditionDegraded = "Degraded"
)

// Condition reasons of an UpdatePolicy.
const (
	ReasonRolloutComplete     Reason = "RolloutComplete"
	ReasonRolloutInProgress   Reason = "RolloutInProgress"
	ReasonRolloutWaiting      Reason = "RolloutWaiting"
	ReasonNoNodes             Reason = "NoNodes"
	ReasonPaused              Reason = "Paused"
	ReasonNotPaused           Reason = "NotPaused"
	ReasonFailureBudgetSpent  Reason = "FailureBudgetSpent"
	ReasonInvalidTimeZone     Reason = "InvalidTimeZone"
	ReasonInvalidSpec         Reason = "InvalidSpec"
	ReasonHealthy             Reason = "Healthy"
	ReasonConflictingOperator Reason = "ConflictingOperator"
)
