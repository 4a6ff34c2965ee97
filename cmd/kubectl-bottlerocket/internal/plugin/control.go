package plugin

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// Change is what a control command does to one object: a JSON merge patch (nil when the
// object already says what the command asks) and what to tell the person.
type Change struct {
	Patch   []byte
	Message string
}

func mergePatch(v map[string]any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshalling a patch of plain maps: %v", err)) // cannot happen
	}
	return b
}

func annotations(values map[string]any) []byte {
	return mergePatch(map[string]any{"metadata": map[string]any{"annotations": values}})
}

// PlanPause sets spec.paused (docs: kubectl patch upol POLICY --type merge -p '{"spec":{"paused":true}}').
func PlanPause(p *v1alpha1.UpdatePolicy) Change {
	ref := "updatepolicy/" + p.Name
	if p.Spec.Paused {
		return Change{Message: ref + " already paused (no change)"}
	}
	return Change{
		Patch:   mergePatch(map[string]any{"spec": map[string]any{"paused": true}}),
		Message: ref + " paused: no new node starts; nodes in flight finish their update",
	}
}

// Halted reports whether the policy's rollout halted at its failure budget, as its status says.
func Halted(p *v1alpha1.UpdatePolicy) bool {
	if p.Status.Phase == v1alpha1.RolloutHalted {
		return true
	}
	c := meta.FindStatusCondition(p.Status.Conditions, v1alpha1.ConditionStalled)
	return c != nil && c.Status == "True" && c.Reason == string(v1alpha1.ReasonFailureBudgetSpent)
}

// PlanResume undoes what stops a rollout: it clears spec.paused when set, and when the rollout
// halted at its failure budget it asks the controller to resume it (docs: kubectl annotate upol
// POLICY updates.bottlerocket.aws/resume=$(date +%s)), in one patch. A rollout neither paused
// nor halted is left alone: a resume annotation would also forgive its earlier failures.
func PlanResume(p *v1alpha1.UpdatePolicy, now time.Time) Change {
	ref := "updatepolicy/" + p.Name
	_, pending := p.Annotations[v1alpha1.AnnotationResume]
	halted := Halted(p) && !pending
	patch := map[string]any{}
	var did []string
	if p.Spec.Paused {
		patch["spec"] = map[string]any{"paused": false}
		did = append(did, "unpaused")
	}
	if halted {
		patch["metadata"] = map[string]any{"annotations": map[string]any{
			v1alpha1.AnnotationResume: strconv.FormatInt(now.Unix(), 10)}}
		did = append(did, "resumed after its halt (failures so far no longer count toward failurePolicy.maxFailedNodes)")
	}
	switch {
	case len(did) == 0 && pending:
		return Change{Message: ref + " resume already requested; the controller has not acted on it yet (no change)"}
	case len(did) == 0:
		return Change{Message: ref + " is neither paused nor halted (no change)"}
	}
	msg := ref + " " + did[0]
	if len(did) > 1 {
		msg += " and " + did[1]
	}
	return Change{Patch: mergePatch(patch), Message: msg}
}

// PlanRetry asks the controller to retry a Failed node (docs: kubectl annotate brn NODE
// updates.bottlerocket.aws/retry=$(date +%s)). A node that is not Failed has nothing to retry.
func PlanRetry(n *v1alpha1.BottlerocketNode, now time.Time) Change {
	ref := "bottlerocketnode/" + n.Name
	if n.Status.Phase != v1alpha1.PhaseFailed {
		return Change{Message: fmt.Sprintf("%s is %s, not Failed: nothing to retry (no change)", ref, dash(string(n.Status.Phase)))}
	}
	if _, ok := n.Annotations[v1alpha1.AnnotationRetry]; ok {
		return Change{Message: ref + " retry already requested; the controller has not acted on it yet (no change)"}
	}
	return Change{
		Patch:   annotations(map[string]any{v1alpha1.AnnotationRetry: strconv.FormatInt(now.Unix(), 10)}),
		Message: fmt.Sprintf("%s retry requested: the controller tries it again for %s", ref, orUnknown(n.Status.FailedTarget)),
	}
}

// PlanExclude keeps the operator from updating a node (docs: kubectl annotate node NODE
// updates.bottlerocket.aws/exclude=true).
func PlanExclude(n *corev1.Node) Change {
	ref := "node/" + n.Name
	if n.Annotations[v1alpha1.AnnotationExclude] == "true" {
		return Change{Message: ref + " already excluded (no change)"}
	}
	return Change{
		Patch:   annotations(map[string]any{v1alpha1.AnnotationExclude: "true"}),
		Message: ref + " excluded: the operator does not update it (an update under way is released once the node is back)",
	}
}

// PlanInclude undoes PlanExclude: it removes the exclude annotation, whatever its value.
func PlanInclude(n *corev1.Node) Change {
	ref := "node/" + n.Name
	if _, ok := n.Annotations[v1alpha1.AnnotationExclude]; !ok {
		return Change{Message: ref + " is not excluded (no change)"}
	}
	return Change{
		Patch:   annotations(map[string]any{v1alpha1.AnnotationExclude: nil}),
		Message: ref + " included: the policy selecting it updates it again",
	}
}
