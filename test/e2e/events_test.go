//go:build e2e

package e2e

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/evictionguard"
	"github.com/bottlerocket-ops/update-operator/test/framework/stack"
)

// Fleet events the operator does not cause: a pod the drain may not evict, a Node deleted
// mid-update, a release withdrawn mid-rollout, a Job's pod failing on a rebooted node. Each ends with every node settled — none waits
// forever, none is left cordoned — while the watcher judges every instant.

// A pod the drain may not evict: it keeps emptyDir data under drain.deleteEmptyDirData: false,
// or an admission policy refuses its eviction (as a webhook guarding a singleton does). The drain
// leaves it and says so (DrainRefused, naming the pod and why) until drain.timeout, then
// onTimeout: Abort uncordons the node and fails it (DrainTimeout); the rest of the fleet updates.
func TestDrainRefusedUntilTheDeadline(t *testing.T) {
	for name, tc := range map[string]struct {
		volumes []corev1.Volume
		refuse  func(t *testing.T, c *cluster, pod *corev1.Pod) // set up before the rollout
		why     string                                          // in the node's message
	}{
		"emptyDir data": {
			volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			refuse:  func(*testing.T, *cluster, *corev1.Pod) {},
			why:     "emptyDir",
		},
		"eviction refused by an admission policy": {refuse: refuseEviction, why: "refused by the guard"},
	} {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, 3, host)
			c.waitWorkloadHealthy()
			stuck := c.Fleet.Nodes[0].Name
			guarded := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: stack.WorkloadNamespace, Labels: map[string]string{"app": "guarded"}},
				Spec:       corev1.PodSpec{NodeName: stuck, Containers: []corev1.Container{{Name: "app", Image: "app"}}, Volumes: tc.volumes},
			}
			if err := c.Client.Create(context.Background(), guarded); err != nil {
				t.Fatal(err)
			}
			tc.refuse(t, c, guarded)
			p := policy("fleet", v1alpha1.UpdatePolicySpec{MaxUnavailable: ios(intstr.FromInt32(1))})
			p.Spec.Drain = v1alpha1.DrainSpec{Timeout: dur(5 * time.Second), OnTimeout: v1alpha1.DrainTimeoutAbort, DeleteEmptyDirData: ptr.To(false)}
			p.Spec.FailurePolicy.MaxFailedNodes = 2
			c.apply(p)

			c.waitFor("the drain says which pod it leaves, and why", 2*time.Minute, func(w world) bool {
				for _, b := range w.brns {
					if b.Name == stuck && b.Status.Phase == v1alpha1.PhaseDraining && b.Status.Reason == v1alpha1.ReasonDrainRefused {
						return strings.Contains(b.Status.Message, stack.WorkloadNamespace+"/guarded") && strings.Contains(b.Status.Message, tc.why)
					}
				}
				return false
			})
			c.waitFor("the deadline fails the node and the rest update", 2*time.Minute, func(w world) bool {
				i := slices.IndexFunc(w.brns, func(b v1alpha1.BottlerocketNode) bool { return b.Name == stuck })
				return i >= 0 && w.brns[i].Status.Phase == v1alpha1.PhaseFailed && w.brns[i].Status.Reason == v1alpha1.ReasonDrainTimeout &&
					w.converged(to)
			})
			var pod corev1.Pod
			if err := c.Client.Get(context.Background(), client.ObjectKeyFromObject(guarded), &pod); err != nil || !pod.DeletionTimestamp.IsZero() {
				t.Errorf("the pod the drain may not evict was evicted (%v)", err)
			}
		})
	}
}

// refuseEviction makes the API server refuse every eviction of pod: a ValidatingAdmissionPolicy
// on pods/eviction. It is in force once an eviction is refused by it rather than by a
// PodDisruptionBudget allowing none, which guards the pod (by its labels) meanwhile and then
// goes.
func refuseEviction(t *testing.T, c *cluster, pod *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: pod.Namespace},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ios(intstr.FromInt32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: pod.Labels}}}
	for _, obj := range append([]client.Object{pdb}, evictionguard.Objects("guard", pod, "refused by the guard: this pod is not to be evicted")...) {
		if err := c.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	eviction := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		last = kube.CoreV1().Pods(pod.Namespace).EvictV1(ctx, eviction)
		if last == nil {
			return false, errors.New("the pod was evicted")
		}
		return strings.Contains(last.Error(), "refused by the guard"), nil
	})
	if err != nil {
		t.Fatalf("the admission policy refusing the eviction is not in force: %v (last eviction: %v)", err, last)
	}
	if err := c.Client.Delete(ctx, pdb); err != nil {
		t.Fatal(err)
	}
}

// The Node of a node being updated is deleted, as an autoscaler replacing an instance does:
// it is recorded in the policy's status.deletedNodes (NodeDeleted), counts toward the failure
// budget, and the rest of the fleet updates.
func TestNodeDeletedMidUpdate(t *testing.T) {
	t.Run("controller running", func(t *testing.T) { nodeDeletedMidUpdate(t, false) })
	// The controller is away when the Node goes (a crash, an upgrade of the operator), and
	// the garbage collector has run by the time it is back: the deletion is still recorded,
	// not lost with the node's BottlerocketNode.
	t.Run("controller away", func(t *testing.T) { nodeDeletedMidUpdate(t, true) })
}

func nodeDeletedMidUpdate(t *testing.T, controllerAway bool) {
	ctx := context.Background()
	hc := host
	hc.RebootDuration = 4 * time.Second
	c := newCluster(t, 4, hc)
	p := policy("fleet", v1alpha1.UpdatePolicySpec{MaxUnavailable: ios(intstr.FromInt32(1))})
	p.Spec.FailurePolicy.MaxFailedNodes = 2
	c.apply(p)
	gone := c.waitRebooting()
	var node corev1.Node
	if err := c.Client.Get(ctx, client.ObjectKey{Name: gone}, &node); err != nil {
		t.Fatal(err)
	}
	// A BottlerocketNode the Node owns, made while the controller is away (it would delete one
	// without a Node of its name): once the garbage collector has deleted it, it watches
	// BottlerocketNodes and has dealt with whatever else of them the Node owned.
	probe := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: "gc-probe-" + gone,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: gone, UID: node.UID}}}}
	if controllerAway {
		c.StopController()
		if err := c.Client.Create(ctx, probe); err != nil {
			t.Fatal(err)
		}
	}
	// The instance is gone: its agent and host stop, and its Node is deleted.
	for _, n := range c.Fleet.Nodes {
		if n.Name == gone {
			n.StopAgent()
			n.Host.Close()
		}
	}
	if err := c.Client.Delete(ctx, &node); err != nil {
		t.Fatal(err)
	}
	if controllerAway {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			err := c.Client.Get(ctx, client.ObjectKeyFromObject(probe), probe)
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		if err != nil {
			t.Fatalf("waiting for the garbage collector to delete what the Node owned: %v", err)
		}
		c.startController()
	}
	c.waitFor("the deleted node is recorded and the rest update", 2*time.Minute, func(w world) bool {
		if slices.ContainsFunc(w.brns, func(b v1alpha1.BottlerocketNode) bool { return b.Name == gone }) || len(w.brns) != 3 {
			return false
		}
		i := slices.IndexFunc(w.policies, func(p v1alpha1.UpdatePolicy) bool { return p.Name == "fleet" })
		return i >= 0 && slices.ContainsFunc(w.policies[i].Status.DeletedNodes, func(d v1alpha1.DeletedNode) bool {
			return d.Name == gone && d.Reason == v1alpha1.ReasonNodeDeleted && d.TargetVersion == to
		}) && w.converged(to)
	})
}

// The target of a "latest" rollout is withdrawn once the first nodes run it, and a newer release
// is published: the rollout moves to the newer one, and every node ends on it — those already
// on the withdrawn release too.
func TestReleaseWithdrawnMidRollout(t *testing.T) {
	const newer = "1.26.1"
	c := newCluster(t, 4, host)
	c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{Version: v1alpha1.VersionLatest, MaxUnavailable: ios(intstr.FromInt32(1))}))
	c.waitFor("the first node runs "+to, 2*time.Minute, func(w world) bool {
		return slices.ContainsFunc(w.brns, func(b v1alpha1.BottlerocketNode) bool {
			return b.Status.Phase == v1alpha1.PhaseUpdated && b.Status.Agent != nil && b.Status.Agent.CurrentVersion == to
		})
	})
	c.Fleet.SetAvailable(newer, from) // to is withdrawn
	c.waitFor("every node runs "+newer, 3*time.Minute, func(w world) bool {
		i := slices.IndexFunc(w.policies, func(p v1alpha1.UpdatePolicy) bool { return p.Name == "fleet" })
		return i >= 0 && w.policies[i].Status.TargetVersion == newer && w.converged(newer)
	})
}

// A Job's pod fails on a node just rebooted (it ran there and exited 1): the health gate judges
// the pods that should run there, not a finished one, and the node is Updated, not failed at
// health.readyTimeout.
func TestFailedJobPodOnARebootedNode(t *testing.T) {
	hc := host
	hc.RebootDuration = 3 * time.Second
	c := newCluster(t, 2, hc)
	p := policy("fleet", v1alpha1.UpdatePolicySpec{MaxUnavailable: ios(intstr.FromInt32(1))})
	p.Spec.Health.ReadyTimeout = dur(20 * time.Second)
	c.apply(p)
	rebooted := c.waitRebooting()
	ctx := context.Background()
	job := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: stack.WorkloadNamespace, Labels: map[string]string{"job-name": "report"}},
		Spec: corev1.PodSpec{NodeName: rebooted, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "report", Image: "report"}}},
	}
	if err := c.Client.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	// As the kubelet reports it: terminated with exit code 1. (With a pod IP, kwok leaves the
	// pod's status alone; it may have written it once already, hence the retries.)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil {
			return err
		}
		job.Status = corev1.PodStatus{Phase: corev1.PodFailed, PodIP: "10.244.0.99", Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "report", Image: "report",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}}
		return c.Client.Status().Update(ctx, job)
	})
	if err != nil {
		t.Fatal(err)
	}
	c.waitUpdated("both nodes update", 2*time.Minute)
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(job), job); err != nil || job.Status.Phase != corev1.PodFailed {
		t.Errorf("the Job's pod: phase %s (%v), want it left Failed", job.Status.Phase, err)
	}
}
