package planner

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// StagingTimeout bounds Staging: a download that takes longer has failed.
const StagingTimeout = time.Hour

// Defaults of the deadlines a policy may leave unset.
const (
	DefaultDrainTimeout = 15 * time.Minute
	DefaultReadyTimeout = 10 * time.Minute
	DefaultStableFor    = time.Minute
)

// flight is one governed node in flight during a pass: what Compute knows of it, and what
// moving it on asks of the pass (a wake-up at a deadline, a poll for what is not watched).
type flight struct {
	d      *NodeDecision
	node   *corev1.Node
	brn    *v1alpha1.BottlerocketNode
	ev     *Evidence
	policy *v1alpha1.UpdatePolicySpec
	// capacity: some other node can take evicted pods.
	capacity bool
	now      time.Time
	wake     time.Time
	poll     bool
}

// advanceInFlight moves every governed node in flight that the pass kept in its phase, on
// the evidence of that phase (the controller's half of the lifecycle contract in
// api/v1alpha1/lifecycle.go). It runs after admissions, so a node's slot is counted by the
// phase it was observed in.
func (pp *policyPass) advanceInFlight(classes []nodeClass, out []NodeDecision) {
	for k, i := range pp.members {
		d := &out[i]
		if classes[k] != classInFlight || d.Phase != d.From {
			continue
		}
		ns := pp.in.Nodes[i]
		f := &flight{d: d, node: ns.Node, brn: ns.BRN, ev: ns.Evidence, policy: pp.spec, now: pp.in.Now,
			capacity: pp.in.SchedulableNodes-selfSchedulable(ns.Node) > 0}
		if f.ev == nil {
			f.ev = &Evidence{}
		}
		f.step()
		if d.FailedNow() {
			pp.failed++ // counts at once: the failure budget halts the rollout in this pass's report
		}
		pp.flightWake = earliest(pp.flightWake, f.wake)
		pp.poll = pp.poll || f.poll
	}
}

// selfSchedulable is 1 when the node itself is among Input.SchedulableNodes.
func selfSchedulable(n *corev1.Node) int {
	if kubeutil.NodeUnavailable(n) {
		return 0
	}
	return 1
}

// step moves the node on the evidence of its phase.
func (f *flight) step() {
	f.d.EvictedPDBs = f.brn.Status.EvictedPDBs
	switch f.brn.Status.Phase {
	case v1alpha1.PhaseStaging:
		f.stepStaging()
	case v1alpha1.PhaseDraining:
		f.stepDraining()
	case v1alpha1.PhaseRebooting:
		f.stepRebooting()
	case v1alpha1.PhaseVerifying:
		f.stepVerifying()
	case v1alpha1.PhaseStabilizing:
		f.stepStabilizing()
	}
}

// deadline reports whether the phase outlasted limit, and otherwise wakes at the deadline.
func (f *flight) deadline(limit time.Duration) bool {
	return f.deadlineFrom(f.brn.Status.PhaseStartTime, limit)
}

// sinceReboot reports whether limit has passed since the node entered Rebooting (its phase's
// start if that is not recorded), and otherwise wakes at the deadline.
func (f *flight) sinceReboot(limit time.Duration) bool {
	if t := f.brn.Status.RebootStartTime; t != nil {
		return f.deadlineFrom(t, limit)
	}
	return f.deadline(limit)
}

func (f *flight) deadlineFrom(from *metav1.Time, limit time.Duration) bool {
	start := f.now
	if from != nil {
		start = from.Time
	}
	if !f.now.Before(start.Add(limit)) {
		return true
	}
	f.wake = earliest(f.wake, start.Add(limit))
	return false
}

func (f *flight) move(phase v1alpha1.NodePhase, action v1alpha1.NodeAction, reason v1alpha1.Reason, msg string) {
	f.d.Phase, f.d.Action, f.d.Reason, f.d.Message = phase, action, reason, msg
}

func (f *flight) wait(reason v1alpha1.Reason, msg string) {
	f.d.Reason, f.d.Message = reason, msg
}

func (f *flight) fail(reason v1alpha1.Reason, msg string) {
	f.move(v1alpha1.PhaseFailed, v1alpha1.ActionNone, reason, msg)
}

// agentResult returns the agent's last action if it answers the current intent.
func agentResult(brn *v1alpha1.BottlerocketNode, action v1alpha1.NodeAction) *v1alpha1.AgentAction {
	a := brn.Status.Agent
	if a == nil || a.LastAction == nil {
		return nil
	}
	if l := a.LastAction; l.Action == action && l.TargetVersion == brn.Spec.TargetVersion {
		return l
	}
	return nil
}

// rebootFailure returns the agent's report that the reboot into the target failed.
func rebootFailure(brn *v1alpha1.BottlerocketNode) *v1alpha1.AgentAction {
	if res := agentResult(brn, v1alpha1.ActionReboot); res != nil && res.Result == v1alpha1.ActionFailed {
		return res
	}
	return nil
}

func (f *flight) readyTimeout() time.Duration {
	return durationOr(f.policy.Health.ReadyTimeout, DefaultReadyTimeout)
}

func (f *flight) stepStaging() {
	agent := f.brn.Status.Agent
	res := agentResult(f.brn, v1alpha1.ActionStage)
	answered := res != nil && agent.ObservedGeneration == f.brn.Generation
	switch {
	case answered && res.Result == v1alpha1.ActionSucceeded && hasStaged(agent, f.brn.Spec.TargetVersion):
		f.move(v1alpha1.PhaseStaged, v1alpha1.ActionStage, v1alpha1.ReasonWaitingForDisruption, "target staged; waiting for a disruption slot")
	case answered && res.Result == v1alpha1.ActionFailed:
		f.fail(v1alpha1.ReasonStageFailed, res.Message)
	case f.deadline(StagingTimeout):
		f.fail(v1alpha1.ReasonStageTimeout, fmt.Sprintf("the target was not staged within %s", StagingTimeout))
	default:
		f.wait(v1alpha1.ReasonStaging, "the agent is downloading the target")
	}
}

func (f *flight) stepDraining() {
	res := f.ev.Drain
	if res == nil { // no eviction pass this time: nothing is known drained, and the deadline holds
		res = &DrainEvidence{Incomplete: true, Blocked: v1alpha1.ReasonDrainRefused, Message: "no eviction pass was made this time"}
	}
	f.d.EvictedPDBs = union(f.d.EvictedPDBs, res.EvictedPDBs)
	if res.Remaining == 0 && !res.Incomplete {
		f.move(v1alpha1.PhaseRebooting, v1alpha1.ActionReboot, v1alpha1.ReasonWaitingForReboot, "drained; the agent reboots the host into "+f.brn.Spec.TargetVersion)
		return
	}
	reason, message := f.drainHold(res)
	spec := f.policy.Drain
	if f.deadline(durationOr(spec.Timeout, DefaultDrainTimeout)) {
		if spec.TimeoutAction() == v1alpha1.DrainTimeoutForce {
			f.move(v1alpha1.PhaseRebooting, v1alpha1.ActionReboot, v1alpha1.ReasonWaitingForReboot,
				fmt.Sprintf("drain timed out with %s; rebooting anyway (onTimeout: Force)", left(res)))
			return
		}
		f.fail(v1alpha1.ReasonDrainTimeout, fmt.Sprintf("drain timed out with %s: %s", left(res), message))
		return
	}
	f.poll = true
	f.wait(reason, message)
}

// drainHold says what holds a drain up: a refusal that waiting does not end (several
// budgets on one pod, a pod the drain may not or cannot evict), no room elsewhere, a budget
// refusing, or nothing but time.
func (f *flight) drainHold(res *DrainEvidence) (v1alpha1.Reason, string) {
	switch {
	case res.Blocked != "" && res.Blocked != v1alpha1.ReasonEvictionBlocked:
		return res.Blocked, res.Message
	case !f.capacity:
		return v1alpha1.ReasonNoCapacity, "no other node can take the evicted pods (every other node is cordoned or not Ready); drain.onTimeout decides at the deadline"
	case res.Blocked != "":
		return res.Blocked, res.Message
	}
	return v1alpha1.ReasonEvicting, fmt.Sprintf("evicting %d pods", res.Remaining)
}

// left says how many pods a drain left.
func left(res *DrainEvidence) string {
	if res.Incomplete {
		return "an unknown number of pods left"
	}
	return fmt.Sprintf("%d pods left", res.Remaining)
}

func (f *flight) stepRebooting() {
	agent := f.brn.Status.Agent
	switch res := rebootFailure(f.brn); {
	case res != nil:
		reason := res.Reason
		if reason == "" {
			reason = v1alpha1.ReasonRebootFailed
		}
		f.fail(reason, res.Message)
	case agent != nil && agent.RebootRecord != nil && agent.RebootRecord.ToVersion == f.brn.Spec.TargetVersion &&
		agent.BootID != agent.RebootRecord.BootID:
		f.move(v1alpha1.PhaseVerifying, v1alpha1.ActionReboot, v1alpha1.ReasonNodeNotReady, "the host rebooted; verifying it")
	case f.sinceReboot(f.readyTimeout()):
		f.fail(v1alpha1.ReasonReadyTimeout, "the host did not come back within health.readyTimeout")
	default:
		f.wait(v1alpha1.ReasonWaitingForReboot, "waiting for the host to reboot")
	}
}

func (f *flight) stepVerifying() {
	if res := rebootFailure(f.brn); res != nil {
		f.fail(res.Reason, res.Message)
		return
	}
	c := verify(f.node, f.brn, f.ev)
	switch {
	case c.ok():
		f.move(v1alpha1.PhaseStabilizing, v1alpha1.ActionNone, v1alpha1.ReasonStabilizing, "running "+f.brn.Spec.TargetVersion+"; uncordoned, watching workloads")
	case f.sinceReboot(f.readyTimeout()):
		f.fail(v1alpha1.ReasonReadyTimeout, "not verified within health.readyTimeout of the reboot: "+c.message)
	default:
		f.poll = true
		f.wait(c.reason, c.message)
	}
}

func (f *flight) stepStabilizing() {
	c := stable(f.node, f.brn, f.ev, f.policy.Health)
	stableFor := durationOr(f.policy.Health.StableFor, DefaultStableFor)
	f.poll = true
	switch {
	case c.ok():
		since := f.now
		if t := f.brn.Status.HealthySince; t != nil {
			since = t.Time
		}
		f.d.HealthySince = since
		if !f.now.Before(since.Add(stableFor)) {
			f.move(v1alpha1.PhaseUpdated, v1alpha1.ActionNone, v1alpha1.ReasonUpToDate, "updated to "+f.brn.Spec.TargetVersion)
			f.poll = false
			return
		}
		f.wake = earliest(f.wake, since.Add(stableFor))
		f.wait(v1alpha1.ReasonStabilizing, fmt.Sprintf("healthy since %s; held for %s", formatTime(since), stableFor))
	// Only what is unhealthy now fails at the deadline: a node found healthy late (the
	// controller was away) is held for stableFor like any other.
	case f.sinceReboot(f.readyTimeout() + stableFor):
		f.fail(v1alpha1.ReasonReadyTimeout, "workloads not healthy within health.readyTimeout of the reboot: "+c.message)
		f.poll = false
	default:
		f.wait(c.reason, c.message)
	}
}

// health is the outcome of one health check: empty when healthy, else why not.
type health struct {
	reason  v1alpha1.Reason
	message string
}

func (c health) ok() bool { return c.reason == "" }

// notRead is the check of a probe whose evidence did not come this pass.
var notRead = health{v1alpha1.ReasonPodsNotReady, "the node's pods could not be read; trying again"}

// verify is the gate out of Verifying: the Node is Ready, the agent reports the target
// running, and the node's DaemonSet pods that should run (shouldRun) are Ready.
func verify(node *corev1.Node, brn *v1alpha1.BottlerocketNode, ev *Evidence) health {
	if !kubeutil.NodeReady(node) {
		return health{v1alpha1.ReasonNodeNotReady, "waiting for the Node to be Ready"}
	}
	if c := runsTarget(brn); !c.ok() {
		return c
	}
	if !ev.PodsRead {
		return notRead
	}
	for i := range ev.Pods {
		if p := &ev.Pods[i]; ownedByDaemonSet(p) && shouldRun(p) && !podutils.IsPodReady(p) {
			return health{v1alpha1.ReasonDaemonSetsNotReady, fmt.Sprintf("DaemonSet pod %s/%s is not Ready", p.Namespace, p.Name)}
		}
	}
	return health{}
}

// runsTarget checks that the agent reports the target running.
func runsTarget(brn *v1alpha1.BottlerocketNode) health {
	a := brn.Status.Agent
	if a != nil && a.CurrentVersion == brn.Spec.TargetVersion {
		return health{}
	}
	running := ""
	if a != nil {
		running = a.CurrentVersion
	}
	return health{v1alpha1.ReasonWrongVersion, fmt.Sprintf("the agent reports %q running, waiting for %s", running, brn.Spec.TargetVersion)}
}

// stable is the gate out of Stabilizing: the node is Ready, the agent still reports the
// target running (a host that fell back, or that somebody rolled back, since it was verified
// does not pass), its pods that should run (shouldRun) are Ready, no pod the policy calls
// blocking is on it, and the PodDisruptionBudgets of the pods evicted from it are back to
// their desired healthy count.
func stable(node *corev1.Node, brn *v1alpha1.BottlerocketNode, ev *Evidence, spec v1alpha1.HealthSpec) health {
	if !kubeutil.NodeReady(node) {
		return health{v1alpha1.ReasonNodeNotReady, "the Node is not Ready"}
	}
	if c := runsTarget(brn); !c.ok() {
		return c
	}
	if !ev.PodsRead {
		return notRead
	}
	blocking, err := selectorOrNothing(spec.BlockingPodSelector)
	if err != nil {
		return health{v1alpha1.ReasonInvalidSpec, "health.blockingPodSelector: " + err.Error()}
	}
	for i := range ev.Pods {
		p := &ev.Pods[i]
		if blocking.Matches(labelsOf(p)) {
			return health{v1alpha1.ReasonBlockingPod, fmt.Sprintf("blocking pod %s/%s is on the node", p.Namespace, p.Name)}
		}
		if shouldRun(p) && !podutils.IsPodReady(p) {
			return health{v1alpha1.ReasonPodsNotReady, fmt.Sprintf("pod %s/%s is not Ready", p.Namespace, p.Name)}
		}
	}
	for _, key := range brn.Status.EvictedPDBs {
		pdb, ok := ev.PDBs[key]
		if !ok || pdb == nil {
			continue // gone with its workload
		}
		if pdb.Status.ObservedGeneration < pdb.Generation || pdb.Status.CurrentHealthy < pdb.Status.DesiredHealthy {
			return health{v1alpha1.ReasonPDBUnhealthy, fmt.Sprintf("PodDisruptionBudget %s has %d healthy pods of %d desired",
				key, pdb.Status.CurrentHealthy, pdb.Status.DesiredHealthy)}
		}
	}
	return health{}
}

// selectorOrNothing parses a label selector; nil selects nothing.
func selectorOrNothing(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

func labelsOf(p *corev1.Pod) labels.Set { return labels.Set(p.Labels) }

// shouldRun reports whether a pod is one the health gate judges: not finished (a Job's pod
// that succeeded or failed will never be Ready again) and not being deleted (it is going, and
// its replacement, if any, is judged instead).
func shouldRun(pod *corev1.Pod) bool {
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return false
	}
	return pod.DeletionTimestamp == nil
}

func ownedByDaemonSet(pod *corev1.Pod) bool {
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.Kind == "DaemonSet"
}

// union returns the sorted union of two lists of names.
func union(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
