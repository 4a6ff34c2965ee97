package controllers

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// The index a pass reads follows the cache's events: Nodes and BottlerocketNodes paired by
// name and in name order whatever order they came in, a Node's derived facts following its
// changes, and a BottlerocketNode left by a Node deleted mid-update kept for the pass that
// records it.
func TestFleetIndex(t *testing.T) {
	node := func(name, image string, mutate ...func(*corev1.Node)) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
			NodeInfo:   corev1.NodeSystemInfo{OSImage: image},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		}}
		for _, m := range mutate {
			m(n)
		}
		return n
	}
	brn := func(name string, phase v1alpha1.NodePhase) *v1alpha1.BottlerocketNode {
		return &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.BottlerocketNodeSpec{Policy: "fleet"}, Status: v1alpha1.BottlerocketNodeStatus{Phase: phase}}
	}
	const br = "Bottlerocket OS 1.25.0 (aws-k8s-1.31)"
	x := newFleetIndex()
	nc, bc := node("c", br), brn("c", v1alpha1.PhaseDraining)
	for _, obj := range []client.Object{
		node("b", "Ubuntu 24.04 LTS"), brn("a", v1alpha1.PhasePending), nc, node("a", br, func(n *corev1.Node) { n.Spec.Unschedulable = true }), bc,
	} {
		x.put(obj)
	}
	type view struct {
		name                   string
		node, brn              bool
		supported, schedulable bool
	}
	views := func() []view {
		var out []view
		for _, e := range x.snapshot() {
			out = append(out, view{e.name, e.node != nil, e.brn != nil, e.supported, e.schedulable})
		}
		return out
	}
	want := []view{{"a", true, true, true, false}, {"b", true, false, false, true}, {"c", true, true, true, true}}
	if got := views(); !slices.Equal(got, want) {
		t.Fatalf("index %+v, want %+v", got, want)
	}
	in := plannerInput(time.Time{}, x.snapshot(), nil, "")
	if len(in.Nodes) != 2 || in.Nodes[0].Node.Name != "a" || in.Nodes[1].BRN != bc || in.SchedulableNodes != 2 || len(in.Deleted) != 0 {
		t.Fatalf("planner input %+v: want the Bottlerocket nodes a and c paired, b and c schedulable", in)
	}

	x.remove(nc) // deleted while draining: its BottlerocketNode is the record of it
	x.put(node("0", br))
	want = []view{{"0", true, false, true, true}, {"a", true, true, true, false}, {"b", true, false, false, true}, {"c", false, true, false, false}}
	if got := views(); !slices.Equal(got, want) {
		t.Fatalf("after the Node c went and 0 came: index %+v, want %+v", got, want)
	}
	if in := plannerInput(time.Time{}, x.snapshot(), nil, ""); len(in.Deleted) != 1 || in.Deleted[0] != bc || len(in.Nodes) != 2 {
		t.Fatalf("planner input %+v: want c's BottlerocketNode as deleted mid-update, 0 and a planned", in)
	}
	x.remove(bc)
	if got := views(); len(got) != 3 || got[2].name != "b" {
		t.Fatalf("after c's BottlerocketNode went: index %+v, want 0, a, b", got)
	}
}
