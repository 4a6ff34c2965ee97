package controllers

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	crfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// TestEvictPassLeavesRefusedPods checks that what an eviction pass cannot do is evidence, not
// an error: a pod whose eviction an admission webhook denies is left, named with the denial,
// while the others are evicted; a pass that cannot list the pods is Incomplete and says why.
func TestEvictPassLeavesRefusedPods(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: name}, Spec: corev1.PodSpec{NodeName: "a"}}
	}
	kube := fake.NewClientset(pod("guarded"), pod("web"))
	var evicted []string
	kube.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		ev := a.(clienttesting.CreateAction).GetObject().(*policyv1.Eviction)
		if ev.Name == "guarded" {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, ev.Name,
				errors.New(`admission webhook "deny.example.com" denied the request: not during business hours`))
		}
		evicted = append(evicted, ev.Name)
		return true, nil, nil
	})
	r := &RolloutReconciler{Kube: kube, APIReader: crfake.NewClientBuilder().Build()}

	res := r.evictPass(context.Background(), node, v1alpha1.DrainSpec{})
	if res.Remaining != 2 || res.Incomplete || res.Blocked != v1alpha1.ReasonDrainRefused ||
		!strings.Contains(res.Message, "apps/guarded") || !strings.Contains(res.Message, "not during business hours") {
		t.Errorf("webhook denial: %+v", res)
	}
	if len(evicted) != 1 || evicted[0] != "web" {
		t.Errorf("evicted %v, want the pod nothing refused", evicted)
	}

	kube.PrependReactor("list", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("the API server is away")
	})
	res = r.evictPass(context.Background(), node, v1alpha1.DrainSpec{})
	if !res.Incomplete || res.Blocked != v1alpha1.ReasonDrainRefused || !strings.Contains(res.Message, "the API server is away") {
		t.Errorf("list failure: %+v", res)
	}
}
