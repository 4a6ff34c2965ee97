package planner

import (
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// MaxDeletedNodes bounds UpdatePolicy status.deletedNodes (the API's limit).
const MaxDeletedNodes = 32

// DeletedMidUpdate reports whether the BottlerocketNode of a Node that is gone records a
// failure: we held the node cordoned (Draining, Rebooting, Verifying) under a policy, so the
// Node was deleted mid-update — an autoscaler replacing the instances of a bad image, say.
func DeletedMidUpdate(brn *v1alpha1.BottlerocketNode) bool {
	return HoldFor(brn.Status.Phase) == HoldCordon && brn.Spec.Policy != ""
}

// recordDeleted returns the policy's status.deletedNodes with the nodes deleted mid-update
// under it added (once per node and target), the newest MaxDeletedNodes.
func recordDeleted(p *v1alpha1.UpdatePolicy, deleted []*v1alpha1.BottlerocketNode, now time.Time) []v1alpha1.DeletedNode {
	out := p.Status.DeletedNodes
	for _, brn := range deleted {
		if brn.Spec.Policy != p.Name || !DeletedMidUpdate(brn) {
			continue
		}
		recorded := slices.ContainsFunc(out, func(d v1alpha1.DeletedNode) bool {
			return d.Name == brn.Name && d.TargetVersion == brn.Spec.TargetVersion
		})
		if !recorded {
			out = append(slices.Clip(out), v1alpha1.DeletedNode{Name: brn.Name, TargetVersion: brn.Spec.TargetVersion,
				Phase: brn.Status.Phase, Reason: v1alpha1.ReasonNodeDeleted, Time: metav1.NewTime(now)})
		}
	}
	if n := len(out); n > MaxDeletedNodes {
		out = out[n-MaxDeletedNodes:]
	}
	return out
}
