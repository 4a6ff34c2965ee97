package agent_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
)

// These specs run the agent against the simulator's real-host behaviours (each one's source
// is named in package hostsim's tests): waves, settings applied after the answer, a prepare
// that chooses again, commands that hang or never record, reboots refused or slow to happen.

var _ = Describe("On a real host", func() {
	It("turns ignore-waves on as soon as the node is governed, so a later-wave host reports what it could take", func() {
		cfg := fleetHost()
		cfg.Seed = hostsim.Seed(1500) // 1.26.0 was published just now: this host's wave comes in days
		n := newNode(cfg)
		n.startAgent(hour)
		Eventually(func(g Gomega) {
			g.Expect(n.report(g).AvailableVersions).To(ContainElement("1.26.0"))
		}).Should(Succeed())
		st := n.host.State()
		Expect(st.IgnoreWaves).To(BeTrue())
		Expect(st.VersionLock).To(Equal("latest"), "only the wave setting changes before there is an intent")
		Expect(n.report(Default).OwnerSettings).To(Equal(&v1alpha1.HostUpdateSettings{VersionLock: "latest"}))
	})

	It("waits for a pin to take effect before concluding anything from the host's choice", func() {
		cfg := fleetHost()
		cfg.SettingsDelay = 400 * time.Millisecond // thar-be-settings is slow today
		n := newNode(cfg)
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.24.2") // a rollback: under "latest" the host would choose 1.26.0
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
		Expect(n.host.State().Staged).To(Equal("1.24.2"))
	})

	It("does not report staged what a prepare did not write", func(ctx SpecContext) {
		n := newNode(fleetHost())
		n.startAgent(hour)
		// Between the agent's refresh and its prepare, someone pins the host to what it runs:
		// the downloader then finds nothing to do, and the host still says Staged.
		n.calls.beforePrepare.Store(ptrTo(func() {
			defer GinkgoRecover()
			owner := hostapi.New(n.socket, clock.RealClock{})
			Expect(owner.SetUpdateSettings(ctx, "1.25.0", true)).To(Succeed())
			Expect(n.host.WaitFor(ctx, func(s hostsim.State) bool { return s.AppliedVersionLock == "1.25.0" })).To(Succeed())
		}))
		n.intend(v1alpha1.ActionStage, "1.26.0")
		last := n.lastAction(v1alpha1.ActionStage)
		Expect(last.Result).To(Equal(v1alpha1.ActionFailed))
		Expect(last.Message).To(ContainSubstring("No update required"))
		Expect(n.host.State().Staged).To(BeEmpty(), "nothing was written, whatever the host's status says")
	})

	It("reports a prepare that hangs holding the host's lock as failed, in the host's words, within its bound", func() {
		n := newNode(fleetHost())
		n.host.HangCommand(hostapi.CommandPrepare)
		n.startAgentWith(hour, nil, hostapi.WithCommandTimeout(hostapi.CommandPrepare, 500*time.Millisecond))
		n.intend(v1alpha1.ActionStage, "1.26.0")
		last := n.lastAction(v1alpha1.ActionStage)
		Expect(last.Result).To(Equal(v1alpha1.ActionFailed))
		Expect(last.Reason).To(Equal(v1alpha1.ReasonStageFailed))
		Expect(last.Message).To(ContainSubstring("still holds its update lock"))
	})

	It("serves a new intent while the host is stuck on the last one, and reports its worker stuck", func(ctx SpecContext) {
		n := newNode(fleetHost())
		n.host.HangCommand(hostapi.CommandPrepare) // a download stuck for good
		n.startAgent(hour)
		n.agent.StuckAfter = 300 * time.Millisecond
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Eventually(func() bool { return n.calls.prepares.Load() == 1 && n.host.State().Busy }).Should(BeTrue(), "prepare hangs")
		Eventually(func() error { return n.agent.Healthz(nil) }).Should(MatchError(ContainSubstring("busy for")))

		// The policy is deleted: the controller withdraws the intent and governance.
		Eventually(func(g Gomega) {
			brn := n.get(g)
			brn.Spec = v1alpha1.BottlerocketNodeSpec{Action: v1alpha1.ActionNone}
			g.Expect(env.Client.Update(ctx, brn)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			brn := n.get(g)
			g.Expect(brn.Status.Agent.ObservedGeneration).To(Equal(brn.Generation), "the agent acted on the new intent")
			g.Expect(brn.Status.Agent.OwnerSettings).To(BeNil())
		}).Should(Succeed())
		Expect(n.host.State().IgnoreWaves).To(BeFalse(), "the host's own settings are back although its update lock is held")
		// The report is written before the pass that wrote it ends.
		Eventually(func() error { return n.agent.Healthz(nil) }).Should(Succeed(), "the worker is free again")
	})

	It("reports a reboot the host keeps refusing as failed, with systemctl's words, after a bounded number of requests", func() {
		n := newNode(fleetHost())
		n.host.RefuseReboot(-1) // a shutdown inhibitor that never lets go
		n.startAgent(hour)
		stageThenReboot(n, "1.26.0")
		last := n.lastAction(v1alpha1.ActionReboot)
		Expect(last.Result).To(Equal(v1alpha1.ActionFailed))
		Expect(last.Reason).To(Equal(v1alpha1.ReasonRebootFailed))
		Expect(last.Message).To(ContainSubstring("Operation inhibited by"))
		Expect(n.calls.reboots.Load()).To(Equal(int32(3)))
		Consistently(n.calls.reboots.Load, 300*time.Millisecond).Should(Equal(int32(3)), "it does not ask again on its own")
		Expect(n.host.State().Boots).To(Equal(1))
	})

	It("asks for a reboot once although the host keeps running for a while after accepting it", func() {
		cfg := fleetHost()
		cfg.RebootLinger = time.Second // the kubelet's shutdown grace period
		n := newNode(cfg)
		n.startAgent(hour)
		stageThenReboot(n, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionReboot).Result).To(Equal(v1alpha1.ActionSucceeded))
		Expect(n.calls.reboots.Load()).To(Equal(int32(1)))
		Expect(n.host.State().Boots).To(Equal(2))
	})

	It("never repeats an action because its own last report has not reached its cache", func() {
		n := newNode(fleetHost())
		n.host.FailPrepare("Failed to write target: connection reset by peer")
		n.startAgentWith(20*time.Millisecond, func(c client.Client) client.Client { return &laggingStatus{Client: c} })
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionFailed))
		refreshes := n.calls.refreshes.Load()
		Eventually(n.calls.refreshes.Load).Should(BeNumerically(">=", refreshes+5))
		Expect(n.calls.prepares.Load()).To(Equal(int32(1)), "the failure stands until the controller asks again")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionFailed))
	})

	It("does not reboot on an intent its cache still holds but the API server no longer does", func(ctx SpecContext) {
		n := newNode(fleetHost())
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
		stale := n.get(Default)
		stale.Spec.Action = v1alpha1.ActionReboot
		n.stopAgent()
		n.intend(v1alpha1.ActionNone, "") // withdrawn; the agent's cache below never sees it
		n.startAgentWith(hour, func(c client.Client) client.Client {
			return &staleSpec{Client: c, spec: stale.Spec, generation: stale.Generation}
		})
		Consistently(n.calls.reboots.Load, time.Second).Should(BeZero())
		Expect(n.host.State().Boots).To(Equal(1))
		Expect(n.host.State().UpdateState).NotTo(Equal(hostapi.StateReady), "nothing activated either")
	})

	It("keeps versions that are not release versions out of its report, and the API server refuses them", func(ctx SpecContext) {
		n := newNode(fleetHost())
		n.host.SetAvailable(hostsim.Reached("1.26.0", "1.25.0", "01.99.0-evil")...)
		n.startAgent(hour)
		Eventually(func(g Gomega) {
			g.Expect(n.report(g).AvailableVersions).To(Equal([]string{"1.26.0", "1.25.0"}))
		}).Should(Succeed())
		brn := n.get(Default)
		brn.Status.Agent.AvailableVersions = append(brn.Status.Agent.AvailableVersions, "99.0.0; rm")
		Expect(env.Client.Status().Update(ctx, brn)).To(MatchError(ContainSubstring("availableVersions")))
	})
})

// laggingStatus is a cache that has not seen the agent's last write: Get returns status.agent
// as it was one write before.
type laggingStatus struct {
	client.Client
	mu            sync.Mutex
	seen, lagging *v1alpha1.AgentStatus
}

func (l *laggingStatus) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := l.Client.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	brn, ok := obj.(*v1alpha1.BottlerocketNode)
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := brn.Status.Agent; cur != nil && (l.seen == nil || cur.LastAction != nil && (l.seen.LastAction == nil || *cur.LastAction != *l.seen.LastAction)) {
		l.lagging, l.seen = l.seen, cur.DeepCopy()
	}
	brn.Status.Agent = l.lagging.DeepCopy()
	return nil
}

// staleSpec is a cache that still holds an intent the API server no longer does.
type staleSpec struct {
	client.Client
	spec       v1alpha1.BottlerocketNodeSpec
	generation int64
}

func (s *staleSpec) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := s.Client.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if brn, ok := obj.(*v1alpha1.BottlerocketNode); ok {
		brn.Spec, brn.Generation = s.spec, s.generation
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
