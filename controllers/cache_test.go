package controllers

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// A kubelet posts its Node's status again every nodeStatusReportFrequency (5 minutes) even
// when nothing changed: the status setters (pkg/kubelet/nodestatus/setters.go) give each
// condition a new lastHeartbeatTime and keep its lastTransitionTime until its status flips.
// Such an update plans nothing again; any change a pass reads does. Either way the pass's
// index holds the Node as the cache now does.
func TestNodeChanges(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", ResourceVersion: "1", Labels: map[string]string{"pool": "a"}},
		Status: corev1.NodeStatus{
			NodeInfo: corev1.NodeSystemInfo{BootID: "b1", OSImage: "Bottlerocket OS 1.25.0 (aws-k8s-1.31)"},
			Conditions: []corev1.NodeCondition{
				{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: t0, LastTransitionTime: t0},
				{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: t0, LastTransitionTime: t0},
			},
		},
	}
	heartbeat := func(n *corev1.Node) {
		n.ResourceVersion = "2"
		for i := range n.Status.Conditions {
			n.Status.Conditions[i].LastHeartbeatTime = metav1.NewTime(t0.Add(5 * time.Minute))
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*corev1.Node)
		passes bool
	}{
		{"a heartbeat", func(*corev1.Node) {}, false},
		{"not Ready", func(n *corev1.Node) {
			n.Status.Conditions[1].Status, n.Status.Conditions[1].Reason = corev1.ConditionFalse, "KubeletNotReady"
			n.Status.Conditions[1].LastTransitionTime = n.Status.Conditions[1].LastHeartbeatTime
		}, true},
		{"rebooted", func(n *corev1.Node) { n.Status.NodeInfo.BootID = "b2" }, true},
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }, true},
		{"relabelled", func(n *corev1.Node) { n.Labels["pool"] = "b" }, true},
		{"excluded", func(n *corev1.Node) {
			n.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
		}, true},
		{"deleted", func(n *corev1.Node) { n.DeletionTimestamp = &t0 }, true},
	} {
		updated := node.DeepCopy()
		heartbeat(updated)
		tc.change(updated)
		h := fleetHandler{newFleetIndex()}
		h.index.put(node)
		q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
		h.Update(t.Context(), event.UpdateEvent{ObjectOld: node, ObjectNew: updated}, q)
		if got := q.Len() > 0; got != tc.passes {
			t.Errorf("%s: the update replans the fleet: %v, want %v", tc.name, got, tc.passes)
		}
		if got := h.index.snapshot(); len(got) != 1 || got[0].node != updated {
			t.Errorf("%s: the index holds %+v, not the updated Node", tc.name, got)
		}
		q.ShutDown()
	}
}
