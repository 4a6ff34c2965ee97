package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
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
)

// policyFinalizer lets a deleted UpdatePolicy release what it holds (cordons, intents) first.
const policyFinalizer = "updates.bottlerocket.aws/release-nodes"

// fleetRequest is the one work item of the rollout controller: every decision depends on the
// whole fleet, so any change to a policy, a node or a BottlerocketNode replans the fleet.
var fleetRequest = reconcile.Request{NamespacedName: types.NamespacedName{Name: "fleet"}}

// RolloutReconciler gathers the evidence the planner asks for (eviction passes, pods,
// budgets), lets the planner decide every node's next step, and writes the result: intents,
// the controller's status fields, cordons, every policy's status. It decides nothing itself.
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

	// fleet holds the cache's Nodes and BottlerocketNodes, paired and in name order.
	fleet *fleetIndex
	// memo carries what the planner derived of unchanged nodes to the next pass. Only the
	// single worker touches it.
	memo planner.Memo
	// expect holds our last writes of BottlerocketNodes, which a pass's view must include.
	expect expectations
	// unrecorded holds, per node, the PodDisruptionBudgets its pods were evicted from that
	// no successful write of its status has recorded yet: the pods are gone, so no later
	// eviction pass would name them again. Only the single worker touches it.
	unrecorded map[string][]string
}

// SetupWithManager registers the rollout controller.
func (r *RolloutReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.PollInterval == 0 {
		r.PollInterval = 5 * time.Second
	}
	r.fleet = newFleetIndex()
	fleet := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{fleetRequest}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("rollout").
		Watches(&v1alpha1.UpdatePolicy{}, fleet).
		Watches(&v1alpha1.BottlerocketNode{}, fleetHandler{r.fleet}).
		Watches(&corev1.Node{}, fleetHandler{r.fleet}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// world is what one pass reads from the cache.
type world struct {
	now      time.Time
	policies v1alpha1.UpdatePolicyList
	fleet    []fleetEntry // in name order
}

// Reconcile makes one pass over the fleet: it reads the world, gathers the evidence the
// planner asks for, lets the planner decide, and applies the plan.
func (r *RolloutReconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	w, err := r.read(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	if wait, err := r.catchUp(ctx, w); wait || err != nil {
		return ctrl.Result{RequeueAfter: cacheCatchUpWait}, err
	}
	if upstream, err := r.upstreamInstalled(ctx); err != nil || upstream {
		if err == nil {
			err = r.standAside(ctx, w.policies.Items, w.now)
		}
		return ctrl.Result{RequeueAfter: coexistenceRecheck}, err
	}
	active, deleting, err := r.preparePolicies(ctx, w.policies.Items, w.now)
	if err != nil {
		return ctrl.Result{}, err
	}
	in := r.plannerInput(w, active)
	r.gather(ctx, &in)
	plan := planner.Compute(in)
	errs := []error{r.applyNodes(ctx, in, plan)}
	for i := range active {
		errs = append(errs, r.writePolicyStatus(ctx, &active[i], plan.Policies[active[i].Name], w.now))
	}
	if err := errors.Join(errs...); err == nil {
		// Recorded in their policies' status: the BottlerocketNodes of deleted Nodes can go.
		errs = append(errs, r.forgetDeleted(ctx, in.Deleted))
	}
	errs = append(errs, r.finalize(ctx, deleting, brnsOf(w.fleet)))
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	updateFleetMetrics(in, plan)
	return r.requeue(plan.NextWake, plan.Poll), nil
}

// read gathers what a pass decides from, at the time of the pass (the API keeps seconds; so
// do we, to compare). The Nodes and BottlerocketNodes are the cache's own objects, not copies
// (a copy of the fleet on every pass was most of a pass's cost at 15,000 nodes): nothing of
// the pass may change them in place; what is written is a copy (DeepCopy before any change).
func (r *RolloutReconciler) read(ctx context.Context) (*world, error) {
	w := &world{now: r.Clock.Now().Truncate(time.Second)}
	if err := r.Client.List(ctx, &w.policies); err != nil {
		return nil, fmt.Errorf("listing UpdatePolicies: %w", err)
	}
	w.fleet = r.fleet.snapshot()
	return w, nil
}

// catchUp makes sure the pass plans from a view that holds the controller's own last writes
// of BottlerocketNodes and UpdatePolicies: when the cache lags behind them, it asks to try
// again shortly (wait), and after cacheCatchUpTries such waits reads them from the API server.
func (r *RolloutReconciler) catchUp(ctx context.Context, w *world) (wait bool, err error) {
	missing := r.expect.behind(brnsOf(w.fleet), w.policies.Items)
	if missing == 0 {
		r.expect.caughtUp()
		return false, nil
	}
	logger := log.FromContext(ctx)
	if r.expect.wait() {
		logger.V(1).Info("Waiting for the cache to hold our own writes", "missing", missing)
		return true, nil
	}
	var brns v1alpha1.BottlerocketNodeList
	var policies v1alpha1.UpdatePolicyList
	for what, list := range map[string]client.ObjectList{"BottlerocketNodes": &brns, "UpdatePolicies": &policies} {
		if err := r.APIReader.List(ctx, list); err != nil {
			return false, fmt.Errorf("reading %s from the API server (the cache lags behind our writes): %w", what, err)
		}
	}
	logger.Info("Planning from the API server: the cache lags behind our own writes", "missing", missing)
	w.fleet, w.policies = pairByName(nodesOf(w.fleet), pointers(brns.Items)), policies
	r.expect.behind(pointers(brns.Items), policies.Items)
	return false, nil
}

// plannerInput is the planner's input from the pass's view.
func (r *RolloutReconciler) plannerInput(w *world, active []v1alpha1.UpdatePolicy) planner.Input {
	in := plannerInput(w.now, w.fleet, active, r.ControllerNode)
	in.Memo = &r.memo
	return in
}

// forgetDeleted deletes the BottlerocketNodes of Nodes deleted mid-update, once the pass has
// recorded them in their policies' status (node discovery leaves them to this), and says so.
func (r *RolloutReconciler) forgetDeleted(ctx context.Context, deleted []*v1alpha1.BottlerocketNode) error {
	var errs []error
	for _, brn := range deleted {
		if err := r.Client.Delete(ctx, brn, client.Preconditions{UID: &brn.UID}); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting the BottlerocketNode of deleted Node %s: %w", brn.Name, err))
			continue
		}
		failures.WithLabelValues(brn.Spec.Policy, string(v1alpha1.ReasonNodeDeleted)).Inc()
		r.Recorder.Eventf(brn, nil, corev1.EventTypeWarning, string(v1alpha1.ReasonNodeDeleted), "Update",
			"Node %s was deleted while %s for %s; it counts toward failurePolicy.maxFailedNodes of UpdatePolicy %s",
			brn.Name, brn.Status.Phase, brn.Spec.TargetVersion, brn.Spec.Policy)
		log.FromContext(ctx).Info("Node deleted mid-update: recorded as a failure", "node", brn.Name,
			"policy", brn.Spec.Policy, "phase", brn.Status.Phase, "target", brn.Spec.TargetVersion)
	}
	return errors.Join(errs...)
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
func (r *RolloutReconciler) finalize(ctx context.Context, deleting []v1alpha1.UpdatePolicy, brns []*v1alpha1.BottlerocketNode) error {
	for i := range deleting {
		p := &deleting[i]
		held := false
		for _, brn := range brns {
			if brn.Spec.Policy == p.Name && brn.Status.Phase.Unavailable() {
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
