//go:build e2e

// Package e2e runs rollouts through a simulated fleet — a real API server, simulated
// Bottlerocket hosts each with a real agent, the real controller — while a watcher outside
// the operator follows the cluster and fails the test on any broken invariant.
package e2e

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/agent/hostsim"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/internal/fleet"
	"github.com/bottlerocket-ops/update-operator/internal/invariants"
	"github.com/bottlerocket-ops/update-operator/internal/testenv"
)

const (
	from = "1.25.0"
	to   = "1.26.0"
)

// durations of the simulated hosts; the ideal rollout time is computed from them.
var host = hostsim.Config{
	Version: from, Variant: "aws-k8s-1.31", Arch: "x86_64", Releases: hostsim.Releases(to, from),
	RefreshDuration: 20 * time.Millisecond, PrepareDuration: 500 * time.Millisecond,
	ActivateDuration: 20 * time.Millisecond, RebootDuration: time.Second, RebootResponse: hostsim.RebootRandom,
}

// cluster is one scenario's world.
type cluster struct {
	t     *testing.T
	env   *testenv.Env
	fleet *fleet.Fleet
	w     *watcher

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan error
}

func newCluster(t *testing.T, nodes int, zones []string, hc hostsim.Config) *cluster {
	t.Helper()
	ctrl.SetLogger(logr.Discard()) // the watcher's verdict is the evidence, not our logs
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	dir, err := fleet.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	fl, err := fleet.Start(context.Background(), env.Config, env.Scheme, fleet.Options{
		Nodes: nodes, Prefix: "node", Dir: dir, Zones: zones, Host: hc, RefreshInterval: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fl.Stop)
	c := &cluster{t: t, env: env, fleet: fl, w: startWatcher(t, env)}
	c.startController()
	t.Cleanup(c.stopController)
	return c
}

// startController starts the controller (a new leader after a crash).
func (c *cluster) startController() {
	c.t.Helper()
	mgr, err := ctrl.NewManager(c.env.Config, ctrl.Options{
		Scheme: c.env.Scheme, Cache: controllers.CacheOptions(), Metrics: metricsserver.Options{BindAddress: "0"},
		Client:     client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Pod{}}}},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := controllers.Setup(mgr, controllers.Options{PollInterval: 200 * time.Millisecond}); err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	c.mu.Lock()
	c.cancel, c.done = cancel, done
	c.mu.Unlock()
}

// stopController kills the controller and waits until it is gone.
func (c *cluster) stopController() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// apply creates a policy.
func (c *cluster) apply(p *v1alpha1.UpdatePolicy) {
	c.t.Helper()
	if err := c.env.Client.Create(context.Background(), p); err != nil {
		c.t.Fatal(err)
	}
}

// waitFor polls the API server until cond holds on the world.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func(world) bool) {
	c.t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		w, err := c.look(ctx)
		return err == nil && cond(w), nil
	})
	if err != nil {
		w, _ := c.look(context.Background())
		c.t.Fatalf("%s: not within %s\n%s", what, timeout, w)
	}
}

// world is one look at the cluster.
type world struct {
	policies []v1alpha1.UpdatePolicy
	nodes    map[string]*corev1.Node
	brns     []v1alpha1.BottlerocketNode
}

func (c *cluster) look(ctx context.Context) (world, error) {
	var w world
	var pl v1alpha1.UpdatePolicyList
	var nl corev1.NodeList
	var bl v1alpha1.BottlerocketNodeList
	for _, l := range []client.ObjectList{&pl, &nl, &bl} {
		if err := c.env.Client.List(ctx, l); err != nil {
			return w, err
		}
	}
	w.policies, w.brns, w.nodes = pl.Items, bl.Items, map[string]*corev1.Node{}
	for i := range nl.Items {
		w.nodes[nl.Items[i].Name] = &nl.Items[i]
	}
	return w, nil
}

func (w world) String() string {
	s := ""
	for _, b := range w.brns {
		v := ""
		if b.Status.Agent != nil {
			v = b.Status.Agent.CurrentVersion
		}
		s += fmt.Sprintf("  %s %s %s %s/%s %s: %s\n", b.Name, b.Status.Phase, v, b.Spec.Action, b.Spec.TargetVersion, b.Status.Reason, b.Status.Message)
	}
	for _, p := range w.policies {
		s += fmt.Sprintf("  policy %s: %s %s %v\n", p.Name, p.Status.Phase, p.Status.Progress, p.Status.Conditions)
	}
	return s
}

// converged: every node Updated on target, or Failed with a reason; none left cordoned by us.
func (w world) converged(target string) bool {
	for _, b := range w.brns {
		switch {
		case b.Status.Phase == v1alpha1.PhaseFailed && b.Status.Reason != "":
		case b.Status.Phase == v1alpha1.PhaseUpdated && b.Status.Agent != nil && b.Status.Agent.CurrentVersion == target:
		default:
			return false
		}
		if n := w.nodes[b.Name]; n == nil || n.Annotations[v1alpha1.AnnotationCordonedBy] != "" || n.Spec.Unschedulable {
			return false
		}
	}
	return len(w.brns) > 0
}

func (w world) phase(node string) v1alpha1.NodePhase {
	for _, b := range w.brns {
		if b.Name == node {
			return b.Status.Phase
		}
	}
	return ""
}

func (w world) condition(policy, typ string) *metav1.Condition {
	for _, p := range w.policies {
		if p.Name == policy {
			for i := range p.Status.Conditions {
				if p.Status.Conditions[i].Type == typ {
					return &p.Status.Conditions[i]
				}
			}
		}
	}
	return nil
}

// watcher follows Nodes, BottlerocketNodes and UpdatePolicies through its own informers and
// checks the invariants at every event: the independent checker on each step, and the
// budgets on the Nodes as they are at that instant (cordoned or not Ready counts).
type watcher struct {
	cache cache.Cache

	mu         sync.Mutex
	checker    *invariants.Checker
	prev       invariants.Snapshot
	violations []string
	peak       int
}

func startWatcher(t *testing.T, env *testenv.Env) *watcher {
	t.Helper()
	cc, err := cache.New(env.Config, cache.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{cache: cc, checker: invariants.NewChecker()}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, obj := range []client.Object{&corev1.Node{}, &v1alpha1.BottlerocketNode{}, &v1alpha1.UpdatePolicy{}} {
		inf, err := cc.GetInformer(ctx, obj)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { w.observe(ctx) },
			UpdateFunc: func(any, any) { w.observe(ctx) },
			DeleteFunc: func(any) { w.observe(ctx) },
		}); err != nil {
			t.Fatal(err)
		}
	}
	go func() { _ = cc.Start(ctx) }()
	if !cc.WaitForCacheSync(ctx) {
		t.Fatal("the watcher's caches did not sync")
	}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, v := range w.violations {
			t.Error("invariant broken: " + v)
		}
	})
	return w
}

// observe checks one step of the cluster, as the watcher's caches see it now.
func (w *watcher) observe(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var pl v1alpha1.UpdatePolicyList
	var nl corev1.NodeList
	var bl v1alpha1.BottlerocketNodeList
	for _, l := range []client.ObjectList{&pl, &nl, &bl} {
		if err := w.cache.List(ctx, l); err != nil {
			return
		}
	}
	brns := map[string]*v1alpha1.BottlerocketNode{}
	for i := range bl.Items {
		brns[bl.Items[i].Name] = &bl.Items[i]
	}
	snap := invariants.Snapshot{Now: time.Now(), Policies: pl.Items}
	for i := range nl.Items {
		n := &nl.Items[i]
		snap.Nodes = append(snap.Nodes, invariants.Node{Node: n, BRN: brns[n.Name]})
		// A node that entered a phase was admitted at its phaseStartTime: judge it then.
		if b := brns[n.Name]; b != nil && b.Status.PhaseStartTime != nil && w.entered(b) {
			snap.Now = b.Status.PhaseStartTime.Time
		}
	}
	for _, v := range w.checker.Step(w.prev, snap) {
		w.violations = append(w.violations, v.String())
	}
	w.checkInstant(snap)
	w.prev = snap
}

// entered reports whether b's phase changed since the previous step.
func (w *watcher) entered(b *v1alpha1.BottlerocketNode) bool {
	for _, n := range w.prev.Nodes {
		if n.Node.Name == b.Name {
			return n.BRN == nil || n.BRN.Status.Phase != b.Status.Phase
		}
	}
	return true
}

// checkInstant checks each policy's budgets against the Nodes as they are: every governed
// node cordoned or not Ready counts, whoever caused it.
func (w *watcher) checkInstant(s invariants.Snapshot) {
	for _, p := range s.Policies {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.NodeSelector)
		if p.Spec.NodeSelector == nil {
			sel, err = labels.Everything(), nil
		}
		if err != nil {
			continue
		}
		governed, down := 0, 0
		zones, zoneDown := map[string]int{}, map[string]int{}
		for _, n := range s.Nodes {
			if !sel.Matches(labels.Set(n.Node.Labels)) {
				continue
			}
			zone := n.Node.Labels[v1alpha1.LabelZone]
			governed++
			zones[zone]++
			if nodeDown(n.Node) {
				down++
				zoneDown[zone]++
			}
		}
		limit, _ := p.Spec.MaxUnavailableOf(governed)
		w.peak = max(w.peak, down)
		if down > limit {
			w.violations = append(w.violations, fmt.Sprintf("policy %s: %d nodes unavailable at %s, budget %d", p.Name, down, s.Now.Format(time.RFC3339Nano), limit))
		}
		for zone, d := range zoneDown {
			if zl, _ := p.Spec.MaxUnavailablePerZoneOf(zones[zone]); d > zl {
				w.violations = append(w.violations, fmt.Sprintf("policy %s: zone %s has %d nodes unavailable, budget %d", p.Name, zone, d, zl))
			}
		}
	}
}

func nodeDown(n *corev1.Node) bool {
	if n.Spec.Unschedulable {
		return true
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status != corev1.ConditionTrue
		}
	}
	return true
}

func (w *watcher) peakUnavailable() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

// report prints a scenario's rollout efficiency: the measured duration against the ideal
// from the simulated durations, the budget, the pauses and soaks.
func report(t *testing.T, name string, took, ideal time.Duration, peak, budget int) {
	t.Logf("%s: took %s, ideal %s, efficiency %.0f%%, peak unavailable %d (budget %d)",
		name, took.Round(100*time.Millisecond), ideal.Round(100*time.Millisecond), 100*ideal.Seconds()/took.Seconds(), peak, budget)
}

// perNode is the ideal time a node holds a slot: reboot, then stableFor.
func perNode(stableFor time.Duration) time.Duration {
	return host.ActivateDuration + host.RebootDuration + stableFor
}
