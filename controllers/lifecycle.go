package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// stagingTimeout bounds Staging: a download that takes longer has failed.
const stagingTimeout = time.Hour

// conditionHealthy on a BottlerocketNode is True while the node passes the stabilizing
// health checks; its lastTransitionTime is when health began, so stableFor is "held since".
const conditionHealthy = "Healthy"

// flight is one in-flight node's step: the node, its object, its governing policy, and the
// decision the planner carried over, which the step moves on evidence.
type flight struct {
	node *corev1.Node
	// orig is the object as read (never changed); brn the copy this pass changes.
	orig, brn *v1alpha1.BottlerocketNode
	policy    *v1alpha1.UpdatePolicy
	d         *planner.NodeDecision
	now       time.Time
	// wake is when this node needs another look (a deadline, stableFor), zero for none.
	wake time.Time
	// poll asks for a short requeue: progress depends on things not watched (pods, PDBs).
	poll bool
}

// deadline reports whether the phase outlasted limit, and otherwise wakes at the deadline.
func (f *flight) deadline(limit time.Duration) bool {
	start := f.now
	if t := f.brn.Status.PhaseStartTime; t != nil {
		start = t.Time
	}
	if !f.now.Before(start.Add(limit)) {
		return true
	}
	f.wakeAt(start.Add(limit))
	return false
}

func (f *flight) wakeAt(t time.Time) {
	if f.wake.IsZero() || t.Before(f.wake) {
		f.wake = t
	}
}

// recordEvictedPDBs adds PodDisruptionBudgets to the node's record of those it evicted from.
func (f *flight) recordEvictedPDBs(pdbs []string) {
	if len(pdbs) == 0 {
		return
	}
	set := sets.New(evictedPDBs(f.brn)...).Insert(pdbs...)
	if f.brn.Annotations == nil {
		f.brn.Annotations = map[string]string{}
	}
	f.brn.Annotations[v1alpha1.AnnotationEvictedPDBs] = strings.Join(sets.List(set), ",")
}

// evictedPDBs is the node's record of the PodDisruptionBudgets it evicted from.
func evictedPDBs(brn *v1alpha1.BottlerocketNode) []string {
	if v := brn.Annotations[v1alpha1.AnnotationEvictedPDBs]; v != "" {
		return strings.Split(v, ",")
	}
	return nil
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
func (f *flight) agentResult(action v1alpha1.NodeAction) *v1alpha1.AgentAction {
	a := f.brn.Status.Agent
	if a == nil || a.LastAction == nil {
		return nil
	}
	if l := a.LastAction; l.Action == action && l.TargetVersion == f.brn.Spec.TargetVersion {
		return l
	}
	return nil
}

// step moves one in-flight node on the evidence of its phase.
func (r *RolloutReconciler) step(ctx context.Context, f *flight) error {
	switch f.brn.Status.Phase {
	case v1alpha1.PhaseStaging:
		r.stepStaging(f)
	case v1alpha1.PhaseDraining:
		return r.stepDraining(ctx, f)
	case v1alpha1.PhaseRebooting:
		r.stepRebooting(f)
	case v1alpha1.PhaseVerifying:
		return r.stepVerifying(ctx, f)
	case v1alpha1.PhaseStabilizing:
		return r.stepStabilizing(ctx, f)
	}
	return nil
}

func (r *RolloutReconciler) stepStaging(f *flight) {
	agent := f.brn.Status.Agent
	switch res := f.agentResult(v1alpha1.ActionStage); {
	case res != nil && res.Result == v1alpha1.ActionSucceeded && agent.ObservedGeneration == f.brn.Generation:
		f.move(v1alpha1.PhaseStaged, v1alpha1.ActionStage, v1alpha1.ReasonWaitingForDisruption, "target staged; waiting for a disruption slot")
	case res != nil && res.Result == v1alpha1.ActionFailed && agent.ObservedGeneration == f.brn.Generation:
		f.fail(v1alpha1.ReasonStageFailed, res.Message)
	case f.deadline(stagingTimeout):
		f.fail(v1alpha1.ReasonStageTimeout, fmt.Sprintf("the target was not staged within %s", stagingTimeout))
	default:
		f.wait(v1alpha1.ReasonStaging, "the agent is downloading the target")
	}
}

func (r *RolloutReconciler) stepDraining(ctx context.Context, f *flight) error {
	spec := f.policy.Spec.Drain
	if err := r.cordon(ctx, f.node); err != nil {
		return err
	}
	res, err := r.evictPass(ctx, f.node, spec, r.otherCapacity(ctx, f.node.Name))
	if err != nil {
		return err
	}
	f.recordEvictedPDBs(res.pdbs)
	if res.remaining == 0 {
		f.move(v1alpha1.PhaseRebooting, v1alpha1.ActionReboot, v1alpha1.ReasonWaitingForReboot, "drained; the agent reboots the host into "+f.brn.Spec.TargetVersion)
		return nil
	}
	if f.deadline(durationOr(spec.Timeout, 15*time.Minute)) {
		if spec.OnTimeout == v1alpha1.DrainTimeoutForce {
			f.move(v1alpha1.PhaseRebooting, v1alpha1.ActionReboot, v1alpha1.ReasonWaitingForReboot,
				fmt.Sprintf("drain timed out with %d pods left; rebooting anyway (onTimeout: Force)", res.remaining))
			return nil
		}
		f.fail(v1alpha1.ReasonDrainTimeout, fmt.Sprintf("drain timed out with %d pods left: %s", res.remaining, res.message))
		return nil
	}
	f.poll = true
	if res.reason != "" {
		f.wait(res.reason, res.message)
	} else {
		f.wait(v1alpha1.ReasonEvicting, fmt.Sprintf("evicting %d pods", res.remaining))
	}
	return nil
}

func (r *RolloutReconciler) stepRebooting(f *flight) {
	agent := f.brn.Status.Agent
	res := f.agentResult(v1alpha1.ActionReboot)
	switch {
	case res != nil && res.Result == v1alpha1.ActionFailed:
		reason := res.Reason
		if reason == "" {
			reason = v1alpha1.ReasonRebootFailed
		}
		f.fail(reason, res.Message)
	case agent != nil && agent.RebootRecord != nil && agent.RebootRecord.ToVersion == f.brn.Spec.TargetVersion &&
		agent.BootID != agent.RebootRecord.BootID:
		f.move(v1alpha1.PhaseVerifying, v1alpha1.ActionReboot, v1alpha1.ReasonNodeNotReady, "the host rebooted; verifying it")
	case f.deadline(durationOr(f.policy.Spec.Health.ReadyTimeout, 10*time.Minute)):
		f.fail(v1alpha1.ReasonReadyTimeout, "the host did not come back within health.readyTimeout")
	default:
		f.wait(v1alpha1.ReasonWaitingForReboot, "waiting for the host to reboot")
	}
}

func (r *RolloutReconciler) stepVerifying(ctx context.Context, f *flight) error {
	if res := f.agentResult(v1alpha1.ActionReboot); res != nil && res.Result == v1alpha1.ActionFailed {
		f.fail(res.Reason, res.Message)
		return nil
	}
	c, err := r.verify(ctx, f.node, f.brn)
	if err != nil {
		return err
	}
	if c.ok() {
		// Schedulable again; the autoscaler guard stays until the node is Updated.
		if _, err := r.release(ctx, f.node, true); err != nil {
			return err
		}
		f.move(v1alpha1.PhaseStabilizing, v1alpha1.ActionNone, v1alpha1.ReasonStabilizing, "running "+f.brn.Spec.TargetVersion+"; uncordoned, watching workloads")
		return nil
	}
	if f.deadline(durationOr(f.policy.Spec.Health.ReadyTimeout, 10*time.Minute)) {
		f.fail(v1alpha1.ReasonReadyTimeout, "not verified within health.readyTimeout: "+c.message)
		return nil
	}
	f.poll = true
	f.wait(c.reason, c.message)
	return nil
}

func (r *RolloutReconciler) stepStabilizing(ctx context.Context, f *flight) error {
	c, err := r.stable(ctx, f.node, f.brn, f.policy.Spec.Health)
	if err != nil {
		return err
	}
	healthy := metav1.Condition{Type: conditionHealthy, Status: metav1.ConditionTrue, Reason: string(v1alpha1.ReasonStabilizing),
		Message: "node and workloads healthy", ObservedGeneration: f.brn.Generation, LastTransitionTime: metav1.NewTime(f.now)}
	if !c.ok() {
		healthy.Status, healthy.Reason, healthy.Message = metav1.ConditionFalse, string(c.reason), c.message
	}
	apimeta.SetStatusCondition(&f.brn.Status.Conditions, healthy)
	stableFor := durationOr(f.policy.Spec.Health.StableFor, time.Minute)
	switch {
	case c.ok():
		since := apimeta.FindStatusCondition(f.brn.Status.Conditions, conditionHealthy).LastTransitionTime.Time
		if !f.now.Before(since.Add(stableFor)) {
			f.move(v1alpha1.PhaseUpdated, v1alpha1.ActionNone, v1alpha1.ReasonUpToDate, "updated to "+f.brn.Spec.TargetVersion)
			return nil
		}
		f.wakeAt(since.Add(stableFor))
		f.wait(v1alpha1.ReasonStabilizing, fmt.Sprintf("healthy since %s; held for %s", since.UTC().Format(time.RFC3339), stableFor))
	// Only what is unhealthy now fails at the deadline: a node found healthy late (the
	// controller was away) is held for stableFor like any other.
	case f.deadline(durationOr(f.policy.Spec.Health.ReadyTimeout, 10*time.Minute) + stableFor):
		f.fail(v1alpha1.ReasonReadyTimeout, "workloads not healthy within health.readyTimeout: "+c.message)
		return nil
	default:
		f.wait(c.reason, c.message)
	}
	f.poll = true
	return nil
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
