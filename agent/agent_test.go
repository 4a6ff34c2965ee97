package agent_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/bottlerocket-ops/update-operator/agent"
	"github.com/bottlerocket-ops/update-operator/agent/hostapi"
	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/audit"
	"github.com/bottlerocket-ops/update-operator/test/framework/hostsim"
)

const hour = time.Hour

// fleetHost is a host on 1.25.0 offered 1.26.0, with short command durations.
func fleetHost() hostsim.Config {
	return hostsim.Config{
		Version: "1.25.0", Variant: "aws-k8s-1.31", Arch: "x86_64",
		Releases:        hostsim.Releases("1.26.0", "1.25.0", "1.24.2"),
		RefreshDuration: 5 * time.Millisecond, PrepareDuration: 30 * time.Millisecond,
		ActivateDuration: 5 * time.Millisecond, RebootDuration: 50 * time.Millisecond,
	}
}

var _ = Describe("Reporting", func() {
	It("reports what is true on the host once the controller created the object", func() {
		n := newNode(fleetHost())
		n.startAgent(hour)
		Eventually(func(g Gomega) {
			r := n.report(g)
			g.Expect(r.CurrentVersion).To(Equal("1.25.0"))
			g.Expect(r.Variant).To(Equal("aws-k8s-1.31"))
			g.Expect(r.Arch).To(Equal("x86_64"))
			g.Expect(r.BootID).To(Equal(n.host.BootID()))
			g.Expect(r.AvailableVersions).To(Equal([]string{"1.26.0", "1.25.0", "1.24.2"}))
			g.Expect(r.UpdateState).To(Equal(v1alpha1.HostStateAvailable))
		}).Should(Succeed())
	})

	It("writes nothing while idle, and exactly once when a new release appears", func(ctx SpecContext) {
		n := newNode(fleetHost())
		n.startAgent(20 * time.Millisecond)
		// Settled: ignore-waves on, and the list refreshed again once it took effect.
		Eventually(func(g Gomega) { g.Expect(n.report(g).AvailableVersions).To(ContainElement("1.26.0")) }).Should(Succeed())
		Eventually(func() bool { return n.host.State().AppliedIgnoreWaves }).Should(BeTrue())
		Eventually(n.calls.refreshes.Load).Should(BeNumerically(">=", 2))

		writes := agentWrites(n.name)
		start := n.calls.refreshes.Load()
		Eventually(n.calls.refreshes.Load).Should(BeNumerically(">=", start+10), "ten idle refresh cycles")
		Expect(agentWrites(n.name)).To(Equal(writes), "an idle agent makes no API writes")

		n.host.SetAvailable(hostsim.Releases("1.27.0", "1.26.0", "1.25.0", "1.24.2")...)
		Eventually(func(g Gomega) { g.Expect(n.report(g).AvailableVersions).To(ContainElement("1.27.0")) }).Should(Succeed())
		start = n.calls.refreshes.Load()
		Eventually(n.calls.refreshes.Load).Should(BeNumerically(">=", start+5))
		Expect(agentWrites(n.name)).To(Equal(writes+1), "one write for the new release, none after")
	})

	It("refreshes at once when the controller asks, and echoes the request", func() {
		n := newNode(fleetHost())
		n.startAgent(hour)
		Eventually(func(g Gomega) { g.Expect(n.report(g).CurrentVersion).NotTo(BeEmpty()) }).Should(Succeed())
		n.host.SetAvailable(hostsim.Releases("1.27.0", "1.26.0", "1.25.0")...)
		Eventually(func(g Gomega) {
			brn := n.get(g)
			brn.Spec.RefreshRequest = "r1"
			g.Expect(env.Client.Update(context.Background(), brn)).To(Succeed())
		}).Should(Succeed())
		Eventually(func(g Gomega) {
			r := n.report(g)
			g.Expect(r.RefreshRequest).To(Equal("r1"))
			g.Expect(r.AvailableVersions).To(ContainElement("1.27.0"))
		}).Should(Succeed())
	})
})

var _ = Describe("Stage", func() {
	It("locks the host to the target before refreshing, and prepares it", func() {
		n := newNode(fleetHost())
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
		st := n.host.State()
		Expect(st.VersionLock).To(Equal("1.26.0"))
		Expect(st.IgnoreWaves).To(BeTrue())
		Expect(st.Staged).To(Equal("1.26.0"))
		Expect(st.UpdateState).To(Equal(hostapi.StateStaged))
		Expect(st.Version).To(Equal("1.25.0"), "staging does not disrupt")
		Eventually(func(g Gomega) { g.Expect(n.report(g).StagedVersion).To(Equal("1.26.0")) }).Should(Succeed())
	})

	It("stages a release the host's own waves have not reached, since it ignores them", func() {
		cfg := fleetHost()
		cfg.Seed = hostsim.Seed(1500) // the release was published just now: this host's wave comes in days
		n := newNode(cfg)
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
	})

	It("stages a version below the running one (rollback by pin)", func() {
		n := newNode(fleetHost())
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.24.2")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
		Expect(n.host.State().Staged).To(Equal("1.24.2"))
	})

	It("reports a failed prepare with the host's error text and does not retry it on its own", func() {
		n := newNode(fleetHost())
		n.host.FailPrepare("write to /dev/xvda: no space left on device")
		n.startAgent(20 * time.Millisecond)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		last := n.lastAction(v1alpha1.ActionStage)
		Expect(last.Result).To(Equal(v1alpha1.ActionFailed))
		Expect(last.Reason).To(Equal(v1alpha1.ReasonStageFailed))
		Expect(last.Message).To(ContainSubstring("no space left on device"))
		refreshes := n.calls.refreshes.Load()
		Eventually(n.calls.refreshes.Load).Should(BeNumerically(">=", refreshes+3))
		Expect(n.calls.prepares.Load()).To(Equal(int32(1)), "a failed prepare waits for the controller")
	})

	It("reports a target the repository does not offer", func() {
		n := newNode(fleetHost())
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.30.0")
		last := n.lastAction(v1alpha1.ActionStage)
		Expect(last.Result).To(Equal(v1alpha1.ActionFailed))
		Expect(last.Message).To(ContainSubstring("does not offer 1.30.0"))
	})

	It("rides out a storm of 423 Locked answers from another caller's commands", func(ctx SpecContext) {
		cfg := fleetHost()
		cfg.RefreshDuration = 20 * time.Millisecond
		n := newNode(cfg)
		other := hostapi.New(n.socket, clock.RealClock{}, hostapi.WithPollInterval(2*time.Millisecond),
			hostapi.WithLockBackoff(time.Millisecond, 5*time.Millisecond, 1000))
		stormCtx, stopStorm := context.WithCancel(ctx)
		defer stopStorm()
		go func() {
			for stormCtx.Err() == nil {
				_ = other.Refresh(stormCtx)
			}
		}()
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
	})

	It("resumes after a restart in the middle of prepare", func() {
		cfg := fleetHost()
		cfg.PrepareDuration = 300 * time.Millisecond
		n := newNode(cfg)
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Eventually(func() bool { return n.calls.prepares.Load() == 1 && n.host.State().Busy }).Should(BeTrue(), "prepare under way")
		n.stopAgent()
		n.startAgent(hour)
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
		Expect(n.host.State().Staged).To(Equal("1.26.0"))
	})

	It("keeps reporting through 500s from the host and recovers", func() {
		n := newNode(fleetHost())
		n.host.Fail500(5)
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
	})
})

// stageThenReboot stages the target, then asks for the reboot.
func stageThenReboot(n *node, target string) {
	n.intend(v1alpha1.ActionStage, target)
	Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
	n.intend(v1alpha1.ActionReboot, target)
}

var _ = Describe("Reboot", func() {
	It("records boot ID and version before rebooting, and reports the target after", func() {
		cfg := fleetHost()
		recorded := make(chan *v1alpha1.RebootRecord, 1)
		var n *node
		cfg.OnReboot = func(ev hostsim.RebootEvent) {
			if ev.Phase == hostsim.RebootDown {
				// What the API server holds at the moment the host goes down.
				recorded <- n.report(Default).RebootRecord
			}
		}
		n = newNode(cfg)
		oldBoot := n.host.BootID()
		n.startAgent(hour)
		stageThenReboot(n, "1.26.0")

		var rec *v1alpha1.RebootRecord
		Eventually(recorded).Should(Receive(&rec))
		Expect(rec).NotTo(BeNil())
		Expect(rec.BootID).To(Equal(oldBoot))
		Expect(rec.FromVersion).To(Equal("1.25.0"))
		Expect(rec.ToVersion).To(Equal("1.26.0"))

		last := n.lastAction(v1alpha1.ActionReboot)
		Expect(last.Result).To(Equal(v1alpha1.ActionSucceeded))
		r := n.report(Default)
		Expect(r.CurrentVersion).To(Equal("1.26.0"))
		Expect(r.BootID).NotTo(Equal(oldBoot))
		Expect(n.host.State().Boots).To(Equal(2))
	})

	It("reports a boot-failure fallback as a failed action and never reboots again", func() {
		n := newNode(fleetHost())
		n.host.FailBoot()
		n.startAgent(20 * time.Millisecond)
		stageThenReboot(n, "1.26.0")
		last := n.lastAction(v1alpha1.ActionReboot)
		Expect(last.Result).To(Equal(v1alpha1.ActionFailed))
		Expect(last.Reason).To(Equal(v1alpha1.ReasonFallback))
		Expect(last.Message).To(ContainSubstring("came back on 1.25.0"))
		Expect(n.report(Default).CurrentVersion).To(Equal("1.25.0"))

		// Neither more passes nor a restart of the agent reboot the host again.
		refreshes := n.calls.refreshes.Load()
		Eventually(n.calls.refreshes.Load).Should(BeNumerically(">=", refreshes+3))
		n.stopAgent()
		n.startAgent(20 * time.Millisecond)
		Eventually(n.calls.refreshes.Load).Should(BeNumerically(">=", 3))
		Expect(n.host.State().Boots).To(Equal(2), "one reboot in all")
	})

	It("reboots exactly once when restarted after activating and before rebooting", func() {
		n := newNode(fleetHost())
		n.startAgent(hour)
		n.calls.crashBeforeReboot.Store(true)
		stageThenReboot(n, "1.26.0")
		Expect(n.host.WaitFor(waitCtx(), func(s hostsim.State) bool {
			return s.UpdateState == hostapi.StateReady
		})).To(Succeed())
		Eventually(n.calls.crashBeforeReboot.Load).Should(BeFalse())
		n.stopAgent()
		n.startAgent(hour)
		Expect(n.lastAction(v1alpha1.ActionReboot).Result).To(Equal(v1alpha1.ActionSucceeded))
		Expect(n.host.State().Boots).To(Equal(2))
		Expect(n.host.Version()).To(Equal("1.26.0"))
	})

	It("settles the reboot when the agent was down while the host rebooted", func() {
		cfg := fleetHost()
		cfg.RebootDuration = 200 * time.Millisecond
		down := make(chan struct{}, 1)
		cfg.OnReboot = func(ev hostsim.RebootEvent) {
			if ev.Phase == hostsim.RebootDown {
				down <- struct{}{}
			}
		}
		n := newNode(cfg)
		n.startAgent(hour)
		stageThenReboot(n, "1.26.0")
		Eventually(down).Should(Receive())
		n.stopAgent() // the agent's pod dies with its host
		Expect(n.host.WaitFor(waitCtx(), func(s hostsim.State) bool { return s.Up })).To(Succeed())
		n.startAgent(hour)
		Expect(n.lastAction(v1alpha1.ActionReboot).Result).To(Equal(v1alpha1.ActionSucceeded))
		Expect(n.host.State().Boots).To(Equal(2))
	})

	It("reports a failed activation without rebooting", func() {
		n := newNode(fleetHost())
		n.host.FailActivate("signpost: cannot set partition flags")
		n.startAgent(hour)
		stageThenReboot(n, "1.26.0")
		last := n.lastAction(v1alpha1.ActionReboot)
		Expect(last.Result).To(Equal(v1alpha1.ActionFailed))
		Expect(last.Reason).To(Equal(v1alpha1.ReasonRebootFailed))
		Expect(last.Message).To(ContainSubstring("cannot set partition flags"))
		Expect(n.report(Default).RebootRecord).To(BeNil())
		Expect(n.host.State().Boots).To(Equal(1))
	})
})

var _ = Describe("None", func() {
	It("deactivates an activated update that is no longer wanted", func(ctx SpecContext) {
		n := newNode(fleetHost())
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
		// Someone activates it by hand (retried: the agent's own refreshes may run meanwhile).
		Eventually(func() hostapi.UpdateState {
			_ = hostapi.New(n.socket, clock.RealClock{}).Activate(ctx)
			return n.host.State().UpdateState
		}).Should(Equal(hostapi.StateReady))
		n.intend(v1alpha1.ActionNone, "")
		Expect(n.host.WaitFor(ctx, func(s hostsim.State) bool { return s.UpdateState == hostapi.StateStaged })).To(Succeed())
		Expect(n.host.State().Boots).To(Equal(1))
	})

	It("gives the host back its own update settings, as it found them, when the node is no longer governed", func(ctx SpecContext) {
		cfg := fleetHost()
		cfg.VersionLock = "1.25.0" // the owner pinned the host to what it runs
		n := newNode(cfg)
		n.startAgent(hour)
		n.intend(v1alpha1.ActionStage, "1.26.0")
		Expect(n.lastAction(v1alpha1.ActionStage).Result).To(Equal(v1alpha1.ActionSucceeded))
		Expect(n.report(Default).OwnerSettings).To(Equal(&v1alpha1.HostUpdateSettings{VersionLock: "1.25.0"}))
		Eventually(func(g Gomega) {
			brn := n.get(g)
			brn.Spec = v1alpha1.BottlerocketNodeSpec{Action: v1alpha1.ActionNone}
			g.Expect(env.Client.Update(ctx, brn)).To(Succeed())
		}).Should(Succeed())
		Expect(n.host.WaitFor(ctx, func(s hostsim.State) bool { return s.VersionLock == "1.25.0" && !s.IgnoreWaves })).To(Succeed())
		Eventually(func(g Gomega) { g.Expect(n.report(g).OwnerSettings).To(BeNil()) }).Should(Succeed())
	})

	It("leaves the settings of a host it never changed alone", func(ctx SpecContext) {
		cfg := fleetHost()
		cfg.VersionLock, cfg.IgnoreWaves = "1.24.2", true // the owner's own rollback
		n := newNode(cfg)
		Eventually(func(g Gomega) {
			brn := n.get(g)
			brn.Spec.Policy = "" // not governed
			g.Expect(env.Client.Update(ctx, brn)).To(Succeed())
		}).Should(Succeed())
		n.startAgent(20 * time.Millisecond)
		Eventually(n.calls.refreshes.Load).Should(BeNumerically(">=", 5))
		Expect(n.host.State().VersionLock).To(Equal("1.24.2"))
		Expect(n.host.State().IgnoreWaves).To(BeTrue())
	})
})

// agentWrites counts the API writes to a node's BottlerocketNode status in the API server's
// audit log: the test's own writes go to the main resource, the agent's to status.
func agentWrites(name string) int {
	n, err := env.CompletedRequests(func(ev audit.Event) bool {
		return ev.ObjectRef.Resource == "bottlerocketnodes" && ev.ObjectRef.Name == name && ev.ObjectRef.Subresource == "status"
	})
	Expect(err).NotTo(HaveOccurred())
	return n
}

var _ = Describe("Setup", func() {
	It("refuses an agent without a clock", func() {
		_, err := agent.NewManager(env.Config, &agent.Agent{
			Host: hostapi.New("/nonexistent/api.sock", clock.RealClock{}), NodeName: "node-without-clock", BootIDFile: "/nonexistent/boot_id",
		}, ctrl.Options{Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
		Expect(err).To(MatchError(ContainSubstring("needs a Clock")))
	})
})
