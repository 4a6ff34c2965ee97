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
//	Updated      None         target still running, workloads Ready, PDBs healthy,     –                      no
//	                          held for health.stableFor
//	Failed       None         fallback, agent error or a deadline passed (Reason)      –                      no; counts toward failurePolicy.maxFailedNodes
//
// The health gates out of Verifying and Stabilizing judge only the pods that should run on
// the node: a finished pod (Succeeded or Failed, such as a Job's failed pod) or one being
// deleted will never be Ready there and is not waited for.
//
// "Unavailable" nodes consume the policy's maxUnavailable budget (in total, per zone and per
// wave). Besides the phases marked yes, every governed node that is cordoned or not Ready
// counts, whoever caused it. A node disrupted under a policy that stops governing it
// (excluded, no longer selected, selected by a second policy, policy deleted) keeps counting
// against that policy (spec.policy) until it is back: Draining and Stabilizing nodes are
// released at once, a reboot under way is carried on and released when the Node is Ready. A slot freed by a node is usable again pauseBetweenNodes after
// that node became Updated from Stabilizing (status.updatedTime); a node found already
// running the target becomes Updated without holding a slot, and starts no pause.
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
	// ReasonUpToDate: the node runs the rollout's target, or no version is offered to the governed hosts.
	ReasonUpToDate Reason = "UpToDate"
	// ReasonNotGoverned: no UpdatePolicy selects the node.
	ReasonNotGoverned Reason = "NotGoverned"
	// ReasonPolicyConflict: several UpdatePolicies select the node, so none governs it.
	ReasonPolicyConflict Reason = "PolicyConflict"
	// ReasonExcluded: a person excluded the node (AnnotationExclude).
	ReasonExcluded Reason = "Excluded"
	// ReasonUnsupportedHost: the host runs a Bottlerocket version older than the host update API the agent drives.
	ReasonUnsupportedHost Reason = "UnsupportedHost"
	// ReasonAwaitingAgent: the node's agent has not reported its host yet.
	ReasonAwaitingAgent Reason = "AwaitingAgent"
	// ReasonTargetNotOffered: the host's update repository does not offer the rollout's target.
	ReasonTargetNotOffered Reason = "TargetNotOffered"
	// ReasonWaitingForWave: an earlier wave of the rollout is not complete.
	ReasonWaitingForWave Reason = "WaitingForWave"
	// ReasonSoaking: the previous wave completed and soaks for its soakTime.
	ReasonSoaking Reason = "Soaking"
	// ReasonOutsideWindow: no maintenance window of the node's wave is open.
	ReasonOutsideWindow Reason = "OutsideMaintenanceWindow"
	// ReasonWindowTooShort: finishWithinWindow is set and the node's expected update would
	// run past the end of the open window.
	ReasonWindowTooShort Reason = "WindowTooShort"
	// ReasonInvalidSchedule: a maintenance window's schedule does not parse: the policy fails closed.
	ReasonInvalidSchedule Reason = "InvalidSchedule"
	// ReasonBudgetExhausted: maxUnavailable nodes of the policy are unavailable.
	ReasonBudgetExhausted Reason = "MaxUnavailable"
	// ReasonZoneBudgetExhausted: maxUnavailablePerZone nodes of the node's zone are unavailable.
	ReasonZoneBudgetExhausted Reason = "MaxUnavailablePerZone"
	// ReasonWaveBudgetExhausted: the wave's maxUnavailable nodes are unavailable.
	ReasonWaveBudgetExhausted Reason = "WaveMaxUnavailable"
	// ReasonPauseBetweenNodes: a slot was freed less than pauseBetweenNodes ago.
	ReasonPauseBetweenNodes Reason = "PauseBetweenNodes"
	// ReasonStagingLimit: staging.maxConcurrent nodes are staging.
	ReasonStagingLimit Reason = "StagingLimit"
	// ReasonBackoff: the node failed before and waits out its retry backoff.
	ReasonBackoff Reason = "Backoff"
	// ReasonRolloutHalted: failurePolicy.maxFailedNodes nodes failed: a person resumes the rollout.
	ReasonRolloutHalted Reason = "RolloutHalted"
	// ReasonPolicyPaused: the policy is paused (spec.paused).
	ReasonPolicyPaused Reason = "PolicyPaused"
	// ReasonDryRun: the policy is in dry-run: the message says what would happen.
	ReasonDryRun Reason = "DryRun"
	// ReasonFailedForTarget: the node failed for this target and is not retried until a person asks.
	ReasonFailedForTarget Reason = "FailedForTarget"
	// ReasonControllerNodeLast: the node hosts the controller and is updated last in its wave.
	ReasonControllerNodeLast Reason = "ControllerNodeLast"
	// ReasonWaitingForDisruption: the target is staged; the node waits for a disruption slot.
	ReasonWaitingForDisruption Reason = "WaitingForDisruptionSlot"
)

// Reasons a node in flight reports while it waits inside a phase.
const (
	// ReasonStaging: the agent downloads and writes the target.
	ReasonStaging Reason = "Staging"
	// ReasonEvicting: the node's pods are being evicted.
	ReasonEvicting Reason = "Evicting"
	// ReasonEvictionBlocked: a PodDisruptionBudget refuses an eviction; the message names the pod and the budget.
	ReasonEvictionBlocked Reason = "EvictionBlockedByPDB"
	// ReasonMultiplePDBs: a pod is covered by more than one PodDisruptionBudget, which the API server refuses to evict.
	ReasonMultiplePDBs Reason = "MultiplePDBs"
	// ReasonDrainRefused: the drain cannot evict a pod for another reason than a
	// PodDisruptionBudget: the pod keeps emptyDir data under drain.deleteEmptyDirData: false,
	// or the API server (an admission webhook, say) refuses its eviction; or the pass could
	// not cordon the node or list its pods. The message names the pod and why. Such a pod
	// counts as left: drain.onTimeout decides at drain.timeout, as for any other.
	ReasonDrainRefused Reason = "DrainRefused"
	// ReasonNoCapacity: no other node can take the evicted pods.
	ReasonNoCapacity Reason = "NoCapacity"
	// ReasonWaitingForReboot: the agent reboots the host into the target.
	ReasonWaitingForReboot Reason = "WaitingForReboot"
	// ReasonNodeNotReady: the Node is not Ready.
	ReasonNodeNotReady Reason = "NodeNotReady"
	// ReasonWrongVersion: the host does not (yet) report the target running.
	ReasonWrongVersion Reason = "WrongVersion"
	// ReasonDaemonSetsNotReady: a DaemonSet pod on the node is not Ready.
	ReasonDaemonSetsNotReady Reason = "DaemonSetPodsNotReady"
	// ReasonPodsNotReady: a pod on the node is not Ready (or the pods could not be read).
	ReasonPodsNotReady Reason = "PodsNotReady"
	// ReasonPDBUnhealthy: a PodDisruptionBudget the drain evicted from is below its desired healthy count.
	ReasonPDBUnhealthy Reason = "PDBUnhealthy"
	// ReasonBlockingPod: a pod health.blockingPodSelector selects is on the node.
	ReasonBlockingPod Reason = "BlockingPod"
	// ReasonStabilizing: the node is healthy and held for health.stableFor.
	ReasonStabilizing Reason = "Stabilizing"
)

// Reasons a node is Failed.
const (
	// ReasonStageFailed: the agent could not stage the target; the message is the host's error.
	ReasonStageFailed Reason = "StageFailed"
	// ReasonRebootFailed: the agent could not reboot the host.
	ReasonRebootFailed Reason = "RebootFailed"
	// ReasonFallback: the host booted the old image again: the new one failed at boot.
	ReasonFallback Reason = "BootFallback"
	// ReasonStageTimeout: the target was not staged within an hour.
	ReasonStageTimeout Reason = "StageTimeout"
	// ReasonDrainTimeout: pods were left at drain.timeout under onTimeout: Abort.
	ReasonDrainTimeout Reason = "DrainTimeout"
	// ReasonReadyTimeout: the node was not back, verified or healthy within health.readyTimeout.
	ReasonReadyTimeout Reason = "ReadyTimeout"
	// ReasonNodeDeleted: the Node was deleted while the operator was disrupting it (cordoned:
	// Draining, Rebooting or Verifying), as an autoscaler replacing instances of a bad image
	// does. Its BottlerocketNode goes with it; the policy keeps the failure in
	// status.deletedNodes, and it counts toward failurePolicy.maxFailedNodes.
	ReasonNodeDeleted Reason = "NodeDeleted"
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

	// AnnotationAutoscalerGuard on a Node lists, comma-separated, which of the two autoscaler
	// annotations below the operator set, so that it removes only what it set: one the Node
	// already carries (its owner's) is neither overwritten nor removed.
	AnnotationAutoscalerGuard = "updates.bottlerocket.aws/autoscaler-guard"

	// AnnotationKarpenterDoNotDisrupt and AnnotationClusterAutoscalerScaleDownDisabled keep
	// autoscalers from removing a node while it is being updated.
	AnnotationKarpenterDoNotDisrupt              = "karpenter.sh/do-not-disrupt"
	AnnotationClusterAutoscalerScaleDownDisabled = "cluster-autoscaler.kubernetes.io/scale-down-disabled"

	// LabelZone is the well-known zone label that maxUnavailablePerZone groups nodes by.
	LabelZone = "topology.kubernetes.io/zone"
)

// Condition types of a BottlerocketNode.
const (
	// ConditionHealthy is set in the Stabilizing phase: True while the node and its workloads
	// pass the health checks (reason Stabilizing), False with the check's reason and message
	// otherwise. It is for people; the stableFor timer is status.healthySince.
	ConditionHealthy = "Healthy"
)

// Condition types of an UpdatePolicy.
const (
	// ConditionReady is True when the policy is valid and every governed node runs the
	// target (or the rollout has nothing to do); kubectl wait and GitOps tools read it. A
	// rollout that ended with Failed nodes is not Ready (reason RolloutEndedWithFailures).
	ConditionReady = "Ready"
	// ConditionProgressing is True while a rollout moves nodes or waits to move them; it is
	// False whenever Stalled is True.
	ConditionProgressing = "Progressing"
	// ConditionStalled is the kstatus condition: True when the rollout cannot go on without a
	// person — it halted at its failure budget, it ended with Failed nodes, the policy is
	// invalid or conflicts with another (or the upstream operator is installed) — so that
	// Flux and Argo CD report it as failed rather than in progress forever.
	ConditionStalled = "Stalled"
	// ConditionPaused is True when spec.paused is set or the policy is in dry-run.
	ConditionPaused = "Paused"
	// ConditionDegraded is True when the rollout halted at its failure budget or ended with
	// Failed nodes, the policy is invalid (schedule, time zone), or it conflicts with another
	// policy.
	ConditionDegraded = "Degraded"
)

// Condition reasons of an UpdatePolicy.
const (
	// ReasonRolloutComplete: every governed node runs the target (Ready True).
	ReasonRolloutComplete Reason = "RolloutComplete"
	// ReasonRolloutEndedWithFailures: the rollout has nothing left to do but some governed
	// nodes are Failed for the target (Ready False, Stalled True, Degraded True); a person
	// retries them (AnnotationRetry) or changes the version.
	ReasonRolloutEndedWithFailures Reason = "RolloutEndedWithFailures"
	// ReasonRolloutInProgress: the rollout moves nodes (Progressing True).
	ReasonRolloutInProgress Reason = "RolloutInProgress"
	// ReasonRolloutWaiting: the rollout waits to move nodes (a window, a wave, a budget).
	ReasonRolloutWaiting Reason = "RolloutWaiting"
	// ReasonNoNodes: the policy governs no node.
	ReasonNoNodes Reason = "NoNodes"
	// ReasonPaused: spec.paused or spec.dryRun is set (Paused True).
	ReasonPaused Reason = "Paused"
	// ReasonNotPaused: the policy is neither paused nor in dry-run (Paused False).
	ReasonNotPaused Reason = "NotPaused"
	// ReasonFailureBudgetSpent: the rollout halted at failurePolicy.maxFailedNodes (Degraded
	// and Stalled True, Ready and Progressing False).
	ReasonFailureBudgetSpent Reason = "FailureBudgetSpent"
	// ReasonInvalidTimeZone: a maintenance window's time zone is unknown (Degraded True).
	ReasonInvalidTimeZone Reason = "InvalidTimeZone"
	// ReasonInvalidSpec: the policy (or a rule it gives) is invalid; the message says which field.
	ReasonInvalidSpec Reason = "InvalidSpec"
	// ReasonHealthy: nothing degrades or stalls the policy (Degraded and Stalled False).
	ReasonHealthy Reason = "Healthy"
	// ReasonConflictingOperator: the upstream Bottlerocket update operator runs in the cluster: this one stands aside.
	ReasonConflictingOperator Reason = "ConflictingOperator"
)
