// Package planner is the node state machine: a pure function of the update policies, the
// observed nodes, the evidence the controller gathered and the time, which decides every
// node's next phase and why it waits.
//
// Compute admits nodes (Pending → Staging, Staged → Draining), moves nodes in flight on
// evidence (Staging → Staged, Draining → Rebooting → Verifying → Stabilizing → Updated, or
// Failed at a deadline), and says when to look again. The controller asks Probes what to
// observe (an eviction pass, a node's pods, budgets), observes it, calls Compute and writes
// the result; it decides nothing itself. Compute does no I/O and reads no clock.
package planner

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// ImplicitWave names the wave of the nodes that no wave of a policy claims; with no waves at
// all, every node is in it. A policy wave of the same name takes those nodes instead.
const ImplicitWave = "rest"

// maxNextNodes bounds PolicyReport.NextNodes (the API's limit).
const maxNextNodes = 10

// NodeState is one observed Bottlerocket node.
type NodeState struct {
	// Node is the Kubernetes Node; it must not be nil.
	Node *corev1.Node
	// BRN is the node's BottlerocketNode, nil if not created yet.
	BRN *v1alpha1.BottlerocketNode
	// Evidence is what the controller observed of the node this pass (see Probes); nil if
	// nothing.
	Evidence *Evidence
}

// Input is everything a plan depends on.
type Input struct {
	// Now is the time the plan is made for.
	Now time.Time
	// Policies are every UpdatePolicy, with the status last written (target, rollout start,
	// wave completion times, resume time are carried in it).
	Policies []v1alpha1.UpdatePolicy
	// Nodes are the Bottlerocket nodes only.
	Nodes []NodeState
	// ControllerNode is the node hosting the controller; it is updated last in its wave.
	ControllerNode string
	// Deleted are the BottlerocketNodes whose Node is gone while we held it cordoned
	// (DeletedMidUpdate): each is a failure of the policy it was disrupted under, recorded in
	// its report's DeletedNodes.
	Deleted []*v1alpha1.BottlerocketNode
	// SchedulableNodes counts the cluster's Nodes (of any OS) that are Ready and schedulable:
	// a drain with none left but the node itself says so (NoCapacity).
	SchedulableNodes int
	// Memo, when set, carries from one pass to the next what a pass derives of a node from
	// its objects alone; nil: everything is derived afresh.
	Memo *Memo
}

// Plan is the outcome of one pass.
type Plan struct {
	// Nodes holds one decision per input node, in input order.
	Nodes []NodeDecision
	// Policies holds one report per policy, by policy name.
	Policies map[string]PolicyReport
	// NextWake is the earliest time after Now at which a decision could change by time
	// alone (a pause or soak ends, a window opens or closes, a backoff ends, a deadline or
	// stableFor passes); zero: none.
	NextWake time.Time
	// Poll is set when a node's progress depends on what the controller does not watch
	// (pods being evicted, workloads becoming healthy): look again soon.
	Poll bool
}

// NodeDecision is the desired state of one node.
type NodeDecision struct {
	// Name of the node.
	Name string
	// Policy governing the node; "" when none does (conflict and exclusion included).
	Policy string
	// From is the phase observed (the BottlerocketNode's status.phase, "" if none).
	From v1alpha1.NodePhase
	// Phase is the desired phase.
	Phase v1alpha1.NodePhase
	// Action and TargetVersion are the desired spec.action and spec.targetVersion.
	Action        v1alpha1.NodeAction
	TargetVersion string
	// Wave and RolloutTarget are the node's wave and the rollout it belongs to.
	Wave          string
	RolloutTarget string
	// Reason and Message say why the node is where it is, or why it waits.
	Reason  v1alpha1.Reason
	Message string
	// EvictedPDBs are the budgets the node's drain evicted from (status.evictedPDBs) while
	// the node holds its cordon.
	EvictedPDBs []string
	// HealthySince is when a Stabilizing node was found healthy (status.healthySince); zero
	// when it is not.
	HealthySince time.Time
}

// NodeHold is what the operator keeps on a node's Node in a phase.
type NodeHold int

const (
	// HoldNothing: uncordon the node if the operator cordoned it and drop the autoscaler
	// guard the operator set.
	HoldNothing NodeHold = iota
	// HoldGuard: schedulable again (Stabilizing), the autoscaler guard stays until Updated.
	HoldGuard
	// HoldCordon: cordoned and guarded (Draining, Rebooting, Verifying); the eviction pass
	// cordons.
	HoldCordon
)

// HoldFor is what a node in phase keeps on its Node.
func HoldFor(phase v1alpha1.NodePhase) NodeHold {
	switch phase {
	case v1alpha1.PhaseDraining, v1alpha1.PhaseRebooting, v1alpha1.PhaseVerifying:
		return HoldCordon
	case v1alpha1.PhaseStabilizing:
		return HoldGuard
	}
	return HoldNothing
}

// Admitted reports whether this pass moves the node into Staging or Draining.
func (d *NodeDecision) Admitted() bool {
	return d.Phase != d.From && (d.Phase == v1alpha1.PhaseStaging || d.Phase == v1alpha1.PhaseDraining)
}

// FailedNow and UpdatedNow report whether the decision moves the node into Failed or
// Updated from another phase.
func (d *NodeDecision) FailedNow() bool {
	return d.Phase == v1alpha1.PhaseFailed && d.From != v1alpha1.PhaseFailed
}

func (d *NodeDecision) UpdatedNow() bool {
	return d.Phase == v1alpha1.PhaseUpdated && d.From != v1alpha1.PhaseUpdated
}

// ApplyTo writes the decision into brn as the controller does: spec (action, target,
// policy), the retry request once acted upon, and the controller's status fields:
// phaseStartTime when the phase changes, updateStartTime when the node leaves Pending, the
// failure record when it fails, updatedTime when it is updated after a disruption (a node
// found already on the target took no slot, and starts no pauseBetweenNodes), the drain's
// budgets and the health record while it holds its Node.
func (d *NodeDecision) ApplyTo(brn *v1alpha1.BottlerocketNode, now time.Time) {
	st := &brn.Status
	t := metav1.NewTime(now)
	switch {
	case d.FailedNow():
		st.FailedTarget, st.FailureCount, st.FailedTime = brn.Spec.TargetVersion, st.FailureCount+1, &t
	case d.UpdatedNow():
		st.FailureCount, st.FailedTarget = 0, ""
		if d.From.Unavailable() { // disrupted for the update (Stabilizing → Updated): the pause starts
			st.UpdatedTime = &t
		}
	}
	if st.Phase != d.Phase {
		st.PhaseStartTime = &t
		switch d.Phase {
		case v1alpha1.PhaseStaging:
			st.UpdateStartTime = &t
		case v1alpha1.PhaseDraining:
			st.DrainStartTime = &t
		case v1alpha1.PhaseRebooting:
			st.RebootStartTime = &t
		}
	}
	brn.Spec.Action = d.Action
	brn.Spec.TargetVersion = d.TargetVersion
	brn.Spec.Policy = d.Policy
	st.Phase, st.Reason, st.Message = d.Phase, d.Reason, d.Message
	st.Wave, st.RolloutTarget = d.Wave, d.RolloutTarget
	st.EvictedPDBs = nil
	if HoldFor(d.Phase) != HoldNothing {
		st.EvictedPDBs = d.EvictedPDBs
	}
	st.HealthySince = nil
	if d.Phase == v1alpha1.PhaseStabilizing {
		st.HealthySince = optionalTime(d.HealthySince)
	}
	st.Conditions = d.conditions(st.Conditions, now)
	if _, retry := brn.Annotations[v1alpha1.AnnotationRetry]; retry && d.Phase != v1alpha1.PhaseFailed {
		delete(brn.Annotations, v1alpha1.AnnotationRetry)
	}
}

// conditions returns the node's conditions for the decision: Healthy in the Stabilizing phase,
// none otherwise.
func (d *NodeDecision) conditions(current []metav1.Condition, now time.Time) []metav1.Condition {
	if d.Phase != v1alpha1.PhaseStabilizing {
		return nil
	}
	c := metav1.Condition{Type: v1alpha1.ConditionHealthy, Status: metav1.ConditionFalse,
		Reason: string(d.Reason), Message: d.Message, LastTransitionTime: metav1.NewTime(now)}
	if !d.HealthySince.IsZero() {
		c.Status, c.Reason = metav1.ConditionTrue, string(v1alpha1.ReasonStabilizing)
	}
	out := slices.Clone(current)
	apimeta.SetStatusCondition(&out, c)
	return out
}

// PolicyReport is what the controller needs to write an UpdatePolicy's status and conditions.
type PolicyReport struct {
	// TargetVersion is the rollout's resolved target ("" when none can be resolved yet).
	TargetVersion string
	// TargetSource says whether a pin or "latest" gave TargetVersion ("" with no target).
	TargetSource v1alpha1.TargetSource
	// RolloutStartTime is when the rollout to TargetVersion started.
	RolloutStartTime time.Time
	// Phase summarises the rollout.
	Phase v1alpha1.RolloutPhase
	// Counts counts the governed nodes per desired phase; Progress is "updated/governed".
	Counts   v1alpha1.NodeCounts
	Progress string
	// MaxUnavailable is the resolved budget; Unavailable the governed nodes consuming it
	// once this pass's admissions are applied (none in dry-run).
	MaxUnavailable int
	Unavailable    int
	// Waves is each wave's progress, completion times included (persist them in status).
	Waves []v1alpha1.WaveStatus
	// NextMaintenanceWindow is when the next window of the current wave opens; zero while
	// one is open or when there are none.
	NextMaintenanceWindow time.Time
	// NextNodes are the nodes planned to move next, in order (at most 10).
	NextNodes []string
	// EstimatedCompletion is when every governed node is expected to run the target; zero
	// when nothing is left or the rollout cannot move on by itself.
	EstimatedCompletion time.Time
	// FailedNodes counts the nodes failed for the target since the last resume; Halted is
	// set when they reach failurePolicy.maxFailedNodes.
	FailedNodes int
	Halted      bool
	// DeletedNodes is status.deletedNodes: those recorded, and the nodes of Input.Deleted
	// disrupted under the policy (the newest MaxDeletedNodes).
	DeletedNodes []v1alpha1.DeletedNode
	// Paused and DryRun echo the spec.
	Paused bool
	DryRun bool
	// Invalid says why the policy fails closed (bad selector, schedule, time zone or
	// budget); "" when valid.
	Invalid string
	// InvalidReason is the condition reason for Invalid (InvalidSchedule or InvalidTimeZone).
	InvalidReason v1alpha1.Reason
	// ConflictsWith names the policies selecting some of the same nodes, sorted.
	ConflictsWith []string
}

// ApplyTo writes the report into the status fields it determines; conditions,
// observedGeneration and resumeTime are left to the caller.
func (r *PolicyReport) ApplyTo(st *v1alpha1.UpdatePolicyStatus) {
	st.TargetVersion, st.TargetSource = r.TargetVersion, r.TargetSource
	st.RolloutStartTime = optionalTime(r.RolloutStartTime)
	st.Phase = r.Phase
	st.Progress = r.Progress
	st.Nodes = r.Counts
	st.MaxUnavailable = int32(min(r.MaxUnavailable, 1<<31-1))
	st.Unavailable = int32(r.Unavailable)
	st.Waves = r.Waves
	st.NextMaintenanceWindow = optionalTime(r.NextMaintenanceWindow)
	st.NextNodes = r.NextNodes
	st.EstimatedCompletionTime = optionalTime(r.EstimatedCompletion)
	st.DeletedNodes = r.DeletedNodes
}

func optionalTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t)
	return &mt
}

// Compute plans one pass. It is deterministic and reads nothing but its input. It reads the
// nodes in name order (candidates and waves are filled in that order): given them sorted, as
// the controller does, it sorts nothing.
func Compute(in Input) Plan {
	if !slices.IsSortedFunc(in.Nodes, byName) {
		return computeUnsorted(in)
	}
	plan := Plan{
		Nodes:    make([]NodeDecision, len(in.Nodes)),
		Policies: make(map[string]PolicyReport, len(in.Policies)),
	}
	passes := preparePolicies(&in)
	idx := newSelectorIndex(passes)
	disrupted := scope(in, passes, idx, observe(in, passes, idx), plan.Nodes)
	plan.NextWake, plan.Poll = carryOn(in, passes, disrupted, plan.Nodes)
	for _, p := range passes {
		p.plan(plan.Nodes)
		plan.Policies[p.policy.Name] = p.report
		plan.NextWake = earliest(plan.NextWake, earliest(p.wake, p.flightWake))
		plan.Poll = plan.Poll || p.poll
	}
	for i := range plan.Nodes {
		plan.Nodes[i].Message = clipMessage(plan.Nodes[i].Message)
	}
	return plan
}

func byName(a, b NodeState) int { return strings.Compare(a.Node.Name, b.Node.Name) }

// computeUnsorted plans nodes given in any order: it plans them in name order and returns
// the decisions in input order.
func computeUnsorted(in Input) Plan {
	order := make([]int, len(in.Nodes))
	for i := range order {
		order[i] = i
	}
	nodes := in.Nodes
	slices.SortFunc(order, func(a, b int) int { return byName(nodes[a], nodes[b]) })
	in.Nodes = make([]NodeState, len(nodes))
	for k, i := range order {
		in.Nodes[k] = nodes[i]
	}
	plan := Compute(in)
	decisions := make([]NodeDecision, len(plan.Nodes))
	for k, i := range order {
		decisions[i] = plan.Nodes[k]
	}
	plan.Nodes = decisions
	return plan
}

// maxMessage is the most characters status.message takes (the API refuses more).
const maxMessage = 1024

// clipMessage cuts a message to maxMessage characters: a host's error text or an API error
// may be longer, and a status the API refuses would leave the node where it is.
func clipMessage(s string) string {
	if len(s) <= maxMessage { // bytes: no more characters than that
		return s
	}
	if r := []rune(s); len(r) > maxMessage {
		return string(r[:maxMessage-1]) + "…"
	}
	return s
}

// earliest returns the earlier of a and b, a zero time standing for "never".
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
