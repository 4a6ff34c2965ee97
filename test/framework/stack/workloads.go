package stack

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// WorkloadNamespace holds the workloads of Web and Shop.
const WorkloadNamespace = "shop"

// Workloads returns the objects of workloads for a fleet of nodes, in the order they are
// created.
type Workloads func(nodes int) []client.Object

// workloadHealthyTimeout bounds the wait for the workloads to be healthy.
const workloadHealthyTimeout = 2 * time.Minute

// Web is one workload: a Deployment web with a pod per node (at least 2), guarded by a
// PodDisruptionBudget allowing one disruption.
func Web(nodes int) []client.Object {
	one := intstr.FromInt32(1)
	return []client.Object{
		namespace(),
		deployment("web", int32(max(2, nodes))),
		pdb("web", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one}),
	}
}

// ShopReplicas is the replicas of Shop's Deployment web on a fleet of nodes.
func ShopReplicas(nodes int) int32 { return int32(max(3, nodes)) }

// Shop is what a fleet runs, so that evictions meet real refusals: a Deployment web with a pod
// per node (at least 3) whose budget scales with the fleet (5% may be disrupted at once: one
// pod of 20, 25 of 500), a StatefulSet db of 3 that keeps at least 2, and a DaemonSet
// node-logs.
func Shop(nodes int) []client.Object {
	twentieth, two := intstr.FromString("5%"), intstr.FromInt32(2)
	db := int32(3)
	return []client.Object{
		namespace(),
		deployment("web", ShopReplicas(nodes)),
		pdb("web", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &twentieth}),
		&appsv1.StatefulSet{ObjectMeta: meta("db"), Spec: appsv1.StatefulSetSpec{
			Replicas: &db, Selector: selector("db"), Template: podTemplate("db"), ServiceName: "db"}},
		pdb("db", policyv1.PodDisruptionBudgetSpec{MinAvailable: &two}),
		&appsv1.DaemonSet{ObjectMeta: meta("node-logs"), Spec: appsv1.DaemonSetSpec{
			Selector: selector("node-logs"), Template: podTemplate("node-logs")}},
	}
}

func namespace() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: WorkloadNamespace}}
}

func meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: WorkloadNamespace}
}

func appLabels(app string) map[string]string { return map[string]string{"app": app} }

func selector(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: appLabels(app)}
}

func deployment(app string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: meta(app), Spec: appsv1.DeploymentSpec{
		Replicas: &replicas, Selector: selector(app), Template: podTemplate(app)}}
}

// pdb guards the pods of app.
func pdb(app string, spec policyv1.PodDisruptionBudgetSpec) *policyv1.PodDisruptionBudget {
	spec.Selector = selector(app)
	return &policyv1.PodDisruptionBudget{ObjectMeta: meta(app), Spec: spec}
}

// podTemplate runs app's image on kwok's nodes.
func podTemplate(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: appLabels(app)},
		Spec: corev1.PodSpec{
			Containers:  []corev1.Container{{Name: app, Image: "registry.example/" + app + ":1"}},
			Tolerations: []corev1.Toleration{{Key: "kwok.x-k8s.io/node", Operator: corev1.TolerationOpExists}},
		},
	}
}

// createWorkloads creates the workloads.
func (s *Stack) createWorkloads(ctx context.Context) error {
	s.workloads = s.opts.Workloads(s.opts.Nodes)
	for _, o := range s.workloads {
		if err := s.Client.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T %s: %w", o, client.ObjectKeyFromObject(o), err)
		}
	}
	return nil
}

// WaitWorkloadsHealthy waits until every PodDisruptionBudget of the workloads counts all the
// pods it guards healthy, and the disruption controller has computed the disruptions it
// allows.
func (s *Stack) WaitWorkloadsHealthy(ctx context.Context) error {
	want := guardedReplicas(s.workloads)
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, workloadHealthyTimeout, true, func(ctx context.Context) (bool, error) {
		for key, replicas := range want {
			var b policyv1.PodDisruptionBudget
			if err := s.Client.Get(ctx, key, &b); err != nil || !budgetHealthy(&b, replicas) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the workloads to be healthy: %w", err)
	}
	return nil
}

// budgetHealthy: the budget's status is current, counts replicas expected and healthy, and
// allows what they leave above its desired healthy count.
func budgetHealthy(b *policyv1.PodDisruptionBudget, replicas int32) bool {
	st := b.Status
	return st.ObservedGeneration >= b.Generation && st.ExpectedPods == replicas && st.CurrentHealthy == replicas &&
		st.DisruptionsAllowed == max(0, st.CurrentHealthy-st.DesiredHealthy)
}

// guardedReplicas maps each PodDisruptionBudget among objs to the replicas of the Deployments
// and StatefulSets among objs whose pods it selects.
func guardedReplicas(objs []client.Object) map[client.ObjectKey]int32 {
	want := map[client.ObjectKey]int32{}
	for _, o := range objs {
		b, ok := o.(*policyv1.PodDisruptionBudget)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err != nil {
			continue
		}
		key := client.ObjectKeyFromObject(b)
		want[key] = 0
		for _, w := range objs {
			if replicas, podLabels, ok := scaled(w); ok && w.GetNamespace() == b.Namespace && sel.Matches(labels.Set(podLabels)) {
				want[key] += replicas
			}
		}
	}
	return want
}

// scaled returns the replicas and pod labels of a Deployment or StatefulSet.
func scaled(o client.Object) (int32, map[string]string, bool) {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return ptr.Deref(w.Spec.Replicas, 1), w.Spec.Template.Labels, true
	case *appsv1.StatefulSet:
		return ptr.Deref(w.Spec.Replicas, 1), w.Spec.Template.Labels, true
	}
	return 0, nil, false
}
