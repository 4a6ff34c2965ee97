package controllers

import (
	"testing"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// wantCondition is a condition's expected status and reason.
type wantCondition struct {
	status metav1.ConditionStatus
	reason v1alpha1.Reason
}

// TestPolicyConditions checks the policy conditions of each kind of rollout, and that they
// keep the kstatus contract: Ready only when every governed node runs the target; Stalled
// when the rollout cannot go on without a person, and then never Progressing.
func TestPolicyConditions(t *testing.T) {
	T, F := metav1.ConditionTrue, metav1.ConditionFalse
	tests := []struct {
		name string
		rep  planner.PolicyReport
		want map[string]wantCondition
	}{
		{"complete", planner.PolicyReport{Phase: v1alpha1.RolloutUpToDate, Counts: v1alpha1.NodeCounts{Total: 2, Updated: 2}},
			map[string]wantCondition{
				v1alpha1.ConditionReady:       {T, v1alpha1.ReasonRolloutComplete},
				v1alpha1.ConditionProgressing: {F, v1alpha1.ReasonRolloutComplete},
				v1alpha1.ConditionStalled:     {F, v1alpha1.ReasonHealthy},
			}},
		{"ended with failed nodes", planner.PolicyReport{Phase: v1alpha1.RolloutUpToDate, FailedNodes: 1, Counts: v1alpha1.NodeCounts{Total: 3, Updated: 2, Failed: 1}},
			map[string]wantCondition{
				v1alpha1.ConditionReady:       {F, v1alpha1.ReasonRolloutEndedWithFailures},
				v1alpha1.ConditionProgressing: {F, v1alpha1.ReasonRolloutEndedWithFailures},
				v1alpha1.ConditionStalled:     {T, v1alpha1.ReasonRolloutEndedWithFailures},
				v1alpha1.ConditionDegraded:    {T, v1alpha1.ReasonRolloutEndedWithFailures},
			}},
		{"halted at the failure budget", planner.PolicyReport{Phase: v1alpha1.RolloutHalted, Halted: true, FailedNodes: 1, Counts: v1alpha1.NodeCounts{Total: 2, Failed: 1, Pending: 1}},
			map[string]wantCondition{
				v1alpha1.ConditionReady:       {F, v1alpha1.ReasonFailureBudgetSpent},
				v1alpha1.ConditionProgressing: {F, v1alpha1.ReasonFailureBudgetSpent},
				v1alpha1.ConditionStalled:     {T, v1alpha1.ReasonFailureBudgetSpent},
				v1alpha1.ConditionDegraded:    {T, v1alpha1.ReasonFailureBudgetSpent},
			}},
		{"invalid", planner.PolicyReport{Phase: v1alpha1.RolloutInvalid, Invalid: "bad schedule", InvalidReason: v1alpha1.ReasonInvalidSchedule, Counts: v1alpha1.NodeCounts{Total: 1, Pending: 1}},
			map[string]wantCondition{
				v1alpha1.ConditionReady:       {F, v1alpha1.ReasonInvalidSchedule},
				v1alpha1.ConditionProgressing: {F, v1alpha1.ReasonInvalidSchedule},
				v1alpha1.ConditionStalled:     {T, v1alpha1.ReasonInvalidSchedule},
			}},
		{"conflicting", planner.PolicyReport{Phase: v1alpha1.RolloutInvalid, ConflictsWith: []string{"other"}},
			map[string]wantCondition{
				v1alpha1.ConditionReady:       {F, v1alpha1.ReasonPolicyConflict},
				v1alpha1.ConditionProgressing: {F, v1alpha1.ReasonPolicyConflict},
				v1alpha1.ConditionStalled:     {T, v1alpha1.ReasonPolicyConflict},
			}},
		{"in progress with a failed node under the budget", planner.PolicyReport{Phase: v1alpha1.RolloutProgressing, FailedNodes: 1, NextNodes: []string{"b"}, Counts: v1alpha1.NodeCounts{Total: 3, Failed: 1, InProgress: 1, Pending: 1}},
			map[string]wantCondition{
				v1alpha1.ConditionReady:       {F, v1alpha1.ReasonRolloutInProgress},
				v1alpha1.ConditionProgressing: {T, v1alpha1.ReasonRolloutInProgress},
				v1alpha1.ConditionStalled:     {F, v1alpha1.ReasonHealthy},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := policyConditions(&v1alpha1.UpdatePolicy{}, tt.rep)
			for typ, want := range tt.want {
				c := apimeta.FindStatusCondition(got, typ)
				if c == nil {
					t.Fatalf("no %s condition in %+v", typ, got)
				}
				if c.Status != want.status || c.Reason != string(want.reason) {
					t.Errorf("%s = %s/%s, want %s/%s (%s)", typ, c.Status, c.Reason, want.status, want.reason, c.Message)
				}
			}
			if apimeta.IsStatusConditionTrue(got, v1alpha1.ConditionStalled) && apimeta.IsStatusConditionTrue(got, v1alpha1.ConditionProgressing) {
				t.Errorf("Stalled and Progressing are both True")
			}
		})
	}
}
