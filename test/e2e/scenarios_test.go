//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/stack"
)

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func ios(v intstr.IntOrString) *intstr.IntOrString { return &v }

func policy(name string, spec v1alpha1.UpdatePolicySpec) *v1alpha1.UpdatePolicy {
	if spec.Version == "" {
		spec.Version = to
	}
	if spec.Health.StableFor == nil {
		spec.Health.StableFor = dur(time.Second)
	}
	spec.Health.ReadyTimeout = dur(time.Minute)
	if spec.Drain.Timeout == nil {
		spec.Drain.Timeout = dur(time.Minute)
	}
	if spec.FailurePolicy.MaxFailedNodes == 0 {
		spec.FailurePolicy.MaxFailedNodes = 1
	}
	return &v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

// The original operator's limitations, fixed: a pause between nodes, health before the next,
// a single-node cluster that completes and ends schedulable, nodes labelled by nobody.
func TestOriginalLimitationsFixed(t *testing.T) {
	t.Run("pause between nodes", func(t *testing.T) {
		c := newCluster(t, 3, host)
		pause := 3 * time.Second
		start := time.Now()
		c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{MaxUnavailable: ios(intstr.FromInt32(1)), PauseBetweenNodes: dur(pause)}))
		c.waitUpdated("the rollout converges", 2*time.Minute)
		w, _ := c.look(context.Background())
		// Each node started draining no sooner than the pause after the previous one was Updated.
		var updated []time.Time
		for _, b := range w.brns {
			updated = append(updated, b.Status.UpdatedTime.Time)
			if w.nodes[b.Name].Labels[v1alpha1.LabelInterfaceVersion] != v1alpha1.InterfaceVersion {
				t.Errorf("node %s not labelled", b.Name)
			}
		}
		for i := range updated {
			for j := range updated {
				if i != j && absDuration(updated[i].Sub(updated[j])) < pause {
					t.Errorf("nodes updated %s apart, pause is %s", absDuration(updated[i].Sub(updated[j])), pause)
				}
			}
		}
		report(t, "pause", time.Since(start), 3*(perNode(time.Second))+2*pause+host.PrepareDuration, c.w.peakUnavailable(), 1)
	})
	t.Run("single node", func(t *testing.T) {
		// Two replicas on one node with a PDB allowing one disruption: the second pod has
		// nowhere to go (NoCapacity, said at once); at the drain deadline Force reboots the node
		// anyway, and the node ends schedulable.
		c := newCluster(t, 1, host)
		c.w.mu.Lock()
		c.w.forced = true
		c.w.mu.Unlock()
		start := time.Now()
		single := policy("single", v1alpha1.UpdatePolicySpec{})
		single.Spec.Drain = v1alpha1.DrainSpec{Timeout: dur(5 * time.Second), OnTimeout: v1alpha1.DrainTimeoutForce}
		c.apply(single)
		c.waitFor("the drain says it has no capacity", time.Minute, func(w world) bool {
			return len(w.brns) == 1 && w.brns[0].Status.Reason == v1alpha1.ReasonNoCapacity
		})
		c.waitUpdated("the single node updates and ends schedulable", 2*time.Minute)
		report(t, "single node", time.Since(start), perNode(time.Second)+host.PrepareDuration+5*time.Second, c.w.peakUnavailable(), 1)
	})
}

// Scale: 100 nodes in three waves, 10% at a time, one per zone.
func TestScale(t *testing.T) {
	c := newCluster(t, 100, host)
	start := time.Now()
	c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{
		MaxUnavailable: ios(intstr.FromString("10%")), MaxUnavailablePerZone: ios(intstr.FromInt32(1)),
		Waves: []v1alpha1.Wave{
			{Name: "canary", Nodes: ios(intstr.FromInt32(1)), SoakTime: dur(2 * time.Second)},
			{Name: "early", Nodes: ios(intstr.FromString("30%")), SoakTime: dur(time.Second)},
			{Name: "rest", Nodes: ios(intstr.FromString("100%"))},
		},
	}))
	c.waitUpdated("100 nodes converge", 10*time.Minute)
	c.checkTimeline(to, []string{"canary", "early", "rest"}, []string{"canary", "early"})
	// Three slots (one per zone): canary alone, then 30 and 69 nodes three at a time.
	ideal := perNode(time.Second)*time.Duration(1+10+23) + 3*time.Second + host.PrepareDuration
	report(t, "scale", time.Since(start), ideal, c.w.peakUnavailable(), 3)
	reportReactions(t, c.AuditLogPath)
}

// reportReactions prints, for each phase transition the controller makes on evidence about a
// node, its reaction times from the audit log so far (the target is judged on the figures: see
// docs/performance.md), and counts the transitions that wait on admission or time instead.
// Every node of the scenario goes through each of those transitions: one never measured means
// the measure, not the controller, is broken.
func reportReactions(t *testing.T, auditLog string) {
	t.Helper()
	reactions, err := audit.ReadReactions(auditLog, deploy.Identities)
	if err != nil {
		t.Fatal(err)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, r := range reactions.Measured {
		var evidence []string
		for _, e := range r.Evidence {
			evidence = append(evidence, string(e))
		}
		var latest []string
		for _, e := range slices.Sorted(maps.Keys(r.Latest)) {
			latest = append(latest, fmt.Sprintf("%s %d", e, r.Latest[e]))
		}
		t.Logf("%s (%s, or %s): n %d, p50 %.0f ms, p99 %.0f ms, max %.0f ms; latest: %s", r.Transition, strings.Join(evidence, ", "),
			audit.Entered, len(r.Times), ms(r.Percentile(50)), ms(r.Percentile(99)), ms(r.Percentile(100)), strings.Join(latest, ", "))
		if len(r.Times) == 0 {
			t.Errorf("no %s transition measured", r.Transition)
		}
	}
	var other []string
	for _, tr := range slices.SortedFunc(maps.Keys(reactions.Unmeasured), func(a, b audit.Transition) int {
		return strings.Compare(a.String(), b.String())
	}) {
		other = append(other, fmt.Sprintf("%s %d", tr, reactions.Unmeasured[tr]))
	}
	t.Logf("not measured (waiting on admission or time, or a first phase): %s", strings.Join(other, ", "))
}

// A bad release: the canary's new image does not boot. The canary falls back, is Failed and
// uncordoned, the rollout halts with nothing else touched; a pin to the old version recovers.
func TestBadRelease(t *testing.T) {
	c := newCluster(t, 6, host)
	canary := c.Fleet.Nodes[0]
	canary.Host.FailBoot()
	c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{
		MaxUnavailable: ios(intstr.FromInt32(2)),
		Waves:          []v1alpha1.Wave{{Name: "canary", NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/hostname": canary.Name}}}},
	}))
	c.waitFor("the canary fails and the rollout halts", 2*time.Minute, func(w world) bool {
		d := w.condition("fleet", v1alpha1.ConditionDegraded)
		return w.phase(canary.Name) == v1alpha1.PhaseFailed && d != nil && d.Status == metav1.ConditionTrue &&
			d.Reason == string(v1alpha1.ReasonFailureBudgetSpent)
	})
	w, _ := c.look(context.Background())
	for _, b := range w.brns {
		if b.Name == canary.Name {
			if b.Status.Reason != v1alpha1.ReasonFallback || w.nodes[b.Name].Spec.Unschedulable {
				t.Errorf("canary: reason %s, unschedulable %v", b.Status.Reason, w.nodes[b.Name].Spec.Unschedulable)
			}
			continue
		}
		if b.Spec.Action != v1alpha1.ActionNone || b.Status.Phase.InFlight() {
			t.Errorf("node %s was touched: %s %s", b.Name, b.Spec.Action, b.Status.Phase)
		}
	}
	for _, n := range c.Fleet.Nodes {
		if n.Host.Version() != from {
			t.Errorf("host %s runs %s", n.Name, n.Host.Version())
		}
	}
	// Roll back: pin the fleet to the version it runs.
	var p v1alpha1.UpdatePolicy
	if err := c.Client.Get(context.Background(), client.ObjectKey{Name: "fleet"}, &p); err != nil {
		t.Fatal(err)
	}
	p.Spec.Version = from
	if err := c.Client.Update(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the pin recovers the fleet", 2*time.Minute, func(w world) bool {
		r := w.condition("fleet", v1alpha1.ConditionReady)
		return r != nil && r.Status == metav1.ConditionTrue && w.converged(from)
	})
}

// Chaos: the controller is killed and restarted several times mid-rollout, agents too, and
// once the API server.
func TestChaos(t *testing.T) {
	c := newCluster(t, 24, host)
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{MaxUnavailable: ios(intstr.FromString("25%"))}))
	for i := range 4 {
		c.waitFor("progress before a crash", 2*time.Minute, func(w world) bool {
			updated := 0
			for _, b := range w.brns {
				if b.Status.Phase == v1alpha1.PhaseUpdated {
					updated++
				}
			}
			return updated >= 4*(i+1)
		})
		c.StopController()
		for range 3 {
			n := c.Fleet.Nodes[rng.IntN(len(c.Fleet.Nodes))]
			n.StopAgent()
			if err := n.StartAgent(); err != nil {
				t.Fatal(err)
			}
		}
		c.startController()
		if i == 1 {
			// The API server dies under everyone's feet: the controller may lose its lease
			// (it is restarted, as its container would be), watches break and resume.
			c.restartAPIServer()
		}
	}
	c.waitUpdated("the rollout completes through the crashes", 5*time.Minute)
	for _, n := range c.Fleet.Nodes {
		if boots := n.Host.State().Boots; boots != 2 {
			t.Errorf("host %s booted %d times, want 2 (one reboot)", n.Name, boots)
		}
	}
	report(t, "chaos", time.Since(start), perNode(time.Second)*4+host.PrepareDuration, c.w.peakUnavailable(), 6)
}

// Windows: a window of 30 s every minute. Nodes in flight when it closes finish; none starts
// until it opens again (the watcher checks every drain start against the window).
func TestWindowClosesMidRollout(t *testing.T) {
	hc := host
	hc.RebootDuration = 4 * time.Second
	c := newCluster(t, 9, hc)
	start := time.Now()
	c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{
		MaxUnavailable:     ios(intstr.FromInt32(2)),
		MaintenanceWindows: []v1alpha1.MaintenanceWindow{{Schedule: "* * * * *", Duration: metav1.Duration{Duration: 30 * time.Second}, TimeZone: "UTC"}},
	}))
	c.waitUpdated("the rollout completes across windows", 5*time.Minute)
	report(t, "windows", time.Since(start), 5*(hc.ActivateDuration+hc.RebootDuration+time.Second), c.w.peakUnavailable(), 2)
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// The watcher is evidence only if it can fail: planted violations — nodes cordoned beyond the
// budget, a protected workload below its desired healthy count, an agent writing another
// node's object — are each caught.
func TestWatcherCatchesPlantedViolations(t *testing.T) {
	c := newCluster(t, 3, host)
	ctx := context.Background()
	// A paused policy: the operator touches nothing; everything below is done by hand.
	c.apply(policy("fleet", v1alpha1.UpdatePolicySpec{MaxUnavailable: ios(intstr.FromInt32(1)), Paused: true}))
	a, b := c.Fleet.Nodes[0].Name, c.Fleet.Nodes[1].Name

	for _, name := range []string{a, b} {
		setUnschedulable(t, c.Client, name, true)
	}
	c.w.expect(t, "MaxUnavailable: policy fleet node "+strings.Join(slices.Sorted(slices.Values([]string{a, b})), ",")+": 2 nodes unavailable")
	for _, name := range []string{a, b} {
		setUnschedulable(t, c.Client, name, false)
	}
	c.w.forgetOnceClean(t)

	if err := c.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(stack.WorkloadNamespace), client.MatchingLabels{"app": "web"}); err != nil {
		t.Fatal(err)
	}
	c.w.expect(t, "PodDisruptionBudget shop/web")
	c.waitWorkloadHealthy()
	c.w.forgetOnceClean(t)

	// Node a's agent identity writes node b's report: the admission policy refuses it, and the
	// audit check names the attempt.
	cfg, err := c.Install.Agent(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	agent, err := client.New(cfg, client.Options{Scheme: c.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// b's report, once its agent has made one (the scenario is quicker than the first report).
	var brn v1alpha1.BottlerocketNode
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKey{Name: b}, &brn)
		return err == nil && brn.Status.Agent != nil, client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Fatalf("the report of %s: %v", b, err)
	}
	orig := brn.DeepCopy()
	brn.Status.Agent.BootID = "planted"
	if err := agent.Status().Patch(ctx, &brn, client.MergeFrom(orig)); !apierrors.IsForbidden(err) {
		t.Fatalf("the agent of %s wrote %s's status: %v", a, b, err)
	}
	problems, err := agentWriteViolations(c.AuditLogPath, c.Fleet)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("the agent of node [%s]: patch bottlerocketnodes/status %s", a, b)
	if len(problems) != 1 || !strings.HasPrefix(problems[0], want) {
		t.Errorf("audit check: got %q, want one problem starting %q", problems, want)
	}
	c.skipAgentCheck = true
}

func setUnschedulable(t *testing.T, c client.Client, name string, on bool) {
	t.Helper()
	var n corev1.Node
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	orig := n.DeepCopy()
	n.Spec.Unschedulable = on
	if err := c.Patch(context.Background(), &n, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
}
