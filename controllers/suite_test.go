package controllers_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/watch"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

// The versions every simulated fleet starts from and moves to.
const (
	fromVersion = "1.25.0"
	toVersion   = "1.26.0"
	osImage     = "Bottlerocket OS 1.25.0 (aws-k8s-1.31)"
	groupLabel  = "test.bottlerocket.aws/group"
	tickKey     = "test/tick"
	podNS       = metav1.NamespaceDefault
	stableFor   = 2 * time.Minute
)

var (
	env *testenv.Env
	// k8s is a direct, uncached admin client: every assertion reads the API server's view.
	k8s client.Client
	// epoch is where every test's fake clock starts.
	epoch = time.Date(2026, time.January, 5, 10, 0, 0, 0, time.UTC)
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(20 * time.Millisecond)
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	env, err = testenv.Start()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(env.Stop)
	k8s = env.Client
})

// fleet is one test's world: a fake clock, the controller running against it, and the
// nodes, policies and workloads the test created, all named after the test's group so that
// tests never see each other's objects.
type fleet struct {
	group string
	clock *clocktesting.FakeClock
	stop  func()
	// policies are touched by tick to make the controller look again.
	policies []*v1alpha1.UpdatePolicy
	ticks    atomic.Int64
	// wire, when set, changes how the controller's manager is built: a test that delays what
	// its cache sees, or makes its writes fail.
	wire func(*ctrl.Options)
}

// newFleet starts a controller with a fake clock. Everything the test creates is deleted
// before the controller stops.
func newFleet() *fleet {
	return newFleetWith(nil)
}

// newFleetWith is newFleet with the controller's manager options changed by wire (nil: as
// usual).
func newFleetWith(wire func(*ctrl.Options)) *fleet {
	f := &fleet{group: "t" + rand.String(6), clock: clocktesting.NewFakeClock(epoch), wire: wire}
	f.startController()
	DeferCleanup(func() { f.stopController() })
	return f
}

// startController starts a manager with node discovery and the rollout controller, wired as
// in production by controllers.Setup, but with the fleet's fake clock.
func (f *fleet) startController() {
	opts := ctrl.Options{
		Scheme:     env.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}
	if f.wire != nil {
		f.wire(&opts)
	}
	mgr, err := controllers.NewManager(env.Config, controllers.Options{Clock: f.clock, PollInterval: 50 * time.Millisecond}, opts)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	f.stop = func() { cancel(); <-done }
}

// stopController stops the manager and waits until it is gone (a controller crash or a
// leader change).
func (f *fleet) stopController() {
	if f.stop != nil {
		f.stop()
		f.stop = nil
	}
}

func (f *fleet) name(suffix string) string { return f.group + "-" + suffix }

// addNode creates a Ready Node reporting osImage, labelled with the fleet's group, as a
// kubelet would; it is deleted at the end of the test.
func (f *fleet) addNode(suffix, image string, mutate ...func(*corev1.Node)) string {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: f.name(suffix), Labels: map[string]string{groupLabel: f.group}}}
	for _, m := range mutate {
		m(node)
	}
	Expect(k8s.Create(context.Background(), node)).To(Succeed())
	DeferCleanup(deleteObject, node)
	node.Status.NodeInfo = corev1.NodeSystemInfo{OSImage: image, BootID: "boot-" + suffix}
	node.Status.Conditions = []corev1.NodeCondition{readyCondition(true)}
	Expect(k8s.Status().Update(context.Background(), node)).To(Succeed())
	return node.Name
}

// addBottlerocketNodes adds Bottlerocket nodes on fromVersion and waits for their
// BottlerocketNodes.
func (f *fleet) addBottlerocketNodes(suffixes ...string) []string {
	names := make([]string, len(suffixes))
	for i, s := range suffixes {
		names[i] = f.addNode(s, osImage)
	}
	for _, n := range names {
		Eventually(func(g Gomega) { getBRN(g, n) }).Should(Succeed())
	}
	return names
}

func readyCondition(ready bool) corev1.NodeCondition {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return corev1.NodeCondition{Type: corev1.NodeReady, Status: status, Reason: "Test", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}
}

// setReady sets the Node's Ready condition, as the kubelet (or its absence) would.
func setReady(name string, ready bool) {
	Eventually(func(g Gomega) {
		node := getNode(g, name)
		node.Status.Conditions = []corev1.NodeCondition{readyCondition(ready)}
		g.Expect(k8s.Status().Update(context.Background(), node)).To(Succeed())
	}).Should(Succeed())
}

// addPolicy creates an UpdatePolicy selecting the fleet's nodes; it is deleted at the end of
// the test.
func (f *fleet) addPolicy(suffix string, spec v1alpha1.UpdatePolicySpec) *v1alpha1.UpdatePolicy {
	if spec.NodeSelector == nil {
		spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{groupLabel: f.group}}
	}
	p := &v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: f.name(suffix)}, Spec: spec}
	Expect(k8s.Create(context.Background(), p)).To(Succeed())
	DeferCleanup(deleteObject, p)
	f.policies = append(f.policies, p)
	return p
}

// rolloutSpec is a one-at-a-time rollout to toVersion whose evictions take no grace period
// (there is no kubelet to end a pod).
func rolloutSpec(mutate ...func(*v1alpha1.UpdatePolicySpec)) v1alpha1.UpdatePolicySpec {
	spec := v1alpha1.UpdatePolicySpec{
		Version:        toVersion,
		MaxUnavailable: ptr.To(intstr.FromInt32(1)),
		Drain:          v1alpha1.DrainSpec{GracePeriodSeconds: ptr.To[int64](0)},
		Health:         v1alpha1.HealthSpec{StableFor: &metav1.Duration{Duration: stableFor}},
	}
	for _, m := range mutate {
		m(&spec)
	}
	return spec
}

// tick makes the controller look again, after the fake clock moved, by touching the fleet's
// policies (watched objects).
func (f *fleet) tick() {
	n := f.ticks.Add(1)
	for _, p := range f.policies {
		patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:"%d"}}}`, tickKey, n))
		Expect(k8s.Patch(context.Background(), &v1alpha1.UpdatePolicy{ObjectMeta: metav1.ObjectMeta{Name: p.Name}},
			client.RawPatch(client.Merge.Type(), patch))).To(Succeed())
	}
}

// advance steps the fake clock and makes the controller look again.
func (f *fleet) advance(d time.Duration) {
	f.clock.Step(d)
	f.tick()
}

// deleteObject deletes obj at the end of a test and waits until it is gone (the controller
// releases a policy's finalizer; discovery deletes a gone Node's BottlerocketNode).
func deleteObject(ctx context.Context, obj client.Object) {
	err := k8s.Delete(ctx, obj, client.GracePeriodSeconds(0))
	Expect(client.IgnoreNotFound(err)).To(Succeed())
	Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj))
	}).Should(BeTrue(), "%T %s is gone", obj, obj.GetName())
}

func getBRN(g Gomega, name string) *v1alpha1.BottlerocketNode {
	var brn v1alpha1.BottlerocketNode
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: name}, &brn)).To(Succeed())
	return &brn
}

func getNode(g Gomega, name string) *corev1.Node {
	var node corev1.Node
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: name}, &node)).To(Succeed())
	return &node
}

func getPolicy(g Gomega, name string) *v1alpha1.UpdatePolicy {
	var p v1alpha1.UpdatePolicy
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Name: name}, &p)).To(Succeed())
	return &p
}

// expectNode waits until the node's BottlerocketNode is in phase and passes the extra checks.
func expectNode(name string, phase v1alpha1.NodePhase, checks ...func(Gomega, *v1alpha1.BottlerocketNode)) *v1alpha1.BottlerocketNode {
	GinkgoHelper()
	var brn *v1alpha1.BottlerocketNode
	Eventually(func(g Gomega) {
		brn = getBRN(g, name)
		g.Expect(brn.Status.Phase).To(Equal(phase), "phase of %s (reason %s: %s)", name, brn.Status.Reason, brn.Status.Message)
		for _, c := range checks {
			c(g, brn)
		}
	}).Should(Succeed())
	return brn
}

// intent checks spec.action (and, for an action other than None, spec.targetVersion).
func intent(action v1alpha1.NodeAction) func(Gomega, *v1alpha1.BottlerocketNode) {
	return func(g Gomega, brn *v1alpha1.BottlerocketNode) {
		g.Expect(brn.Spec.Action).To(Equal(action), "spec.action of %s", brn.Name)
		if action != v1alpha1.ActionNone {
			g.Expect(brn.Spec.TargetVersion).To(Equal(toVersion))
		}
	}
}

func reason(r v1alpha1.Reason) func(Gomega, *v1alpha1.BottlerocketNode) {
	return func(g Gomega, brn *v1alpha1.BottlerocketNode) {
		g.Expect(brn.Status.Reason).To(Equal(r), "reason of %s: %s", brn.Name, brn.Status.Message)
	}
}

// seenHealthy reports whether the controller saw the node healthy: stableFor counts from then.
func seenHealthy(brn *v1alpha1.BottlerocketNode) bool {
	return brn.Status.HealthySince != nil
}

// cordonedByUs checks whether the Node is cordoned with the operator's record of it.
func cordonedByUs(want bool) func(Gomega, *v1alpha1.BottlerocketNode) {
	return func(g Gomega, brn *v1alpha1.BottlerocketNode) {
		node := getNode(g, brn.Name)
		g.Expect(node.Spec.Unschedulable).To(Equal(want), "Node %s unschedulable", brn.Name)
		if want {
			g.Expect(node.Annotations).To(HaveKeyWithValue(v1alpha1.AnnotationCordonedBy, controllers.FieldManager))
		} else {
			g.Expect(node.Annotations).NotTo(HaveKey(v1alpha1.AnnotationCordonedBy))
		}
	}
}

// The test plays the agent: it writes status.agent through the status subresource with the
// agent's field manager, as the agent does.

// agentReport changes the node's status.agent.
func agentReport(name string, change func(brn *v1alpha1.BottlerocketNode, a *v1alpha1.AgentStatus)) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		brn := getBRN(g, name)
		orig := brn.DeepCopy()
		if brn.Status.Agent == nil {
			brn.Status.Agent = &v1alpha1.AgentStatus{}
		}
		change(brn, brn.Status.Agent)
		g.Expect(k8s.Status().Patch(context.Background(), brn, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}),
			client.FieldOwner(agent.FieldManager))).To(Succeed())
	}).Should(Succeed())
}

// agentReady reports a host on fromVersion offered toVersion.
func agentReady(name string) {
	agentReport(name, func(_ *v1alpha1.BottlerocketNode, a *v1alpha1.AgentStatus) {
		a.CurrentVersion, a.Variant, a.Arch = fromVersion, "aws-k8s-1.31", "x86_64"
		a.BootID, a.AvailableVersions = "boot-1", []string{toVersion, fromVersion}
		a.UpdateState = v1alpha1.HostStateAvailable
	})
}

// agentStaged reports the target staged, answering the current Stage intent.
func agentStaged(name string) {
	agentReport(name, func(brn *v1alpha1.BottlerocketNode, a *v1alpha1.AgentStatus) {
		a.ObservedGeneration, a.StagedVersion, a.UpdateState = brn.Generation, toVersion, v1alpha1.HostStateStaged
		a.LastAction = agentAction(v1alpha1.ActionStage, v1alpha1.ActionSucceeded, "")
	})
}

// agentRebooted reports the host back after the reboot, running running; anything but the
// target is the boot-failure fallback the agent reports as a failed reboot.
func agentRebooted(name, running string) {
	agentReport(name, func(brn *v1alpha1.BottlerocketNode, a *v1alpha1.AgentStatus) {
		a.RebootRecord = &v1alpha1.RebootRecord{BootID: a.BootID, FromVersion: fromVersion, ToVersion: toVersion, Time: metav1.Now()}
		a.ObservedGeneration, a.BootID, a.CurrentVersion = brn.Generation, "boot-2", running
		a.StagedVersion, a.UpdateState = "", v1alpha1.HostStateIdle
		a.LastAction = agentAction(v1alpha1.ActionReboot, v1alpha1.ActionSucceeded, "")
		if running != toVersion {
			a.LastAction = agentAction(v1alpha1.ActionReboot, v1alpha1.ActionFailed, v1alpha1.ReasonFallback)
		}
	})
}

func agentAction(action v1alpha1.NodeAction, result v1alpha1.ActionResult, r v1alpha1.Reason) *v1alpha1.AgentAction {
	return &v1alpha1.AgentAction{Action: action, TargetVersion: toVersion, Result: result, Reason: r,
		Message: string(r), Time: metav1.Now()}
}

// updateNode plays the agent through one node's whole update, the controller deciding each
// step, until the node is Updated.
func (f *fleet) updateNode(name string) {
	GinkgoHelper()
	expectNode(name, v1alpha1.PhaseStaging, intent(v1alpha1.ActionStage))
	agentStaged(name)
	expectNode(name, v1alpha1.PhaseRebooting, intent(v1alpha1.ActionReboot))
	agentRebooted(name, toVersion)
	f.stabilize(name)
}

// stabilize waits until the nodes are Updated, stepping the fake clock to the end of
// health.stableFor of every node the controller has seen healthy. It steps again when the
// controller restarted the count (it may, from a cache that lags behind its last write).
func (f *fleet) stabilize(names ...string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		for _, n := range names {
			brn := getBRN(g, n)
			if brn.Status.Phase == v1alpha1.PhaseStabilizing && seenHealthy(brn) {
				since := brn.Status.HealthySince.Time
				if due := since.Add(stableFor); f.clock.Now().Before(due) {
					f.clock.SetTime(due)
					f.tick()
				}
			}
			g.Expect(brn.Status.Phase).To(Equal(v1alpha1.PhaseUpdated), "%s: %s", n, brn.Status.Message)
			intent(v1alpha1.ActionNone)(g, brn)
			reason(v1alpha1.ReasonUpToDate)(g, brn)
		}
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// addPod creates a Running, Ready pod on a node, as the scheduler and kubelet would, labelled
// app=<name> and changed by mutate; it is deleted at the end of the test.
func addPod(name, node string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: podNS, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "app"}},
			TerminationGracePeriodSeconds: ptr.To[int64](0)},
	}
	for _, m := range mutate {
		m(pod)
	}
	Expect(k8s.Create(context.Background(), pod)).To(Succeed())
	DeferCleanup(deleteObject, pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}}
	Expect(k8s.Status().Update(context.Background(), pod)).To(Succeed())
	return pod
}

// addPDB creates a PodDisruptionBudget over app=<app> with the status a disruption
// controller would compute for disruptionsAllowed (none runs in envtest).
func addPDB(app string, disruptionsAllowed int32) *policyv1.PodDisruptionBudget {
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: app + "-pdb", Namespace: podNS},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
	}
	Expect(k8s.Create(context.Background(), pdb)).To(Succeed())
	DeferCleanup(deleteObject, pdb)
	setDisruptionsAllowed(pdb, disruptionsAllowed)
	return pdb
}

// setDisruptionsAllowed writes a healthy PDB status allowing n disruptions.
func setDisruptionsAllowed(pdb *policyv1.PodDisruptionBudget, n int32) {
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(pdb), pdb)).To(Succeed())
		pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, DisruptionsAllowed: n,
			CurrentHealthy: 1 + n, DesiredHealthy: 1, ExpectedPods: 1 + n}
		g.Expect(k8s.Status().Update(context.Background(), pdb)).To(Succeed())
	}).Should(Succeed())
}

// monitor watches the API server's view of a fleet's nodes and BottlerocketNodes, and
// records what every test layer checks at every instant: how many nodes are unavailable at
// once, each node's phases in order, and how often Reboot was written into a node's spec.
type monitor struct {
	prefix string
	mu     sync.Mutex
	brns   map[string]*v1alpha1.BottlerocketNode
	nodes  map[string]*corev1.Node
	// maxUnavailable is the most nodes seen unavailable at once.
	maxUnavailable int
	phases         map[string][]v1alpha1.NodePhase
	reboots        map[string]int
	closed         atomic.Bool
}

// watchFleet starts a monitor of the fleet's objects; call it before creating them.
func (f *fleet) watchFleet() *monitor {
	m := &monitor{prefix: f.group + "-", brns: map[string]*v1alpha1.BottlerocketNode{}, nodes: map[string]*corev1.Node{},
		phases: map[string][]v1alpha1.NodePhase{}, reboots: map[string]int{}}
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, list := range []client.ObjectList{&v1alpha1.BottlerocketNodeList{}, &corev1.NodeList{}} {
		w, err := wc.Watch(ctx, list)
		Expect(err).NotTo(HaveOccurred())
		wg.Go(func() {
			defer w.Stop()
			for ev := range w.ResultChan() {
				if ev.Type != watch.Error {
					m.observe(ev.Object.(client.Object), ev.Type == watch.Deleted)
				}
			}
			if ctx.Err() == nil {
				m.closed.Store(true)
			}
		})
	}
	DeferCleanup(func() { cancel(); wg.Wait() })
	return m
}

func (m *monitor) observe(obj client.Object, deleted bool) {
	name := obj.GetName()
	if len(name) < len(m.prefix) || name[:len(m.prefix)] != m.prefix {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch o := obj.(type) {
	case *v1alpha1.BottlerocketNode:
		if deleted {
			delete(m.brns, name)
			return
		}
		if prev := m.brns[name]; o.Spec.Action == v1alpha1.ActionReboot && (prev == nil || prev.Spec.Action != v1alpha1.ActionReboot) {
			m.reboots[name]++
		}
		if p := m.phases[name]; o.Status.Phase != "" && (len(p) == 0 || p[len(p)-1] != o.Status.Phase) {
			m.phases[name] = append(p, o.Status.Phase)
		}
		m.brns[name] = o
	case *corev1.Node:
		if deleted {
			delete(m.nodes, name)
			return
		}
		m.nodes[name] = o
	}
	unavailable := 0
	for n, node := range m.nodes {
		brn := m.brns[n]
		notReady := len(node.Status.Conditions) > 0 && !kubeutil.NodeReady(node) // no conditions: not started yet
		if node.Spec.Unschedulable || notReady || (brn != nil && brn.Status.Phase.Unavailable()) {
			unavailable++
		}
	}
	m.maxUnavailable = max(m.maxUnavailable, unavailable)
}

// settled waits until the monitor saw every node in phase: its watches may lag behind the
// direct client's reads.
func (m *monitor) settled(phase v1alpha1.NodePhase, names ...string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		_, phases, _ := m.report()
		for _, n := range names {
			g.Expect(phases[n]).NotTo(BeEmpty())
			g.Expect(phases[n][len(phases[n])-1]).To(Equal(phase), "%s as the watch saw it", n)
		}
	}).Should(Succeed())
}

// report returns what the monitor saw; it fails if a watch ended early.
func (m *monitor) report() (maxUnavailable int, phases map[string][]v1alpha1.NodePhase, reboots map[string]int) {
	GinkgoHelper()
	Expect(m.closed.Load()).To(BeFalse(), "a watch ended early; the record is incomplete")
	m.mu.Lock()
	defer m.mu.Unlock()
	phases = make(map[string][]v1alpha1.NodePhase, len(m.phases))
	for n, p := range m.phases {
		phases[n] = append([]v1alpha1.NodePhase(nil), p...)
	}
	reboots = make(map[string]int, len(m.reboots))
	for n, c := range m.reboots {
		reboots[n] = c
	}
	return m.maxUnavailable, phases, reboots
}
