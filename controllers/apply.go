package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// applyNodes writes every node's decision that changes something. A node planned from a
// cache older than somebody else's last write is skipped (Conflict): the watch event of the
// newer object plans again. (Our own writes are always in the view: see catchUp.)
func (r *RolloutReconciler) applyNodes(ctx context.Context, in planner.Input, plan planner.Plan) error {
	var errs []error
	// The nodes that change phase first: the others' writes (a reason or a message) would
	// otherwise delay each move by as many requests as come before it in name order.
	for _, moves := range []bool{true, false} {
		for i := range plan.Nodes {
			ns, d := in.Nodes[i], &plan.Nodes[i]
			if (d.Phase != d.From) != moves || ns.BRN == nil || settled(d, ns.Node, ns.BRN) {
				continue // discovery creates a missing BottlerocketNode
			}
			nodeCtx := log.IntoContext(ctx, log.FromContext(ctx).WithValues("node", ns.Node.Name))
			if err := r.applyNode(nodeCtx, ns, d, in.Now); err != nil && !apierrors.IsConflict(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// applyNode applies one node's decision: what the phase holds on its Node, then its
// BottlerocketNode, then the Events and metrics of what changed.
func (r *RolloutReconciler) applyNode(ctx context.Context, ns planner.NodeState, d *planner.NodeDecision, now time.Time) error {
	if err := r.hold(ctx, ns.Node, planner.HoldFor(d.Phase)); err != nil {
		return err
	}
	brn := ns.BRN.DeepCopy()
	d.ApplyTo(brn, now)
	if err := r.writeBRN(ctx, ns.BRN, brn); err != nil {
		return err
	}
	delete(r.unrecorded, brn.Name) // the decision written carried them
	r.record(ctx, ns.Node, ns.BRN, brn, d, now)
	return nil
}

// hold keeps on the Node what the phase holds: a node that no longer holds its cordon is
// uncordoned (if we cordoned it), and loses the autoscaler guard once it needs none. The
// cordon itself is set by the eviction pass.
func (r *RolloutReconciler) hold(ctx context.Context, node *corev1.Node, h planner.NodeHold) error {
	if h == planner.HoldCordon {
		return nil
	}
	released, err := r.release(ctx, node, h == planner.HoldGuard)
	if released {
		log.FromContext(ctx).Info("Released the node", "keepAutoscalerGuard", h == planner.HoldGuard)
	}
	return err
}

// writeBRN writes what changed of a BottlerocketNode: spec and annotations, then status,
// each under the optimistic lock of the object as read, so that a pass planned from a cache
// older than our own last write is refused (Conflict) instead of repeating a step.
func (r *RolloutReconciler) writeBRN(ctx context.Context, orig, brn *v1alpha1.BottlerocketNode) error {
	lock := client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
	if !equality.Semantic.DeepEqual(orig.Spec, brn.Spec) || !equality.Semantic.DeepEqual(orig.Annotations, brn.Annotations) {
		// Patch a copy: the answer carries the status as stored, which would undo brn's.
		written := brn.DeepCopy()
		if err := r.Client.Patch(ctx, written, lock, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("writing the intent of BottlerocketNode %s: %w", brn.Name, err)
		}
		r.expect.wrote(written)
		base := orig.DeepCopy()
		base.ResourceVersion = written.ResourceVersion
		lock = client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	}
	if !equality.Semantic.DeepEqual(orig.Status, brn.Status) {
		if err := r.Client.Status().Patch(ctx, brn, lock, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("writing the status of BottlerocketNode %s: %w", brn.Name, err)
		}
		r.expect.wrote(brn)
	}
	return nil
}

// record counts a failure or an update in the metrics and says a phase change, or a new
// reason a drain is held up, in Events on the BottlerocketNode and the Node.
func (r *RolloutReconciler) record(ctx context.Context, node *corev1.Node, orig, brn *v1alpha1.BottlerocketNode, d *planner.NodeDecision, now time.Time) {
	switch {
	case d.FailedNow():
		failures.WithLabelValues(d.Policy, string(d.Reason)).Inc()
	case d.UpdatedNow() && orig.Status.UpdateStartTime != nil && orig.Status.Phase.InFlight():
		updateDuration.WithLabelValues(d.Policy).Observe(now.Sub(orig.Status.UpdateStartTime.Time).Seconds())
		recordProgress(d.Policy, now)
	}
	switch {
	case d.Phase != orig.Status.Phase && orig.Status.Phase != "":
		r.transitioned(ctx, node, brn, orig.Status.Phase)
	case d.Reason != orig.Status.Reason && blockingReasons[d.Reason]:
		// What holds a node up is said where people look, not only in its status.
		r.Recorder.Eventf(brn, node, corev1.EventTypeWarning, string(d.Reason), "Drain", "%s", d.Message)
		r.Recorder.Eventf(node, brn, corev1.EventTypeWarning, string(d.Reason), "Drain", "%s", d.Message)
	}
}

// blockingReasons are the reasons a drain is held up; each new one is also an Event.
var blockingReasons = map[v1alpha1.Reason]bool{
	v1alpha1.ReasonEvictionBlocked: true, v1alpha1.ReasonMultiplePDBs: true, v1alpha1.ReasonNoCapacity: true,
	v1alpha1.ReasonDrainRefused: true,
}

// settled reports whether a node needs nothing this pass: not in flight, its object already
// says what the plan decides, and nothing of ours left on its Node. Most of a large fleet is
// settled at any time; skipping it keeps a pass cheap.
func settled(d *planner.NodeDecision, node *corev1.Node, brn *v1alpha1.BottlerocketNode) bool {
	st := &brn.Status
	_, cordoned := node.Annotations[v1alpha1.AnnotationCordonedBy]
	_, guarded := node.Annotations[v1alpha1.AnnotationAutoscalerGuard]
	_, retry := brn.Annotations[v1alpha1.AnnotationRetry]
	return !d.From.InFlight() && d.Phase == d.From && !cordoned && !guarded && !retry &&
		d.Reason == st.Reason && d.Message == st.Message && d.Wave == st.Wave && d.RolloutTarget == st.RolloutTarget &&
		d.Action == brn.Spec.Action && d.TargetVersion == brn.Spec.TargetVersion && d.Policy == brn.Spec.Policy &&
		len(st.Conditions) == 0 && len(st.EvictedPDBs) == 0 && st.HealthySince == nil
}

// transitioned reports a phase change as an Event on the BottlerocketNode and the Node.
func (r *RolloutReconciler) transitioned(ctx context.Context, node *corev1.Node, brn *v1alpha1.BottlerocketNode, from v1alpha1.NodePhase) {
	kind := corev1.EventTypeNormal
	if brn.Status.Phase == v1alpha1.PhaseFailed {
		kind = corev1.EventTypeWarning
	}
	note := fmt.Sprintf("%s -> %s: %s", from, brn.Status.Phase, brn.Status.Message)
	reason := string(brn.Status.Phase)
	r.Recorder.Eventf(brn, node, kind, reason, "Update", "%s", note)
	r.Recorder.Eventf(node, brn, kind, reason, "Update", "%s", note)
	log.FromContext(ctx).Info("Node moved", "from", from, "to", brn.Status.Phase, "reason", brn.Status.Reason)
}
