package controllers

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// TestEvictPassIncompleteWhenPodsCannotBeListed checks that a pass that cannot list the node's
// pods is Incomplete and says why, rather than an error (a real API server does not fail a list
// on demand; a denied eviction is shown against one in drain_test.go).
func TestEvictPassIncompleteWhenPodsCannotBeListed(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}}
	kube := fake.NewClientset()
	kube.PrependReactor("list", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("the API server is away")
	})
	r := &RolloutReconciler{Kube: kube, APIReader: crfake.NewClientBuilder().Build()}
	res := r.evictPass(context.Background(), node, v1alpha1.DrainSpec{})
	if !res.Incomplete || res.Blocked != v1alpha1.ReasonDrainRefused || !strings.Contains(res.Message, "the API server is away") {
		t.Errorf("list failure: %+v", res)
	}
}
