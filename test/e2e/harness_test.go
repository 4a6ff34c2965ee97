//go:build e2e

// Package e2e runs rollouts through a simulated fleet on a whole local cluster — etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok, workloads guarded by
// PodDisruptionBudgets, simulated Bottlerocket hosts each with a real agent, the real
// controller — while a watcher outside the operator follows the cluster and fails the test
// on any broken invariant.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/kubectl/pkg/util/podutils"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
	"github.com/bottlerocket-ops/update-operator/test/framework/deploy"
	"github.com/bottlerocket-ops/update-operator/test/framework/fleet"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/invariants"
	"github.com/bottlerocket-ops/update-operator/test/framework/localcluster"
	"github.com/bottlerocket-ops/update-operator/test/framework/stack"
	"github.com/bottlerocket-ops/update-operator/test/framework/timeline"
)

const (
	from = "1.25.0"
	to   = "1.26.0"
)

// durations of the simulated hosts; the ideal rollout time is computed from them. The target
// was published just now, so Bottlerocket's waves have reached almost none of the hosts; the
// hosts apply settings late and keep running for a while after accepting a reboot.
var host = hostsim.Config{
	Version: from, Variant: "aws-k8s-1.31", Arch: "x86_64", Releases: append(hostsim.Releases(to), hostsim.Reached(from)...),
	RefreshDuration: 20 * time.Millisecond, PrepareDuration: 500 * time.Millisecond,
	ActivateDuration: 20 * time.Millisecond, RebootDuration: time.Second, RebootResponse: hostsim.RebootRandom,
	SettingsDelay: 300 * time.Millisecond, RebootLinger: 500 * time.Millisecond,
}

// cluster is one scenario's world: the stack and the watcher.
type cluster struct {
	*stack.Stack
	t *testing.T
	w *watcher
	// skipAgentCheck is set by a test that planted agent writes and checked them itself.
	skipAgentCheck bool
}

// newCluster starts the stack — a local cluster with the operator installed from its
// manifests (or as options say, e.g. from its Helm chart), the controller (its own service account, leader election), nodes simulated
// Bottlerocket hosts whose agents use tokens bound to the agent DaemonSet's pods, and the
// workload: a Deployment with one pod per node guarded by a PodDisruptionBudget allowing one
// disruption — with the watcher following the cluster from before the controller starts.
func newCluster(t *testing.T, nodes int, hc hostsim.Config, options ...func(*stack.Options)) *cluster {
	t.Helper()
	logs.start()
	c := &cluster{t: t}
	opts := stack.Options{
		Nodes: nodes, Host: hc, RefreshInterval: time.Second,
		Controller: controllers.Options{PollInterval: 200 * time.Millisecond},
		Workloads:  stack.Web,
		Before: func(ctx context.Context, step stack.Step, s *stack.Stack) (err error) {
			if step == stack.StepController {
				c.w, err = startWatcher(ctx, t, s)
			}
			return err
		},
	}
	for _, o := range options {
		o(&opts)
	}
	s, err := stack.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Stack = s
	t.Cleanup(s.Stop)
	t.Cleanup(c.checkAudit)
	t.Cleanup(c.checkCordons)
	return c
}

// waitWorkloadHealthy waits until the workload's pods are Ready and the disruption controller
// has computed its budget.
func (c *cluster) waitWorkloadHealthy() {
	c.t.Helper()
	if err := c.WaitWorkloadsHealthy(context.Background()); err != nil {
		c.t.Fatal(err)
	}
}

// startController starts a replica of the controller (a new leader after a crash).
func (c *cluster) startController() {
	c.t.Helper()
	if err := c.StartController(); err != nil {
		c.t.Fatal(err)
	}
}

// checkAudit checks the API server's audit log: no pod was evicted twice (an eviction
// repeated after a restart), every write under the agents' identity went to the status of the
// BottlerocketNode of the node its token is bound to, and every node's agent did write its own.
func (c *cluster) checkAudit() {
	c.t.Helper()
	evicted := map[string]int{}
	_, err := audit.Count(c.AuditLogPath, func(ev audit.Event) bool {
		if ev.ObjectRef.Subresource == "eviction" && ev.ResponseStatus.Code == 201 {
			evicted[ev.ObjectRef.Namespace+"/"+ev.ObjectRef.Name]++
		}
		return false
	})
	if err != nil {
		c.t.Fatal(err)
	}
	for pod, n := range evicted {
		if n > 1 {
			c.t.Errorf("audit: pod %s was evicted %d times", pod, n)
		}
	}
	if c.skipAgentCheck {
		return
	}
	problems, err := agentWriteViolations(c.AuditLogPath, c.Fleet)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range problems {
		c.t.Error("audit: " + p)
	}
}

// agentWriteViolations reads the audit log for agents' writes that were not their own, and
// nodes whose agent wrote nothing under its own identity.
func agentWriteViolations(path string, fl *fleet.Fleet) ([]string, error) {
	own, problems, err := deploy.AgentWrites(path)
	if err != nil {
		return nil, err
	}
	for _, n := range fl.Nodes {
		if own[n.Name] == 0 {
			problems = append(problems, fmt.Sprintf("node %s: no write by an agent bound to it", n.Name))
		}
	}
	return problems, nil
}

// apply creates a policy.
func (c *cluster) apply(p *v1alpha1.UpdatePolicy) {
	c.t.Helper()
	if err := c.Client.Create(context.Background(), p); err != nil {
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
		c.fatal(fmt.Sprintf("%s: not within %s", what, timeout))
	}
}

// logs holds the running scenario's logs (the operator's, the agents', the fleet's). The
// watcher's verdict is the evidence, not these logs: a failing wait prints their tail for
// the nodes concerned; E2E_LOGS=1 prints them all as they come.
var logs scenarioLogs

type scenarioLogs struct {
	once sync.Once
	mu   sync.Mutex
	buf  bytes.Buffer
}

// start empties the logs for a new scenario (the first call sets the process's logger).
func (l *scenarioLogs) start() {
	l.once.Do(func() {
		var w io.Writer = l
		if os.Getenv("E2E_LOGS") != "" {
			w = io.MultiWriter(os.Stderr, l)
		}
		ctrl.SetLogger(zap.New(zap.WriteTo(w), zap.UseDevMode(true), func(o *zap.Options) { o.TimeEncoder = zapcore.ISO8601TimeEncoder }))
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

func (l *scenarioLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// tail is the last n lines that are errors or name one of nodes.
func (l *scenarioLogs) tail(n int, nodes []string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var picked []string
	for line := range strings.Lines(l.buf.String()) {
		if strings.Contains(line, "\tERROR\t") || slices.ContainsFunc(nodes, func(node string) bool { return strings.Contains(line, `"`+node+`"`) }) {
			picked = append(picked, line)
		}
	}
	return strings.Join(picked[max(0, len(picked)-n):], "")
}

// fatal ends the scenario, showing the cluster and the logs of the nodes not settled.
func (c *cluster) fatal(msg string) {
	c.t.Helper()
	w, _ := c.look(context.Background())
	var nodes []string
	for _, b := range w.brns {
		if !settled(b.Status.Phase) {
			nodes = append(nodes, b.Name)
		}
	}
	c.t.Fatalf("%s\n%s%s\nlogs (errors, and lines naming those nodes):\n%s", msg, w, c.describeWorkload(), logs.tail(60, nodes))
}

// describeWorkload is the workload's budget as the disruption controller sees it, and its pods
// that are not Ready.
func (c *cluster) describeWorkload() string {
	ctx := context.Background()
	var pdb policyv1.PodDisruptionBudget
	var pods corev1.PodList
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: stack.WorkloadNamespace, Name: "web"}, &pdb); err != nil {
		return fmt.Sprintf("  PodDisruptionBudget %s/web: %v\n", stack.WorkloadNamespace, err)
	}
	st := pdb.Status
	s := fmt.Sprintf("  PodDisruptionBudget %s/web: %d healthy of %d desired, %d expected, %d disruptions allowed, disrupted pods %v\n",
		stack.WorkloadNamespace, st.CurrentHealthy, st.DesiredHealthy, st.ExpectedPods, st.DisruptionsAllowed, st.DisruptedPods)
	if err := c.Client.List(ctx, &pods, client.InNamespace(stack.WorkloadNamespace)); err != nil {
		return s + fmt.Sprintf("  pods: %v\n", err)
	}
	for i := range pods.Items {
		if p := &pods.Items[i]; !podutils.IsPodReady(p) || p.DeletionTimestamp != nil {
			s += fmt.Sprintf("  pod %s on %q: %s, ready %v, deleting %v\n", p.Name, p.Spec.NodeName, p.Status.Phase, podutils.IsPodReady(p), p.DeletionTimestamp != nil)
		}
	}
	return s
}

// waitUpdated waits until the rollout converges with every node updated; a node that fails
// ends the wait at once.
func (c *cluster) waitUpdated(what string, timeout time.Duration) {
	c.t.Helper()
	var failed bool
	c.waitFor(what, timeout, func(w world) bool {
		failed = slices.ContainsFunc(w.brns, func(b v1alpha1.BottlerocketNode) bool { return b.Status.Phase == v1alpha1.PhaseFailed })
		return failed || w.converged(to)
	})
	if failed {
		c.fatal(what + ": a node failed")
	}
}

// waitRebooting waits until a node is down for its reboot (Rebooting and not Ready) and
// returns its name.
func (c *cluster) waitRebooting() string {
	c.t.Helper()
	var node string
	c.waitFor("a node reboots", 2*time.Minute, func(w world) bool {
		for _, b := range w.brns {
			if b.Status.Phase == v1alpha1.PhaseRebooting && !kubeutil.NodeReady(w.nodes[b.Name]) {
				node = b.Name
				return true
			}
		}
		return false
	})
	return node
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
		if err := c.Client.List(ctx, l); err != nil {
			return w, err
		}
	}
	w.policies, w.brns, w.nodes = pl.Items, bl.Items, map[string]*corev1.Node{}
	for i := range nl.Items {
		w.nodes[nl.Items[i].Name] = &nl.Items[i]
	}
	return w, nil
}

// String lists the nodes that are neither Updated nor waiting their turn in full, and counts
// the others by phase and reason.
func (w world) String() string {
	s := ""
	counts := map[string]int{}
	for _, b := range w.brns {
		if settled(b.Status.Phase) {
			counts[fmt.Sprintf("%s (%s)", b.Status.Phase, b.Status.Reason)]++
			continue
		}
		v := ""
		if b.Status.Agent != nil {
			v = b.Status.Agent.CurrentVersion
		}
		s += fmt.Sprintf("  %s %s %s %s/%s %s: %s [Node: %s]\n", b.Name, b.Status.Phase, v, b.Spec.Action, b.Spec.TargetVersion,
			b.Status.Reason, b.Status.Message, describeNode(w.nodes[b.Name]))
	}
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		s += fmt.Sprintf("  %d nodes %s\n", counts[k], k)
	}
	for _, p := range w.policies {
		s += fmt.Sprintf("  policy %s: %s %s %v\n", p.Name, p.Status.Phase, p.Status.Progress, p.Status.Conditions)
	}
	return s
}

// settled: a node waiting its turn or done, not worth a line of its own in a report.
func settled(p v1alpha1.NodePhase) bool {
	return p == v1alpha1.PhaseUpdated || p == v1alpha1.PhasePending || p == v1alpha1.PhaseIdle
}

// describeNode is what a Node says of its readiness, cordon and simulated reboot.
func describeNode(n *corev1.Node) string {
	if n == nil {
		return "gone"
	}
	ready := "no Ready condition"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = fmt.Sprintf("Ready=%s (%s) since %s", c.Status, c.Reason, c.LastTransitionTime.Format(time.TimeOnly))
		}
	}
	return fmt.Sprintf("%s, unschedulable %v, rebooting %q, boot ID %s", ready, n.Spec.Unschedulable,
		n.Annotations[localcluster.RebootAnnotation], n.Status.NodeInfo.BootID)
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
	mu sync.Mutex
	// cache is the cache followed (of generation following; stopCache stops it); events of
	// another generation are not judged, nor any while generation is ahead (suspended).
	cache                 cache.Cache
	stopCache             context.CancelFunc
	generation, following int

	checker    *invariants.Checker
	prev       invariants.Snapshot
	violations []string
	// pending holds the instants judged broken, to correct with the versions of their
	// revision still to come (see invariants.Verdict); passed is the newest revision each
	// kind's watch has delivered.
	pending []*invariants.Verdict
	// clean says whether the latest instant judged was within every budget.
	clean  bool
	passed map[string]int64
	// scene is the fleet at the first broken budget, as corrected.
	scene string
	peak  int
	// healthy holds the PodDisruptionBudgets seen with their desired healthy pods Ready.
	healthy map[string]bool
	// forced is set where the policy reboots although pods remain (drain.onTimeout: Force):
	// the PodDisruptionBudgets may then be broken by design.
	forced bool
	// timeline records every snapshot judged, for the rollout of the policy "fleet".
	timeline *timeline.Recorder
}

// startWatcher starts the watcher on the stack's cluster until ctx ends; the violations it
// saw are reported when the test ends.
func startWatcher(ctx context.Context, t *testing.T, s *stack.Stack) (*watcher, error) {
	t.Helper()
	w := &watcher{checker: invariants.NewChecker(), healthy: map[string]bool{}, passed: map[string]int64{},
		timeline: timeline.NewRecorder("fleet", time.UTC)}
	if err := w.follow(ctx, s); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.settle(true)
		for _, v := range w.violations {
			t.Error("invariant broken: " + v)
		}
		if w.scene != "" {
			t.Log("the fleet at the first broken budget:\n" + w.scene)
		}
		if t.Failed() {
			w.writeTimeline(t)
		}
	})
	return w, nil
}

// follow starts the watcher's informers on a new cache and, once it has synced, judges the
// events of that cache only. A cache's informers resume after an API server restart each in
// its own time, by listing again (the versions in between are never delivered), so the view
// they make together is torn until all have: after a restart the watcher follows a new cache.
func (w *watcher) follow(ctx context.Context, s *stack.Stack) error {
	cc, err := cache.New(s.Config, cache.Options{Scheme: s.Scheme})
	if err != nil {
		return fmt.Errorf("creating the watcher's cache: %w", err)
	}
	w.mu.Lock()
	w.generation++
	gen := w.generation
	w.mu.Unlock()
	for _, obj := range []client.Object{&corev1.Node{}, &v1alpha1.BottlerocketNode{}, &v1alpha1.UpdatePolicy{}, &corev1.Pod{}, &policyv1.PodDisruptionBudget{}} {
		inf, err := cc.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { w.observe(ctx, gen, obj) },
			UpdateFunc: func(_, obj any) { w.observe(ctx, gen, obj) },
			DeleteFunc: func(any) { w.observe(ctx, gen, nil) },
		}); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	cctx, stop := context.WithCancel(ctx)
	go func() { _ = cc.Start(cctx) }()
	if !cc.WaitForCacheSync(cctx) {
		stop()
		return errors.New("the watcher's caches did not sync")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopCache != nil {
		w.stopCache()
	}
	w.cache, w.stopCache, w.following = cc, stop, gen
	w.pending, w.passed = nil, map[string]int64{}
	return nil
}

// suspend stops judging until the next follow (an API server restart is coming).
func (w *watcher) suspend() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.generation++
}

// observe checks one step of the cluster, as the watcher's caches see it now, after the
// event of obj from the cache of generation gen (ignored unless it is the one followed).
func (w *watcher) observe(ctx context.Context, gen int, obj any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if gen != w.following || gen != w.generation {
		return
	}
	w.arrived(obj)
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
	w.timeline.Observe(snap)
	w.settle(false)
	if !w.forced {
		w.checkWorkloads(ctx)
	}
	w.prev = snap
}

// checkWorkloads checks that no workload protected by a PodDisruptionBudget, once healthy, has
// fewer Ready pods than the budget's desired healthy count.
func (w *watcher) checkWorkloads(ctx context.Context) {
	var pdbs policyv1.PodDisruptionBudgetList
	var pods corev1.PodList
	if w.cache.List(ctx, &pdbs) != nil || w.cache.List(ctx, &pods) != nil {
		return
	}
	for _, pdb := range pdbs.Items {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || pdb.Status.DesiredHealthy == 0 {
			continue
		}
		ready := 0
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Namespace == pdb.Namespace && p.DeletionTimestamp.IsZero() && sel.Matches(labels.Set(p.Labels)) && podutils.IsPodReady(p) {
				ready++
			}
		}
		key := pdb.Namespace + "/" + pdb.Name
		if int32(ready) >= pdb.Status.DesiredHealthy {
			w.healthy[key] = true
		} else if w.healthy[key] {
			w.violations = append(w.violations, fmt.Sprintf("PodDisruptionBudget %s/%s: %d pods Ready, %d desired",
				pdb.Namespace, pdb.Name, ready, pdb.Status.DesiredHealthy))
		}
	}
}

// writeTimeline writes the picture of a failed scenario's rollout into $E2E_TIMELINES (or
// the system's temporary directory) and says where.
func (w *watcher) writeTimeline(t *testing.T) {
	dir := os.Getenv("E2E_TIMELINES")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-timeline.svg")
	w.timeline.Finish(time.Now())
	if err := w.timeline.WriteFile(path); err != nil {
		t.Logf("no timeline: %v", err)
		return
	}
	t.Logf("the rollout's timeline: %s", path)
}

// checkTimeline draws the rollout so far and reads the picture back: it must show the nodes
// updated to target, the peak unavailable the watcher judged, and the waves started and soaked.
func (c *cluster) checkTimeline(target string, waves, soaked []string) {
	c.t.Helper()
	w, err := c.look(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	updated := 0
	for _, b := range w.brns {
		if b.Status.Phase == v1alpha1.PhaseUpdated && b.Status.Agent != nil && b.Status.Agent.CurrentVersion == target {
			updated++
		}
	}
	c.w.mu.Lock()
	c.w.timeline.Finish(time.Now())
	var buf bytes.Buffer
	err = c.w.timeline.Render(&buf)
	peak := c.w.peak
	c.w.mu.Unlock()
	if err != nil {
		c.t.Fatal(err)
	}
	fig, err := timeline.Read(&buf)
	if err != nil {
		c.t.Fatalf("the timeline is not a well-formed picture: %v", err)
	}
	if fig.Final[v1alpha1.PhaseUpdated] != updated || fig.PeakUnavailable != peak {
		c.t.Errorf("the timeline shows %d nodes updated and a peak of %d unavailable; the cluster has %d updated, the watcher judged a peak of %d",
			fig.Final[v1alpha1.PhaseUpdated], fig.PeakUnavailable, updated, peak)
	}
	var soaks []string
	for _, s := range fig.Soaks {
		soaks = append(soaks, s.Wave)
	}
	if !slices.Equal(fig.WaveStarts, waves) || !slices.Equal(soaks, soaked) {
		c.t.Errorf("the timeline marks waves %q starting and %q soaking; want %q and %q", fig.WaveStarts, soaks, waves, soaked)
	}
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

// checkInstant checks each policy's budgets against the world as it is: every node cordoned,
// not Ready or in a disrupting phase counts against the policy it is governed by, or was
// disrupted under and is not back from, whoever caused it and whatever the policies say now.
func (w *watcher) checkInstant(s invariants.Snapshot) {
	v := w.checker.Judge(s)
	w.clean = len(v.Violations) == 0
	if !w.clean {
		w.pending = append(w.pending, v)
		return
	}
	w.peak = max(w.peak, v.Peak)
}

// arrived corrects the pending verdicts with obj, a version the watch of its kind just
// delivered, and notes how far that watch has come.
func (w *watcher) arrived(obj any) {
	o, ok := obj.(client.Object)
	if !ok {
		return
	}
	for _, v := range w.pending {
		v.Correct(o)
	}
	if rv, err := strconv.ParseInt(o.GetResourceVersion(), 10, 64); err == nil {
		kind := fmt.Sprintf("%T", o)
		w.passed[kind] = max(w.passed[kind], rv)
	}
}

// judged are the kinds a verdict's view holds.
var judged = []string{fmt.Sprintf("%T", &corev1.Node{}), fmt.Sprintf("%T", &v1alpha1.BottlerocketNode{}), fmt.Sprintf("%T", &v1alpha1.UpdatePolicy{})}

// settle judges again each pending verdict whose revision every judged kind's watch has
// passed (all: every one), and reports what is still broken.
func (w *watcher) settle(all bool) {
	w.pending = slices.DeleteFunc(w.pending, func(v *invariants.Verdict) bool {
		for _, kind := range judged {
			if !all && w.passed[kind] <= v.Revision() {
				return false
			}
		}
		peak, violations := v.Judge()
		w.peak = max(w.peak, peak)
		for _, x := range violations {
			w.violations = append(w.violations, x.String())
		}
		if len(violations) > 0 && w.scene == "" {
			w.scene = describe(v.View())
		}
		return true
	})
}

// describe is each node of s as the watcher judges it: cordoned, Ready, phase and action.
func describe(s invariants.Snapshot) string {
	var b strings.Builder
	for _, n := range s.Nodes {
		fmt.Fprintf(&b, "  %s: unschedulable %v, ready %v", n.Node.Name, n.Node.Spec.Unschedulable, kubeutil.NodeReady(n.Node))
		if n.BRN != nil {
			fmt.Fprintf(&b, ", phase %s (%s), action %s, policy %q", n.BRN.Status.Phase, n.BRN.Status.Reason, n.BRN.Spec.Action, n.BRN.Spec.Policy)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// checkCordons checks, once a scenario that did not fail otherwise ends, that no node is left
// cordoned by the operator.
func (c *cluster) checkCordons() {
	c.t.Helper()
	if c.t.Failed() {
		return
	}
	w, err := c.look(context.Background())
	if err != nil {
		c.t.Fatal(err)
	}
	snap := invariants.Snapshot{Now: time.Now(), Policies: w.policies}
	for i := range w.brns {
		if n := w.nodes[w.brns[i].Name]; n != nil {
			snap.Nodes = append(snap.Nodes, invariants.Node{Node: n, BRN: &w.brns[i]})
		}
	}
	for _, v := range invariants.LeftCordoned(snap) {
		c.t.Error("invariant broken at the end: " + v.String())
	}
}

// expect waits until the watcher has reported a violation containing what.
func (w *watcher) expect(t *testing.T, what string) {
	t.Helper()
	var seen []string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		seen = slices.Clone(w.violations)
		for _, v := range w.pending {
			_, now := v.Judge()
			for _, x := range now {
				seen = append(seen, x.String())
			}
		}
		for _, v := range seen {
			if strings.Contains(v, what) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("the watcher did not report %q; it reported %q", what, seen)
	}
}

// forget drops the violations reported so far (they were planted).
func (w *watcher) forget() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations, w.pending = nil, nil
}

// forgetOnceClean drops what the watcher reported of violations planted by hand once it
// judges the world within every budget again: its view follows the API server's with a lag,
// and what it judged of the world before it caught up would be reported as broken after.
func (w *watcher) forgetOnceClean(t *testing.T) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.clean, nil
	})
	if err != nil {
		t.Fatalf("the watcher does not judge the world within its budgets again: %v", err)
	}
	w.forget()
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

// restartAPIServer crashes and restarts the API server; the watcher follows a new cache once
// it is back (see follow).
func (c *cluster) restartAPIServer() {
	c.t.Helper()
	c.w.suspend()
	ctx := context.Background()
	if err := c.Cluster.RestartAPIServer(ctx, nil); err != nil {
		c.t.Fatal(err)
	}
	if err := c.w.follow(ctx, c.Stack); err != nil {
		c.t.Fatal(err)
	}
}
