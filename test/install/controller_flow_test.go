package install_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// TestControllerFlowOnItsOwnRole runs the controller on a token of its own service account,
// with leader election in its namespace, through a representative flow: discovery and
// labelling, an intent, the policy's status, cordon and drain, the reboot intent. It proves
// the generated role suffices for what the controller does.
func TestControllerFlowOnItsOwnRole(t *testing.T) {
	installed(t)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := tokenConfig(ctx, t, controllerSA, nil)
	mgr, err := controllers.NewManager(cfg, controllers.Options{Clock: clock.RealClock{}, OperatorNamespace: namespace, PollInterval: 100 * time.Millisecond}, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		LeaderElection:          true,
		LeaderElectionID:        "flow-test",
		LeaderElectionNamespace: namespace,
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() { // last: the controller releases what it holds first
		cancel()
		if err := <-done; err != nil {
			t.Errorf("the controller stopped with: %v", err)
		}
	})

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "flow-node"}}
	createFixture(ctx, t, node)
	node.Status = corev1.NodeStatus{
		NodeInfo:   corev1.NodeSystemInfo{OSImage: "Bottlerocket OS 1.25.0 (aws-k8s-1.31)", BootID: "boot-1"},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}},
	}
	if err := env.Client.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteFixture(t, &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: node.Name}}) })
	// Another node, not Bottlerocket, to take the evicted pods: alone in the cluster, the node's
	// drain would say that nothing can (NoCapacity) before what holds its eviction up.
	other := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "flow-other"}}
	createFixture(ctx, t, other)
	other.Status = corev1.NodeStatus{
		NodeInfo:   corev1.NodeSystemInfo{OSImage: "Amazon Linux 2023.6.20241212"},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}},
	}
	if err := env.Client.Status().Update(ctx, other); err != nil {
		t.Fatal(err)
	}

	var brn v1alpha1.BottlerocketNode
	eventually(t, "the node is discovered and labelled", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return err
		}
		if node.Labels[v1alpha1.LabelInterfaceVersion] != v1alpha1.InterfaceVersion {
			return errors.New("no label yet")
		}
		return env.Client.Get(ctx, client.ObjectKey{Name: node.Name}, &brn)
	})
	// The agent's reports are written here as the admin (the agent's own rights are tested
	// apart), retried on conflicts with the controller's writes.
	report := func(what string, change func(*v1alpha1.AgentStatus)) {
		t.Helper()
		eventually(t, what, func() error {
			if err := env.Client.Get(ctx, client.ObjectKey{Name: node.Name}, &brn); err != nil {
				return err
			}
			if brn.Status.Agent == nil {
				brn.Status.Agent = &v1alpha1.AgentStatus{}
			}
			change(brn.Status.Agent)
			return env.Client.Status().Update(ctx, &brn)
		})
	}
	report("the agent reports", func(a *v1alpha1.AgentStatus) {
		*a = v1alpha1.AgentStatus{CurrentVersion: "1.25.0", BootID: "boot-1", AvailableVersions: []string{"1.26.0", "1.25.0"}, UpdateState: v1alpha1.HostStateAvailable}
	})
	one := intstr.FromInt32(1)
	policy := &v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: "flow"}, Spec: v1alpha1.UpdatePolicySpec{Version: "1.26.0", MaxUnavailable: &one}}
	if err := env.Client.Create(ctx, policy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Deleting the policy mid-reboot: the reboot under way is carried on, and the policy's
		// finalizer lets it go once its node is back from it and released.
		deleteFixture(t, policy)
		report("the agent reports the host back on the target", func(a *v1alpha1.AgentStatus) {
			a.RebootRecord = &v1alpha1.RebootRecord{BootID: "boot-1", FromVersion: "1.25.0", ToVersion: "1.26.0", Time: metav1.Now()}
			a.LastAction = &v1alpha1.AgentAction{Action: v1alpha1.ActionReboot, TargetVersion: "1.26.0", Result: v1alpha1.ActionSucceeded, Time: metav1.Now()}
			a.BootID, a.CurrentVersion, a.StagedVersion, a.UpdateState = "boot-2", "1.26.0", "", v1alpha1.HostStateIdle
		})
		eventually(t, "the deleted policy releases its node and goes", func() error {
			err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(policy), policy)
			if err == nil {
				return errors.New("still there")
			}
			return client.IgnoreNotFound(err)
		})
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(node), node); err != nil || node.Spec.Unschedulable {
			t.Errorf("the node is still cordoned after its policy went (err %v)", err)
		}
	})

	waitPhase := func(phase v1alpha1.NodePhase, action v1alpha1.NodeAction) {
		t.Helper()
		eventually(t, fmt.Sprintf("the node reaches %s with action %s", phase, action), func() error {
			if err := env.Client.Get(ctx, client.ObjectKey{Name: node.Name}, &brn); err != nil {
				return err
			}
			if brn.Status.Phase != phase || brn.Spec.Action != action {
				return fmt.Errorf("phase %s action %s (%s: %s)", brn.Status.Phase, brn.Spec.Action, brn.Status.Reason, brn.Status.Message)
			}
			return nil
		})
	}
	waitPhase(v1alpha1.PhaseStaging, v1alpha1.ActionStage)
	eventually(t, "the policy's status is written", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(policy), policy); err != nil {
			return err
		}
		if policy.Status.ObservedGeneration != policy.Generation || policy.Status.TargetVersion != "1.26.0" {
			return fmt.Errorf("status %+v", policy.Status)
		}
		return nil
	})

	// A pod on the node whose eviction the API server granted (its PodDisruptionBudget counts it
	// disrupted) but did not carry out: the API server crashed between the two writes.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "flow-app", Namespace: "default", Labels: map[string]string{"app": "flow-app"}},
		Spec: corev1.PodSpec{NodeName: node.Name, Containers: []corev1.Container{{Name: "app", Image: "app"}},
			TerminationGracePeriodSeconds: ptr.To[int64](0)}, // no kubelet here confirms a graceful deletion
	}
	createFixture(ctx, t, pod)
	// Running: the API server evicts a Pending pod without asking its budget.
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	if err := env.Client.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "flow-app", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: pod.Labels}},
	}
	createFixture(ctx, t, pdb)
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1,
		DisruptedPods: map[string]metav1.Time{pod.Name: metav1.Now()}}
	if err := env.Client.Status().Update(ctx, pdb); err != nil {
		t.Fatal(err)
	}

	report("the agent reports the target staged", func(a *v1alpha1.AgentStatus) {
		a.LastAction = &v1alpha1.AgentAction{Action: v1alpha1.ActionStage, TargetVersion: "1.26.0", Result: v1alpha1.ActionSucceeded, Time: metav1.Now()}
		a.StagedVersion, a.UpdateState, a.ObservedGeneration = "1.26.0", v1alpha1.HostStateStaged, brn.Generation
	})
	// Staged, then a disruption slot: cordon, and a drain that cannot complete the granted
	// eviction on the default role, which may not delete pods. It says so, and why.
	eventually(t, "the drain names the pod whose granted eviction it may not complete", func() error {
		if err := env.Client.Get(ctx, client.ObjectKey{Name: node.Name}, &brn); err != nil {
			return err
		}
		if brn.Status.Phase != v1alpha1.PhaseDraining || brn.Status.Reason != v1alpha1.ReasonEvictionBlocked ||
			!strings.Contains(brn.Status.Message, "default/flow-app was granted") || !strings.Contains(brn.Status.Message, "config/rbac/complete-evictions") {
			return fmt.Errorf("phase %s (%s: %s)", brn.Status.Phase, brn.Status.Reason, brn.Status.Message)
		}
		return nil
	})
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
		t.Fatalf("the pod is gone without the opt-in role: %v", err)
	}

	// The opt-in role, as a user applies it: the controller completes the eviction.
	optIn := optInObjects(t)
	for _, o := range optIn {
		if err := apply(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteFixture(t, o) })
	}
	waitPhase(v1alpha1.PhaseRebooting, v1alpha1.ActionReboot)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); !apierrors.IsNotFound(err) {
		t.Fatalf("the granted eviction was not completed (err %v)", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
		t.Fatal(err)
	}
	if !node.Spec.Unschedulable || node.Annotations[v1alpha1.AnnotationCordonedBy] == "" {
		t.Fatalf("the node is not cordoned by the operator: unschedulable=%v annotations=%v", node.Spec.Unschedulable, node.Annotations)
	}
}

// optInObjects renders config/rbac/complete-evictions, the role that lets the controller
// complete granted evictions.
func optInObjects(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := deploy.DecodeFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "complete-evictions", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}
