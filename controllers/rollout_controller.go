package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// policyFinalizer lets a deleted UpdatePolicy release what it holds (cordons, intents) first.
const policyFinalizer = "updates.bottlerocket.aws/release-nodes"

// fleetRequest is the one work item of the rollout controller: every decision depends on the
// whole fleet, so any change to a policy, a node or a BottlerocketNode replans the fleet.
var fleetRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "fleet"}}

// RolloutReconciler turns the planner's decisions into intents, moves nodes in flight on
// evidence (drain, reboot, health), and writes every policy's status.
type RolloutReconciler struct {
	// Client reads Nodes, BottlerocketNodes and UpdatePolicies from the cache and writes.
	Client client.Client
	// APIReader reads pods and PodDisruptionBudgets straight from the API server: the
	// controller keeps no cluster-wide pod cache.
	APIReader client.Reader
	// Kube evicts pods.
	Kube kubernetes.Interface
	// Clock is the controller's only source of time.
	Clock clock.Clock
	// Recorder emits Events.
	Recorder events.EventRecorder
	// ControllerNode is the node the controller runs on; it is updated last.
	ControllerNode string
	// OperatorNamespace holds the operator's own pods, which are never evicted.
	OperatorNamespace string
	// PollInterval is how soon nodes whose progress depends on what is not watched (pods
	// being evicted, workloads becoming healthy) are looked at again.
	PollInterval time.Duration
}

// SetupWithManager registers the rollout controller.
func (r *RolloutReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.PollInterval == 0 {
		r.PollInterval = 5 * time.Second
	}
	fleet := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{fleetRequest}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("rollout").
		Watches(&v1alpha1.UpdatePolicy{}, fleet).
		Watches(&v1alpha1.BottlerocketNode{}, fleet).
		Watches(&corev1.Node{}, fleet).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// Reconcile plans the fleet and applies the plan.
func (r *RolloutReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	now := r.Clock.Now().Truncate(time.Second) // the API keeps seconds; so do we, to compare
	var (
		policies v1alpha1.UpdatePolicyList
		nodes    corev1.NodeList
		brns     v1alpha1.BottlerocketNodeList
	)
	for what, list := range map[string]client.ObjectList{"UpdatePolicies": &policies, "Nodes": &nodes, "BottlerocketNodes": &brns} {
		if err := r.Client.List(ctx, list); err != nil {
			return ctrl.Result{}, fmt.Errorf("listing %s: %w", what, err)
		}
	}

	if upstream, err := r.upstreamInstalled(ctx); err != nil || upstream {
		if err == nil {
			err = r.standAside(ctx, policies.Items, now)
		}
		return ctrl.Result{RequeueAfter: coexistenceRecheck}, err
	}
	active, deleting, err := r.preparePolicies(ctx, policies.Items, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	byName := make(map[string]*v1alpha1.BottlerocketNode, len(brns.Items))
	for i := range brns.Items {
		byName[brns.Items[i].Name] = &brns.Items[i]
	}
	in := planner.Input{Now: now, Policies: active, ControllerNode: r.ControllerNode}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if version, ok := bottlerocketVersion(n); ok && v1alpha1.CompareVersions(version, minSupportedVersion) >= 0 {
			in.Nodes = append(in.Nodes, planner.NodeState{Node: n, BRN: byName[n.Name]})
		}
	}
	plan := planner.Compute(in)

	policyByName := make(map[string]*v1alpha1.UpdatePolicy, len(active))
	for i := range active {
		policyByName[active[i].Name] = &active[i]
	}
	wake, poll := plan.NextWake, false
	var errs []error
	for i := range plan.Nodes {
		ns := in.Nodes[i]
		if ns.BRN == nil {
			continue // discovery creates it
		}
		if settled(&plan.Nodes[i], ns.Node, ns.BRN) {
			continue
		}
		f := &flight{node: ns.Node, orig: ns.BRN, brn: ns.BRN.DeepCopy(), policy: policyByName[plan.Nodes[i].Policy], d: &plan.Nodes[i], now: now}
		if err := r.applyNode(ctx, f); err != nil {
			if apierrors.IsConflict(err) {
				continue // planned from a stale cache; the watch event of the newer object replans
			}
			errs = append(errs, err)
			continue
		}
		wake, poll = earliest(wake, f.wake), poll || f.poll
	}
	for i := range active {
		if err := r.writePolicyStatus(ctx, &active[i], plan.Policies[active[i].Name], now); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, r.finalize(ctx, deleting, brns.Items))
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	updateFleetMetrics(in, plan)
	return r.requeue(wake, poll), nil
}

// requeue comes back at the earliest wake-up, or after PollInterval when progress depends on
// things the controller does not watch.
func (r *RolloutReconciler) requeue(wake time.Time, poll bool) ctrl.Result {
	var after time.Duration
	if !wake.IsZero() {
		after = max(wake.Sub(r.Clock.Now()), time.Millisecond)
	}
	if poll && (after == 0 || r.PollInterval < after) {
		after = r.PollInterval
	}
	return ctrl.Result{RequeueAfter: after}
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// preparePolicies adds the finalizer to live policies, acts on resume requests, and splits
// off the policies being deleted.
func (r *RolloutReconciler) preparePolicies(ctx context.Context, all []v1alpha1.UpdatePolicy, now time.Time) (active, deleting []v1alpha1.UpdatePolicy, err error) {
	for i := range all {
		p := &all[i]
		if !p.DeletionTimestamp.IsZero() {
			deleting = append(deleting, *p)
			continue
		}
		if !controllerutil.ContainsFinalizer(p, policyFinalizer) || p.Annotations[v1alpha1.AnnotationResume] != "" {
			if err := r.prepareObjectOf(ctx, p, now); err != nil {
				return nil, nil, err
			}
		}
		active = append(active, *p)
	}
	return active, deleting, nil
}

// prepareObjectOf adds the finalizer and turns a resume annotation into status.resumeTime.
func (r *RolloutReconciler) prepareObjectOf(ctx context.Context, p *v1alpha1.UpdatePolicy, now time.Time) error {
	orig := p.DeepCopy()
	controllerutil.AddFinalizer(p, policyFinalizer)
	_, resume := p.Annotations[v1alpha1.AnnotationResume]
	delete(p.Annotations, v1alpha1.AnnotationResume)
	if err := r.Client.Patch(ctx, p, client.MergeFrom(orig), client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("preparing UpdatePolicy %s: %w", p.Name, err)
	}
	if resume {
		statusOrig := p.DeepCopy()
		t := metaTime(now)
		p.Status.ResumeTime = &t
		if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(statusOrig), client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("resuming UpdatePolicy %s: %w", p.Name, err)
		}
		r.Recorder.Eventf(p, nil, corev1.EventTypeNormal, "Resumed", "Resume", "a person resumed the rollout; earlier failures no longer count")
	}
	return nil
}

// finalize lets a deleted policy go once none of its nodes is held any more; the plan has
// already released them (they are no longer governed).
func (r *RolloutReconciler) finalize(ctx context.Context, deleting []v1alpha1.UpdatePolicy, brns []v1alpha1.BottlerocketNode) error {
	for i := range deleting {
		p := &deleting[i]
		held := false
		for j := range brns {
			if brns[j].Spec.Policy == p.Name && brns[j].Status.Phase.Unavailable() {
				held = true
			}
		}
		if held || !controllerutil.ContainsFinalizer(p, policyFinalizer) {
			continue
		}
		orig := p.DeepCopy()
		controllerutil.RemoveFinalizer(p, policyFinalizer)
		if err := r.Client.Patch(ctx, p, client.MergeFrom(orig), client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("releasing deleted UpdatePolicy %s: %w", p.Name, err)
		}
	}
	return nil
}

// applyNode moves an in-flight node on evidence, then writes what changed: spec intent,
// the controller's status fields, cordon release, events and metrics.
func (r *RolloutReconciler) applyNode(ctx context.Context, f *flight) error {
	logger := log.FromContext(ctx).WithValues("node", f.node.Name)
	d := f.d
	if d.Phase == d.From && d.From.InFlight() && f.policy != nil {
		if err := r.step(ctx, f); err != nil {
			return fmt.Errorf("node %s in %s: %w", f.node.Name, d.From, err)
		}
	}
	if !holdsCordon(d.Phase) {
		if released, err := r.release(ctx, f.node, false); err != nil {
			return err
		} else if released {
			logger.Info("Released the node", "phase", d.Phase)
		}
	}

	orig, brn := f.orig, f.brn
	failedNow := d.Phase == v1alpha1.PhaseFailed && orig.Status.Phase != v1alpha1.PhaseFailed
	updatedNow := d.Phase == v1alpha1.PhaseUpdated && orig.Status.Phase != v1alpha1.PhaseUpdated
	switch {
	case failedNow:
		t := metaTime(f.now)
		brn.Status.FailedTarget, brn.Status.FailureCount, brn.Status.FailedTime = orig.Spec.TargetVersion, orig.Status.FailureCount+1, &t
	case updatedNow:
		t := metaTime(f.now)
		brn.Status.UpdatedTime, brn.Status.FailureCount, brn.Status.FailedTarget = &t, 0, ""
	}
	if d.Phase != v1alpha1.PhaseStabilizing {
		brn.Status.Conditions = nil
	}
	d.ApplyTo(brn, f.now)

	if _, retry := brn.Annotations[v1alpha1.AnnotationRetry]; retry && d.Phase != v1alpha1.PhaseFailed {
		delete(brn.Annotations, v1alpha1.AnnotationRetry)
	}
	if !holdsCordon(d.Phase) {
		delete(brn.Annotations, v1alpha1.AnnotationEvictedPDBs)
	}
	// Optimistic locking: a pass that planned from a cache older than our own last write is
	// refused (Conflict) instead of repeating a step; the watch brings the fresh object.
	lock := client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
	if !equality.Semantic.DeepEqual(orig.Spec, brn.Spec) || !equality.Semantic.DeepEqual(orig.Annotations, brn.Annotations) {
		// Patch a copy: the answer carries the status as stored, which would undo brn's.
		written := brn.DeepCopy()
		if err := r.Client.Patch(ctx, written, lock, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("writing the intent of BottlerocketNode %s: %w", brn.Name, err)
		}
		base := orig.DeepCopy()
		base.ResourceVersion = written.ResourceVersion
		lock = client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	}
	if !equality.Semantic.DeepEqual(orig.Status, brn.Status) {
		if err := r.Client.Status().Patch(ctx, brn, lock, client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("writing the status of BottlerocketNode %s: %w", brn.Name, err)
		}
	}
	switch {
	case failedNow:
		failures.WithLabelValues(d.Policy, string(d.Reason)).Inc()
	case updatedNow && orig.Status.UpdateStartTime != nil && orig.Status.Phase.InFlight():
		updateDuration.WithLabelValues(d.Policy).Observe(f.now.Sub(orig.Status.UpdateStartTime.Time).Seconds())
	}
	switch {
	case d.Phase != orig.Status.Phase && orig.Status.Phase != "":
		r.transitioned(ctx, f.node, brn, orig.Status.Phase)
	case d.Reason != orig.Status.Reason && blockingReasons[d.Reason]:
		// What holds a node up is said where people look, not only in its status.
		r.Recorder.Eventf(brn, f.node, corev1.EventTypeWarning, string(d.Reason), "Drain", "%s", d.Message)
		r.Recorder.Eventf(f.node, brn, corev1.EventTypeWarning, string(d.Reason), "Drain", "%s", d.Message)
	}
	return nil
}

// blockingReasons are the reasons a drain is held up; each new one is also an Event.
var blockingReasons = map[v1alpha1.Reason]bool{
	v1alpha1.ReasonEvictionBlocked: true, v1alpha1.ReasonMultiplePDBs: true, v1alpha1.ReasonNoCapacity: true,
}

// settled reports whether a node needs nothing this pass: not in flight, its object already
// says what the plan decides, and nothing of ours left on its Node. Most of a large fleet is
// settled at any time; skipping it keeps a pass cheap.
func settled(d *planner.NodeDecision, node *corev1.Node, brn *v1alpha1.BottlerocketNode) bool {
	st := &brn.Status
	_, cordoned := node.Annotations[v1alpha1.AnnotationCordonedBy]
	_, guarded := node.Annotations[v1alpha1.AnnotationAutoscalerGuard]
	_, retry := brn.Annotations[v1alpha1.AnnotationRetry]
	_, evicted := brn.Annotations[v1alpha1.AnnotationEvictedPDBs]
	return !d.From.InFlight() && !evicted && d.Phase == d.From && !cordoned && !guarded && !retry &&
		d.Reason == st.Reason && d.Message == st.Message && d.Wave == st.Wave && d.RolloutTarget == st.RolloutTarget &&
		d.Action == brn.Spec.Action && d.TargetVersion == brn.Spec.TargetVersion && d.Policy == brn.Spec.Policy &&
		len(st.Conditions) == 0
}

// holdsCordon reports whether a node in this phase keeps the cordon (and the autoscaler
// guard) the operator put on it.
func holdsCordon(p v1alpha1.NodePhase) bool {
	return p == v1alpha1.PhaseDraining || p == v1alpha1.PhaseRebooting || p == v1alpha1.PhaseVerifying || p == v1alpha1.PhaseStabilizing
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
	log.FromContext(ctx).Info("Node moved", "node", node.Name, "from", from, "to", brn.Status.Phase, "reason", brn.Status.Reason)
}

// otherCapacity reports whether some other Ready, schedulable node could take evicted pods.
func (r *RolloutReconciler) otherCapacity(ctx context.Context, nodeName string) bool {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return true // unknown: let the drain deadline decide
	}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		if n.Name != nodeName && !kubeutil.NodeUnavailable(n) {
			return true
		}
	}
	return false
}
