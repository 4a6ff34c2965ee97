package controllers

import (
	"encoding/json"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// TestKstatus: kstatus (what Flux and cli-utils based tools read) reports a done policy
// Current, a rolling one InProgress and a halted one Failed, from the status the controller
// writes (conditions and observedGeneration as writePolicyStatus sets them).
func TestKstatus(t *testing.T) {
	tests := []struct {
		name string
		rep  planner.PolicyReport
		want status.Status
	}{
		{"done", planner.PolicyReport{Phase: v1alpha1.RolloutUpToDate, TargetVersion: "1.26.0", Progress: "3/3",
			Counts: v1alpha1.NodeCounts{Total: 3, Updated: 3}}, status.CurrentStatus},
		{"rolling", planner.PolicyReport{Phase: v1alpha1.RolloutProgressing, TargetVersion: "1.26.0", Progress: "1/3", NextNodes: []string{"b"},
			Counts: v1alpha1.NodeCounts{Total: 3, Updated: 1, InProgress: 1, Pending: 1}}, status.InProgressStatus},
		{"waiting for a window", planner.PolicyReport{Phase: v1alpha1.RolloutWaiting, TargetVersion: "1.26.0", Progress: "1/3",
			Counts: v1alpha1.NodeCounts{Total: 3, Updated: 1, Pending: 2}}, status.InProgressStatus},
		{"halted", planner.PolicyReport{Phase: v1alpha1.RolloutHalted, TargetVersion: "1.26.0", Progress: "1/3", Halted: true, FailedNodes: 1,
			Counts: v1alpha1.NodeCounts{Total: 3, Updated: 1, Failed: 1, Pending: 1}}, status.FailedStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var u unstructured.Unstructured
			if err := u.UnmarshalJSON(policyAsWritten(t, v1alpha1.UpdatePolicySpec{}, tt.rep)); err != nil {
				t.Fatal(err)
			}
			res, err := status.Compute(&u)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.want {
				t.Errorf("kstatus %s (%s), want %s; status %+v", res.Status, res.Message, tt.want, u.Object["status"])
			}
		})
	}
}

// policyAsWritten is an UpdatePolicy with spec and the status the controller writes for rep
// (as writePolicyStatus sets it), in JSON as the API serves it.
func policyAsWritten(t *testing.T, spec v1alpha1.UpdatePolicySpec, rep planner.PolicyReport) []byte {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &v1alpha1.UpdatePolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "UpdatePolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "fleet", Generation: 4},
		Spec:       spec,
	}
	rep.ApplyTo(&p.Status)
	for _, c := range policyConditions(p, rep) {
		c.ObservedGeneration, c.LastTransitionTime = p.Generation, metaTime(now)
		apimeta.SetStatusCondition(&p.Status.Conditions, c)
	}
	p.Status.ObservedGeneration = p.Generation
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
