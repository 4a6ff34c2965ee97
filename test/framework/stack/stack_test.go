package stack

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
)

func TestGuardedReplicas(t *testing.T) {
	for name, tc := range map[string]struct {
		objs Workloads
		want map[string]int32
	}{
		"web":  {Web, map[string]int32{"web": 7}},
		"shop": {Shop, map[string]int32{"web": 7, "db": 3}},
	} {
		t.Run(name, func(t *testing.T) {
			got := guardedReplicas(tc.objs(7))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for pdb, n := range tc.want {
				if r := got[client.ObjectKey{Namespace: WorkloadNamespace, Name: pdb}]; r != n {
					t.Errorf("PodDisruptionBudget %s guards %d replicas, want %d", pdb, r, n)
				}
			}
		})
	}
	// Small fleets keep the workloads' minimum replicas.
	if got := guardedReplicas(Web(1))[client.ObjectKey{Namespace: WorkloadNamespace, Name: "web"}]; got != 2 {
		t.Errorf("Web on 1 node: %d replicas, want 2", got)
	}
	if got := ShopReplicas(1); got != 3 {
		t.Errorf("Shop on 1 node: %d web replicas, want 3", got)
	}
}

func TestSteps(t *testing.T) {
	for name, tc := range map[string]struct {
		opts Options
		want []Step
	}{
		"local":           {Options{}, []Step{StepCluster, StepInstall, StepController, StepFleet}},
		"workloads":       {Options{Workloads: Web}, []Step{StepCluster, StepInstall, StepController, StepFleet, StepWorkloads}},
		"workloads first": {Options{Workloads: Shop, WorkloadsFirst: true}, []Step{StepCluster, StepInstall, StepWorkloads, StepController, StepFleet}},
		"light":           {Options{Light: true}, []Step{StepCluster, StepController, StepFleet}},
	} {
		var got []Step
		for _, st := range (&Stack{opts: tc.opts}).steps() {
			got = append(got, st.name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: steps %v, want %v", name, got, tc.want)
		}
	}
}

func TestBudgetHealthy(t *testing.T) {
	status := func(gen, observed int64, expected, healthy, desired, allowed int32) *policyv1.PodDisruptionBudget {
		return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Status: policyv1.PodDisruptionBudgetStatus{
			ObservedGeneration: observed, ExpectedPods: expected, CurrentHealthy: healthy, DesiredHealthy: desired, DisruptionsAllowed: allowed,
		}}
	}
	for name, tc := range map[string]struct {
		b    *policyv1.PodDisruptionBudget
		want bool
	}{
		"computed":             {status(1, 1, 3, 3, 2, 1), true},
		"not yet computed":     {status(1, 0, 0, 0, 0, 0), false},
		"stale generation":     {status(2, 1, 3, 3, 2, 1), false},
		"pods still starting":  {status(1, 1, 3, 2, 2, 0), false},
		"fewer pods than want": {status(1, 1, 2, 2, 1, 1), false},
		"disruptions not yet":  {status(1, 1, 3, 3, 2, 0), false},
		"none allowed by spec": {status(1, 1, 3, 3, 3, 0), true},
	} {
		if got := budgetHealthy(tc.b, 3); got != tc.want {
			t.Errorf("%s: healthy %v, want %v", name, got, tc.want)
		}
	}
}

// A light stack starts, its controller discovers the fleet's nodes and their agents report,
// a killed controller is replaced, and Stop removes what the stack wrote.
func TestLight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	var steps []Step
	s, err := Start(context.Background(), Options{
		Light: true, Nodes: 2, RefreshInterval: time.Second,
		Host: hostsim.Config{
			Version: "1.25.0", Variant: "aws-k8s-1.31", Arch: "x86_64", Releases: hostsim.Releases("1.25.0"),
			RefreshDuration: 10 * time.Millisecond, PrepareDuration: 10 * time.Millisecond,
			ActivateDuration: 10 * time.Millisecond, RebootDuration: 10 * time.Millisecond,
		},
		Controller: controllers.Options{PollInterval: 200 * time.Millisecond},
		Before: func(_ context.Context, step Step, _ *Stack) error {
			steps = append(steps, step)
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if want := []Step{StepCluster, StepController, StepFleet}; !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v", steps, want)
	}
	if s.Cluster != nil || s.Install != nil || s.AuditLogPath != "" || len(s.Fleet.Nodes) != 2 {
		t.Errorf("light stack: cluster %v, install %v, audit log %q, %d nodes", s.Cluster, s.Install, s.AuditLogPath, len(s.Fleet.Nodes))
	}
	waitReported(t, s, 2)
	s.StopController()
	if err := s.StartController(); err != nil {
		t.Fatal(err)
	}
	if err := s.StartController(); err == nil {
		t.Error("a second replica started while one runs")
	}
	s.Stop()
	if _, err := os.Stat(s.Kubeconfig); !os.IsNotExist(err) {
		t.Errorf("the kubeconfig %s outlived the stack: %v", s.Kubeconfig, err)
	}
}

// waitReported waits until n BottlerocketNodes carry their agent's report.
func waitReported(t *testing.T, s *Stack, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var l v1alpha1.BottlerocketNodeList
		if err := s.Client.List(ctx, &l); err != nil {
			return false, nil
		}
		reported := 0
		for _, b := range l.Items {
			if b.Status.Agent != nil && b.Status.Agent.CurrentVersion != "" {
				reported++
			}
		}
		return reported == n, nil
	})
	if err != nil {
		t.Fatalf("%d nodes did not report: %v", n, err)
	}
}
