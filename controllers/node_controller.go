package controllers

import (
	"context"
	"fmt"
	"regexp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers/internal/planner"
)

// FieldManager is the controller's field manager: it owns BottlerocketNode spec, the
// controller's part of BottlerocketNode status, UpdatePolicy status and the label it sets.
const FieldManager = "bottlerocket-update-controller"

// minSupportedVersion is the oldest Bottlerocket with the update API the agent drives.
const minSupportedVersion = "0.4.1"

// osImagePattern matches a Bottlerocket Node's status.nodeInfo.osImage, such as
// "Bottlerocket OS 1.26.1 (aws-k8s-1.31)".
var osImagePattern = regexp.MustCompile(`^Bottlerocket OS ([0-9]+\.[0-9]+\.[0-9]+)`)

// bottlerocketVersion returns the Bottlerocket version a Node reports, and whether it is one.
func bottlerocketVersion(node *corev1.Node) (string, bool) {
	m := osImagePattern.FindStringSubmatch(node.Status.NodeInfo.OSImage)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// NodeReconciler discovers Bottlerocket nodes: it labels every supported one so the agent
// DaemonSet schedules on it, and keeps one BottlerocketNode per Bottlerocket Node.
type NodeReconciler struct {
	Client client.Client
}

// Reconcile labels a Bottlerocket Node and creates its BottlerocketNode, or removes the
// BottlerocketNode of a Node that is gone.
func (r *NodeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var node corev1.Node
	if err := r.Client.Get(ctx, req.NamespacedName, &node); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("reading Node %s: %w", req.Name, err)
		}
		return ctrl.Result{}, r.forget(ctx, req.Name)
	}
	version, ok := bottlerocketVersion(&node)
	if !ok || !node.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	supported := v1alpha1.CompareVersions(version, minSupportedVersion) >= 0
	if supported {
		if err := r.label(ctx, &node); err != nil {
			return ctrl.Result{}, err
		}
	}
	brn, err := r.ensureBRN(ctx, &node, version)
	if err != nil || supported {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.markUnsupported(ctx, brn, version)
}

// forget deletes the BottlerocketNode of a Node that is gone. A node deleted while we held it
// cordoned is left to the rollout controller, which records the failure in its policy's status
// first (status.deletedNodes) and then deletes it. This is why a BottlerocketNode has no owner
// reference to its Node: the garbage collector would delete it at once, before the failure is
// recorded, or while the controller is away.
func (r *NodeReconciler) forget(ctx context.Context, name string) error {
	brn := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
	switch err := r.Client.Get(ctx, client.ObjectKeyFromObject(brn), brn); {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading the BottlerocketNode of gone Node %s: %w", name, err)
	case planner.DeletedMidUpdate(brn):
		return nil
	}
	if err := r.Client.Delete(ctx, brn, client.Preconditions{UID: &brn.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting the BottlerocketNode of gone Node %s: %w", name, err)
	}
	return nil
}

// label puts the interface-version label the agent DaemonSet schedules on.
func (r *NodeReconciler) label(ctx context.Context, node *corev1.Node) error {
	if node.Labels[v1alpha1.LabelInterfaceVersion] == v1alpha1.InterfaceVersion {
		return nil
	}
	patch := client.MergeFrom(node.DeepCopy())
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	node.Labels[v1alpha1.LabelInterfaceVersion] = v1alpha1.InterfaceVersion
	if err := r.Client.Patch(ctx, node, patch, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("labelling Node %s: %w", node.Name, err)
	}
	log.FromContext(ctx).Info("Labelled Bottlerocket node for the agent", "label", v1alpha1.LabelInterfaceVersion)
	return nil
}

// ensureBRN returns the node's BottlerocketNode, created if missing (see forget: it has no
// owner); it removes the owner reference to the Node an earlier release gave it.
func (r *NodeReconciler) ensureBRN(ctx context.Context, node *corev1.Node, version string) (*v1alpha1.BottlerocketNode, error) {
	brn := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: node.Name}}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(brn), brn)
	switch {
	case apierrors.IsNotFound(err):
		brn.Spec.Action = v1alpha1.ActionNone
		if err := r.Client.Create(ctx, brn, client.FieldOwner(FieldManager)); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating BottlerocketNode %s: %w", node.Name, err)
		}
		log.FromContext(ctx).Info("Created BottlerocketNode", "version", version)
	case err != nil:
		return nil, fmt.Errorf("reading BottlerocketNode %s: %w", node.Name, err)
	case slices.ContainsFunc(brn.OwnerReferences, ownedByNode):
		patch := client.MergeFromWithOptions(brn.DeepCopy(), client.MergeFromWithOptimisticLock{})
		brn.OwnerReferences = slices.DeleteFunc(brn.OwnerReferences, ownedByNode)
		if err := r.Client.Patch(ctx, brn, patch, client.FieldOwner(FieldManager)); err != nil {
			return nil, fmt.Errorf("removing the owner reference of BottlerocketNode %s to its Node: %w", node.Name, err)
		}
		log.FromContext(ctx).Info("Removed the BottlerocketNode's owner reference to its Node")
	}
	return brn, nil
}

func ownedByNode(ref metav1.OwnerReference) bool {
	return ref.Kind == "Node" && ref.APIVersion == "v1"
}

// markUnsupported says on the BottlerocketNode that its host is too old to be updated.
func (r *NodeReconciler) markUnsupported(ctx context.Context, brn *v1alpha1.BottlerocketNode, version string) error {
	if brn.Status.Reason == v1alpha1.ReasonUnsupportedHost {
		return nil
	}
	patch := client.MergeFrom(brn.DeepCopy())
	brn.Status.Phase, brn.Status.Reason = v1alpha1.PhaseIdle, v1alpha1.ReasonUnsupportedHost
	brn.Status.Message = fmt.Sprintf("Bottlerocket %s is older than %s and has no update API; update it by replacing the node", version, minSupportedVersion)
	if err := r.Client.Status().Patch(ctx, brn, patch, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("reporting BottlerocketNode %s unsupported: %w", brn.Name, err)
	}
	return nil
}

// discoveryWorkers is how many Nodes discovery handles at once: each waits on the API server
// (a label, a create), one at a time a fleet of 15,000 took minutes to discover.
const discoveryWorkers = 8

// SetupWithManager registers the node discovery.
func (r *NodeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("node-discovery").
		WithOptions(controller.Options{MaxConcurrentReconciles: discoveryWorkers}).
		For(&corev1.Node{}).
		// A BottlerocketNode deleted by hand comes back at once, not at the Node's next change;
		// one whose Node went while the controller was away is looked at when it starts.
		Watches(&v1alpha1.BottlerocketNode{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(predicate.Funcs{
			UpdateFunc:  func(event.UpdateEvent) bool { return false },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		Complete(r)
}
