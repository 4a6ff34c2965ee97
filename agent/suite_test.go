package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
	"github.com/bottlerocket-ops/update-operator/test/framework/testenv"
)

var env *testenv.Env

func TestAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Agent suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(10 * time.Millisecond)
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	dir, err := os.MkdirTemp("", "agent-audit")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	env, err = testenv.Start(testenv.WithAuditLog(dir))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(env.Stop)
})

// node is one simulated Bottlerocket node: a host simulator, its BottlerocketNode, and an
// agent that can be stopped and started again (a restart of the agent's pod).
type node struct {
	name   string
	host   *hostsim.Host
	socket string
	bootID string // file with the host's boot ID
	calls  *countingHost
	agent  *agent.Agent
	stop   context.CancelFunc
	done   chan struct{}
}

// newNode starts a simulated host and creates the node's BottlerocketNode, governed by a
// policy, with no intent yet.
func newNode(cfg hostsim.Config) *node {
	dir, err := os.MkdirTemp("", "ag") // short: Unix socket paths are limited to 108 bytes
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	n := &node{name: "node-" + rand.String(6), socket: filepath.Join(dir, "api.sock"), bootID: filepath.Join(dir, "boot_id")}
	cfg.BootIDFile = n.bootID
	n.host = hostsim.New(cfg)
	Expect(n.host.Start(n.socket)).To(Succeed())
	DeferCleanup(n.host.Close)
	brn := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: n.name}, Spec: v1alpha1.BottlerocketNodeSpec{Policy: "fleet"}}
	Expect(env.Client.Create(context.Background(), brn)).To(Succeed())
	return n
}

// countingHost counts the agent's calls to the host and can intercept a reboot.
type countingHost struct {
	agent.Host
	refreshes, prepares, reboots atomic.Int32
	// crashBeforeReboot, when set, makes the next reboot call fail as if the agent died just
	// before it: the host is not rebooted.
	crashBeforeReboot atomic.Bool
	// beforePrepare, if set, runs before the next prepare (something else acting on the host).
	beforePrepare atomic.Pointer[func()]
}

func (c *countingHost) Refresh(ctx context.Context) error {
	c.refreshes.Add(1)
	return c.Host.Refresh(ctx)
}

func (c *countingHost) PrepareOutput(ctx context.Context) (string, error) {
	if f := c.beforePrepare.Swap(nil); f != nil {
		(*f)()
	}
	c.prepares.Add(1)
	return c.Host.PrepareOutput(ctx)
}

func (c *countingHost) Reboot(ctx context.Context) error {
	if c.crashBeforeReboot.CompareAndSwap(true, false) {
		return context.Canceled
	}
	c.reboots.Add(1)
	return c.Host.Reboot(ctx)
}

// startAgent starts the node's agent with its own manager and a cache restricted to its
// BottlerocketNode, as in production.
func (n *node) startAgent(refresh time.Duration) { n.startAgentWith(refresh, nil) }

// startAgentWith is startAgent with the agent's client wrapped by wrap (nil: as is), to show
// the agent a cache that lags.
func (n *node) startAgentWith(refresh time.Duration, wrap func(client.Client) client.Client, opts ...hostapi.Option) {
	n.calls = &countingHost{Host: hostapi.New(n.socket, clock.RealClock{}, append([]hostapi.Option{
		hostapi.WithPollInterval(5 * time.Millisecond),
		hostapi.WithLockBackoff(5*time.Millisecond, 50*time.Millisecond, 200),
		hostapi.WithHTTPTimeout(2 * time.Second)}, opts...)...)}
	n.agent = &agent.Agent{
		Host: n.calls, NodeName: n.name, BootIDFile: n.bootID,
		Clock: clock.RealClock{}, RefreshInterval: refresh, RetryInterval: 20 * time.Millisecond,
		SettleTimeout: 3 * time.Second, SettleDelay: 200 * time.Millisecond,
	}
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		Cache: agent.CacheOptions(n.name)})
	Expect(err).NotTo(HaveOccurred())
	n.agent.Client = mgr.GetClient()
	if wrap != nil {
		n.agent.Client = wrap(n.agent.Client)
	}
	Expect(n.agent.SetupWithManager(mgr)).To(Succeed())
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(n.done)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	DeferCleanup(n.stopAgent)
}

// stopAgent stops the agent and waits until it is gone.
func (n *node) stopAgent() {
	if n.stop != nil {
		n.stop()
		<-n.done
		n.stop = nil
	}
}

// intend writes the controller's intent into the node's spec.
func (n *node) intend(action v1alpha1.NodeAction, target string) {
	Eventually(func(g Gomega) {
		brn := n.get(g)
		brn.Spec.Action, brn.Spec.TargetVersion = action, target
		g.Expect(env.Client.Update(context.Background(), brn)).To(Succeed())
	}).Should(Succeed())
}

func (n *node) get(g Gomega) *v1alpha1.BottlerocketNode {
	var brn v1alpha1.BottlerocketNode
	g.Expect(env.Client.Get(context.Background(), client.ObjectKey{Name: n.name}, &brn)).To(Succeed())
	return &brn
}

// report returns status.agent as the API server has it (never nil).
func (n *node) report(g Gomega) *v1alpha1.AgentStatus {
	if a := n.get(g).Status.Agent; a != nil {
		return a
	}
	return &v1alpha1.AgentStatus{}
}

// lastAction waits until the agent reports a final result for action and returns it.
func (n *node) lastAction(action v1alpha1.NodeAction) *v1alpha1.AgentAction {
	var last *v1alpha1.AgentAction
	Eventually(func(g Gomega) {
		last = n.report(g).LastAction
		g.Expect(last).NotTo(BeNil())
		g.Expect(last.Action).To(Equal(action))
		g.Expect(last.Result).NotTo(Equal(v1alpha1.ActionInProgress))
	}).Should(Succeed())
	return last
}

// waitCtx bounds a wait on the host simulator.
func waitCtx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	DeferCleanup(cancel)
	return ctx
}
