package planner

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/invariants"
)

// t0 is a Monday noon in UTC; every test counts time from fixed instants.
var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func intOrStr(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func mtime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

// policy returns a policy with the given spec tweaks applied.
func policy(name string, mods ...func(*v1alpha1.UpdatePolicySpec)) v1alpha1.UpdatePolicy {
	p := v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.Version = v1alpha1.VersionLatest
	for _, m := range mods {
		m(&p.Spec)
	}
	return p
}

func selecting(key, value string) func(*v1alpha1.UpdatePolicySpec) {
	return func(s *v1alpha1.UpdatePolicySpec) {
		s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{key: value}}
	}
}

// host returns a Ready node running version current, offered the listed versions.
func host(name, zone, current string, offered ...string) NodeState {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1alpha1.LabelZone: zone}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue},
		}},
	}
	brn := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
	brn.Spec.Action = v1alpha1.ActionNone
	brn.Status.Phase = v1alpha1.PhaseIdle
	brn.Status.Agent = &v1alpha1.AgentStatus{CurrentVersion: current, AvailableVersions: offered}
	return NodeState{Node: n, BRN: brn}
}

// fleetOf returns count hosts named prefix-000…, spread over zones, running from and offered to.
func fleetOf(prefix string, count int, zones []string, from, to string) []NodeState {
	out := make([]NodeState, count)
	for i := range out {
		out[i] = host(fmt.Sprintf("%s-%03d", prefix, i), zones[i%len(zones)], from, to, from)
	}
	return out
}

func setReady(n *corev1.Node, ready bool) {
	st := corev1.ConditionTrue
	if !ready {
		st = corev1.ConditionFalse
	}
	n.Status.Conditions[0].Status = st
}

// snapshot converts planner input into the checker's view; BRNs are copied so that later
// changes do not alter it.
func snapshot(in Input) invariants.Snapshot {
	s := invariants.Snapshot{Now: in.Now, Policies: make([]v1alpha1.UpdatePolicy, len(in.Policies)), Nodes: make([]invariants.Node, len(in.Nodes))}
	for i := range in.Policies {
		in.Policies[i].DeepCopyInto(&s.Policies[i])
	}
	for i, n := range in.Nodes {
		s.Nodes[i] = invariants.Node{Node: n.Node, BRN: n.BRN.DeepCopy()}
	}
	return s
}

// apply writes a plan into the fleet as the controller would.
func apply(in *Input, plan Plan) {
	for i, d := range plan.Nodes {
		if brn := in.Nodes[i].BRN; brn != nil {
			if brn.Status.Phase == v1alpha1.PhaseFailed && d.Phase != v1alpha1.PhaseFailed {
				delete(brn.Annotations, v1alpha1.AnnotationRetry)
			}
			d.ApplyTo(brn, in.Now)
		}
	}
	for i := range in.Policies {
		r := plan.Policies[in.Policies[i].Name]
		r.ApplyTo(&in.Policies[i].Status)
	}
}

// decisionsByName indexes a plan's decisions.
func decisionsByName(p Plan) map[string]NodeDecision {
	m := make(map[string]NodeDecision, len(p.Nodes))
	for _, d := range p.Nodes {
		m[d.Name] = d
	}
	return m
}

func metav1Duration(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }

func selector(key, value string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{key: value}}
}

// daemonPod and workloadPod are a node's DaemonSet pod and a Deployment's pod on it.
func daemonPod(node string, ready bool) corev1.Pod {
	p := workloadPod(node, ready)
	p.Name = "agent-" + node
	p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "agent", Controller: ptr.To(true)}}
	return p
}

func workloadPod(node string, ready bool) corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web-" + node, Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: st},
		}},
	}
}
