package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// writePolicyStatus computes the policy's status from the plan and writes it if it changed.
func (r *RolloutReconciler) writePolicyStatus(ctx context.Context, p *v1alpha1.UpdatePolicy, rep planner.PolicyReport, now time.Time) error {
	st := p.Status.DeepCopy()
	rep.ApplyTo(st)
	for _, c := range policyConditions(p, rep) {
		c.ObservedGeneration = p.Generation
		c.LastTransitionTime = metaTime(now)
		apimeta.SetStatusCondition(&st.Conditions, c)
	}
	st.ObservedGeneration = p.Generation
	updatePolicyMetrics(p, rep, now)
	if equality.Semantic.DeepEqual(&p.Status, st) {
		return nil
	}
	orig := p.DeepCopy()
	p.Status = *st
	if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(orig), client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("writing the status of UpdatePolicy %s: %w", p.Name, err)
	}
	r.expect.wrote(p)
	return nil
}

// policyConditions computes the five conditions from the world, one small rule each.
func policyConditions(p *v1alpha1.UpdatePolicy, rep planner.PolicyReport) []metav1.Condition {
	st := stallOf(rep)
	return []metav1.Condition{readyCondition(rep, st), progressingCondition(rep, st), stalledCondition(st), pausedCondition(p), degradedCondition(st)}
}

// invalidReason is the condition reason of an invalid policy.
func invalidReason(rep planner.PolicyReport) v1alpha1.Reason {
	if rep.InvalidReason != "" {
		return rep.InvalidReason
	}
	return v1alpha1.ReasonInvalidSpec
}

func cond(t string, ok bool, reason v1alpha1.Reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: string(reason), Message: msg}
}

// stall is why a rollout cannot go on without a person; the zero value: it can.
type stall struct {
	reason  v1alpha1.Reason
	message string
}

func (s stall) stalled() bool { return s.reason != "" }

// stallOf says whether, and why, the rollout cannot go on without a person: it halted at its
// failure budget, it ended with Failed nodes, the policy is invalid or conflicts.
func stallOf(rep planner.PolicyReport) stall {
	switch {
	case rep.Invalid != "":
		return stall{invalidReason(rep), rep.Invalid}
	case len(rep.ConflictsWith) > 0:
		return stall{v1alpha1.ReasonPolicyConflict,
			"selects nodes also selected by " + strings.Join(rep.ConflictsWith, ", ") + "; those nodes are governed by neither"}
	case rep.Halted:
		return stall{v1alpha1.ReasonFailureBudgetSpent,
			fmt.Sprintf("%d nodes failed for %s; no new node starts until a person resumes the rollout (annotate %s) or changes the version",
				rep.FailedNodes, rep.TargetVersion, v1alpha1.AnnotationResume)}
	case rep.Phase == v1alpha1.RolloutUpToDate && rep.Counts.Failed > 0:
		return stall{v1alpha1.ReasonRolloutEndedWithFailures,
			fmt.Sprintf("the rollout to %s ended with %d Failed nodes (%s updated); retry them (annotate %s) or change the version",
				rep.TargetVersion, rep.Counts.Failed, rep.Progress, v1alpha1.AnnotationRetry)}
	}
	return stall{}
}

// readyCondition: True when the policy is valid and every governed node runs the target.
func readyCondition(rep planner.PolicyReport, st stall) metav1.Condition {
	switch {
	case st.stalled():
		return cond(v1alpha1.ConditionReady, false, st.reason, st.message)
	case rep.Counts.Total == 0:
		return cond(v1alpha1.ConditionReady, true, v1alpha1.ReasonNoNodes, "the policy selects no Bottlerocket node")
	case rep.Phase == v1alpha1.RolloutUpToDate:
		return cond(v1alpha1.ConditionReady, true, v1alpha1.ReasonRolloutComplete, fmt.Sprintf("%s nodes run %s", rep.Progress, rep.TargetVersion))
	}
	return cond(v1alpha1.ConditionReady, false, v1alpha1.ReasonRolloutInProgress, fmt.Sprintf("%s nodes updated to %s", rep.Progress, rep.TargetVersion))
}

// progressingCondition: True while the rollout moves nodes or waits to move them; False
// whenever it is stalled (kstatus).
func progressingCondition(rep planner.PolicyReport, st stall) metav1.Condition {
	if st.stalled() {
		return cond(v1alpha1.ConditionProgressing, false, st.reason, st.message)
	}
	switch rep.Phase {
	case v1alpha1.RolloutProgressing:
		return cond(v1alpha1.ConditionProgressing, true, v1alpha1.ReasonRolloutInProgress, "next: "+strings.Join(rep.NextNodes, ", "))
	case v1alpha1.RolloutWaiting:
		return cond(v1alpha1.ConditionProgressing, true, v1alpha1.ReasonRolloutWaiting, "the rollout waits (window, soak, pause or budget); see the nodes' reasons")
	case v1alpha1.RolloutPaused:
		return cond(v1alpha1.ConditionProgressing, false, v1alpha1.ReasonPaused, "the policy is paused or in dry-run")
	}
	return cond(v1alpha1.ConditionProgressing, false, v1alpha1.ReasonRolloutComplete, "nothing to do")
}

// stalledCondition: the kstatus Stalled condition, True when the rollout cannot go on
// without a person.
func stalledCondition(st stall) metav1.Condition {
	if st.stalled() {
		return cond(v1alpha1.ConditionStalled, true, st.reason, st.message)
	}
	return cond(v1alpha1.ConditionStalled, false, v1alpha1.ReasonHealthy, "")
}

// pausedCondition: True when spec.paused or spec.dryRun is set.
func pausedCondition(p *v1alpha1.UpdatePolicy) metav1.Condition {
	switch {
	case p.Spec.Paused:
		return cond(v1alpha1.ConditionPaused, true, v1alpha1.ReasonPaused, "spec.paused: nothing new starts; nodes in flight finish")
	case p.Spec.DryRun:
		return cond(v1alpha1.ConditionPaused, true, v1alpha1.ReasonDryRun, "spec.dryRun: decisions are reported, none applied")
	}
	return cond(v1alpha1.ConditionPaused, false, v1alpha1.ReasonNotPaused, "")
}

// degradedCondition: True when the rollout halted or ended with failures, the policy is
// invalid, or it conflicts: whenever it is stalled.
func degradedCondition(st stall) metav1.Condition {
	if st.stalled() {
		return cond(v1alpha1.ConditionDegraded, true, st.reason, st.message)
	}
	return cond(v1alpha1.ConditionDegraded, false, v1alpha1.ReasonHealthy, "")
}

func metaTime(t time.Time) metav1.Time { return metav1.NewTime(t) }
