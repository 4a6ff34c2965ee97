package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// upstreamCRD is the custom resource of the upstream Bottlerocket update operator, which
// drives the same nodes through the same label; the two must not run at once.
const upstreamCRD = "bottlerocketshadows.brupop.bottlerocket.aws"

// coexistenceRecheck is how often the controller looks again for the upstream operator while
// it stands aside (it may read that one CRD, not watch CRDs).
const coexistenceRecheck = time.Minute

// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get,resourceNames=bottlerocketshadows.brupop.bottlerocket.aws

// upstreamInstalled reports whether the upstream Bottlerocket update operator is installed.
func (r *RolloutReconciler) upstreamInstalled(ctx context.Context) (bool, error) {
	crd := &metav1.PartialObjectMetadata{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	err := r.APIReader.Get(ctx, client.ObjectKey{Name: upstreamCRD}, crd)
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("looking for the upstream Bottlerocket update operator: %w", err)
}

// standAside reports on every policy that the operator does nothing while the upstream
// operator is installed.
func (r *RolloutReconciler) standAside(ctx context.Context, policies []v1alpha1.UpdatePolicy, now time.Time) error {
	msg := fmt.Sprintf("the upstream Bottlerocket update operator is installed (CRD %s) and drives the same nodes; "+
		"this operator acts on no node until it is removed (docs/install.md, migration)", upstreamCRD)
	for i := range policies {
		p := &policies[i]
		orig := p.DeepCopy()
		for _, c := range []metav1.Condition{
			cond(v1alpha1.ConditionDegraded, true, v1alpha1.ReasonConflictingOperator, msg),
			cond(v1alpha1.ConditionReady, false, v1alpha1.ReasonConflictingOperator, msg),
			cond(v1alpha1.ConditionProgressing, false, v1alpha1.ReasonConflictingOperator, msg),
			cond(v1alpha1.ConditionStalled, true, v1alpha1.ReasonConflictingOperator, msg),
		} {
			c.ObservedGeneration, c.LastTransitionTime = p.Generation, metaTime(now)
			apimeta.SetStatusCondition(&p.Status.Conditions, c)
		}
		p.Status.Phase, p.Status.ObservedGeneration = v1alpha1.RolloutInvalid, p.Generation
		if equality.Semantic.DeepEqual(orig.Status, p.Status) {
			continue
		}
		if err := r.Client.Status().Patch(ctx, p, client.MergeFrom(orig), client.FieldOwner(FieldManager)); err != nil {
			return fmt.Errorf("reporting the conflicting operator on UpdatePolicy %s: %w", p.Name, err)
		}
	}
	return nil
}
