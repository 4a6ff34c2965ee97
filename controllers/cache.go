package controllers

import (
	"maps"
	"slices"
	"strings"
	"unique"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// CacheOptions keeps the controller's memory proportional to what it uses: managed fields are
// dropped from every cached object, and Nodes keep only what the controller reads (see
// stripNode).
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Node{}: {Transform: stripNode},
		},
	}
}

// stripNode keeps of a Node what the controller reads: its name, labels (any may be
// selected), the annotations of this operator and of the autoscalers it guards against, its
// spec but for its pod CIDRs and provider ID, its Ready condition, and of its node info the OS
// image and boot ID. A Node as EKS registers it holds, besides, some forty images,
// addresses, capacity, three more conditions and the annotations of other controllers.
func stripNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	node.ManagedFields = nil
	node.Labels = interned(node.Labels)
	maps.DeleteFunc(node.Annotations, func(key, _ string) bool { return !readAnnotation(key) })
	node.Spec.PodCIDR, node.Spec.PodCIDRs, node.Spec.ProviderID = "", nil, ""
	node.Status = corev1.NodeStatus{
		Conditions: slices.DeleteFunc(node.Status.Conditions, func(c corev1.NodeCondition) bool { return c.Type != corev1.NodeReady }),
		NodeInfo:   corev1.NodeSystemInfo{OSImage: node.Status.NodeInfo.OSImage, BootID: node.Status.NodeInfo.BootID},
	}
	return node, nil
}

// interned returns labels with each key and value held once by the process: a fleet's Nodes
// carry the same twenty-odd keys, and mostly the same values (zone, instance type, node group),
// which each Node decoded holds a copy of otherwise.
func interned(labels map[string]string) map[string]string {
	if labels == nil {
		return nil
	}
	out := make(map[string]string, len(labels))
	for k, v := range labels {
		out[unique.Make(k).Value()] = unique.Make(v).Value()
	}
	return out
}

// readAnnotation reports whether the controller reads a Node annotation: its own, and those it
// sets to keep autoscalers away.
func readAnnotation(key string) bool {
	return strings.HasPrefix(key, v1alpha1.GroupVersion.Group+"/") ||
		key == v1alpha1.AnnotationKarpenterDoNotDisrupt || key == v1alpha1.AnnotationClusterAutoscalerScaleDownDisabled
}

// nodeChanged reports whether b differs from a in anything the controller reads of a Node:
// its labels, annotations, spec, deletion, node info, or conditions but for their heartbeat
// times.
func nodeChanged(a, b *corev1.Node) bool {
	return !maps.Equal(a.Labels, b.Labels) || !maps.Equal(a.Annotations, b.Annotations) ||
		!a.DeletionTimestamp.Equal(b.DeletionTimestamp) ||
		!equality.Semantic.DeepEqual(a.Spec, b.Spec) ||
		!equality.Semantic.DeepEqual(a.Status.NodeInfo, b.Status.NodeInfo) ||
		!slices.EqualFunc(a.Status.Conditions, b.Status.Conditions, func(x, y corev1.NodeCondition) bool {
			return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason && x.Message == y.Message &&
				x.LastTransitionTime.Equal(&y.LastTransitionTime)
		})
}
