package controllers

import (
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheOptions keeps the controller's memory proportional to what it uses: managed fields are
// dropped from every cached object, and Nodes keep only what decisions read (labels,
// annotations, spec, conditions, node info) — not their images, addresses or capacity.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Node{}: {Transform: stripNode},
		},
	}
}

func stripNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	node.ManagedFields = nil
	node.Status.Images = nil
	node.Status.Addresses = nil
	node.Status.Capacity = nil
	node.Status.Allocatable = nil
	node.Status.VolumesAttached = nil
	node.Status.VolumesInUse = nil
	node.Status.DaemonEndpoints = corev1.NodeDaemonEndpoints{}
	node.Spec.PodCIDRs = nil
	return node, nil
}
