package planner

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/invariants"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// simulation plays the world around the planner, which makes every transition: each node's
// agent and host (staging, reboot, boot fallback), its kubelet (Ready), its pods (evicted over
// time, Ready again after the boot), and the controller's I/O (it answers Probes with evidence
// and applies the plan: the BottlerocketNode, cordons). A fake clock moves on; the invariants
// are checked at every step.
//
// Where each simulated behaviour comes from:
//   - the API server bumps metadata.generation on every spec change of a custom resource with
//     a status subresource (apiextensions-apiserver's customresource strategy, PrepareForUpdate),
//     and the agent answers an intent by echoing that generation (agent/agent.go);
//   - a reboot changes the host's boot ID (/proc/sys/kernel/random/boot_id is new at every boot,
//     the kernel's random(4)); the Node is not Ready while the host is down (the kubelet stops
//     posting NodeReady), and its pods are Ready again some time after it is back;
//   - an activated image has one try: if it fails at boot, GRUB boots the old partition set
//     and the host comes back on the old version (Bottlerocket's signpost, as summarised in
//     the host API reference: "Reboot and boot-failure rollback");
//   - the agent records the boot ID and versions before it reboots, and reports a boot on the
//     old version as a failed Reboot with reason BootFallback (agent/agent.go).
type simulation struct {
	t       *testing.T
	rng     *rand.Rand
	in      Input
	world   map[string]*hostWorld
	failPct int // chance in percent that a staging or a reboot fails
	checker *invariants.Checker
	log     *strings.Builder // nil: no golden log
	steps   int
	observe func(Plan) // nil: none; sees every plan once applied
}

// hostWorld is one node's host, agent and pods; a zero time is "nothing under way".
type hostWorld struct {
	stageDone   time.Time // the agent finishes staging
	drained     time.Time // the last evicted pod is gone
	bootDone    time.Time // the host is back from its reboot
	podsReadyAt time.Time // the node's pods are Ready again after the boot
	boots       int
}

func newSimulation(t *testing.T, seed uint64, in Input, failPct int) *simulation {
	s := &simulation{
		t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), in: in,
		world: map[string]*hostWorld{}, failPct: failPct, checker: invariants.NewChecker(),
	}
	for _, n := range in.Nodes {
		s.world[n.Node.Name] = &hostWorld{}
	}
	s.in.SchedulableNodes = len(in.Nodes)
	return s
}

func (s *simulation) logf(format string, args ...any) {
	if s.log != nil {
		fmt.Fprintf(s.log, "%s  ", s.in.Now.UTC().Format("01-02 15:04"))
		fmt.Fprintf(s.log, format+"\n", args...)
	}
}

// later is a random time one to eight minutes from now.
func (s *simulation) later() time.Time {
	return s.in.Now.Add(time.Duration(1+s.rng.IntN(8)) * time.Minute)
}

// step answers the probes, plans once, applies the plan, checks the invariants, then plays
// the agents and hosts. It returns the plan and whether the world changed.
func (s *simulation) step() (Plan, bool) {
	s.t.Helper()
	s.steps++
	s.answerProbes()
	before := snapshot(s.in)
	plan := Compute(s.in)
	wrote := s.apply(plan)
	for _, v := range s.checker.Step(before, snapshot(s.in)) {
		s.t.Fatalf("step %d at %s: %s", s.steps, s.in.Now, v)
	}
	for i, d := range plan.Nodes {
		if s.log != nil && (d.Phase != before.Nodes[i].BRN.Status.Phase || d.Reason != before.Nodes[i].BRN.Status.Reason) {
			s.logf("%-8s %-11s → %-11s wave=%-6s %s: %s", d.Name, before.Nodes[i].BRN.Status.Phase, d.Phase, d.Wave, d.Reason, d.Message)
		}
	}
	s.checkHalt(plan)
	if s.observe != nil {
		s.observe(plan)
	}
	return plan, s.playHosts() || wrote
}

// answerProbes gives Compute the evidence it asks for, as the controller gathers it: an
// eviction pass cordons the node and reports the pods left; a pod read reports the node's
// DaemonSet pod and workload pod.
func (s *simulation) answerProbes() {
	for i := range s.in.Nodes {
		s.in.Nodes[i].Evidence = nil
	}
	for _, p := range Probes(s.in) {
		ns := &s.in.Nodes[p.Index]
		w := s.world[ns.Node.Name]
		ev := &Evidence{}
		if p.Drain != nil {
			ns.Node.Spec.Unschedulable = true
			if w.drained.IsZero() {
				w.drained = s.later()
			}
			ev.Drain = &DrainEvidence{EvictedPDBs: []string{"apps/web"}}
			if s.in.Now.Before(w.drained) {
				ev.Drain.Remaining = 2
			}
		}
		if p.Pods {
			ready := !s.in.Now.Before(w.podsReadyAt)
			ev.Pods, ev.PodsRead = []corev1.Pod{daemonPod(ns.Node.Name, ready), workloadPod(ns.Node.Name, ready)}, true
		}
		ns.Evidence = ev
	}
}

// apply writes the plan as the controller does: the BottlerocketNode (a spec change bumps
// its generation, as the API server does), and the Node's cordon for the phase. It reports
// whether a node's phase or spec changed: the watch event of that write reconciles again.
func (s *simulation) apply(plan Plan) bool {
	wrote := false
	for i, d := range plan.Nodes {
		ns := &s.in.Nodes[i]
		brn := ns.BRN
		spec, phase := brn.Spec, brn.Status.Phase
		d.ApplyTo(brn, s.in.Now)
		if brn.Spec != spec {
			brn.Generation++
		}
		wrote = wrote || brn.Spec != spec || brn.Status.Phase != phase
		if HoldFor(d.Phase) != HoldCordon {
			ns.Node.Spec.Unschedulable = false
		}
	}
	for i := range s.in.Policies {
		r := plan.Policies[s.in.Policies[i].Name]
		r.ApplyTo(&s.in.Policies[i].Status)
	}
	return wrote
}

// checkHalt asserts that a policy whose failure budget is spent reports the halt.
func (s *simulation) checkHalt(plan Plan) {
	for _, p := range s.in.Policies {
		r := plan.Policies[p.Name]
		failed := 0
		for _, n := range s.in.Nodes {
			st := &n.BRN.Status
			if n.BRN.Spec.Policy == p.Name && st.Phase == v1alpha1.PhaseFailed && st.FailedTarget == r.TargetVersion &&
				(p.Status.ResumeTime == nil || st.FailedTime.After(p.Status.ResumeTime.Time)) {
				failed++
			}
		}
		if halted := failed >= p.Spec.MaxFailedNodesOrDefault(); halted != r.Halted {
			s.t.Fatalf("policy %s: %d failed, report halted=%v", p.Name, failed, r.Halted)
		}
	}
}

// playHosts plays every node's agent and host on its intent, and reports whether anything
// changed: the agent stages the target (or fails to), then on Reboot records the boot and
// reboots the host, which comes back on the target (or falls back to the old image) and
// Ready, its pods Ready a little later.
func (s *simulation) playHosts() bool {
	moved := false
	for _, n := range s.in.Nodes {
		brn, w := n.BRN, s.world[n.Node.Name]
		a := brn.Status.Agent
		switch {
		case brn.Spec.Action == v1alpha1.ActionStage && a.ObservedGeneration != brn.Generation:
			moved = s.stage(n, w) || moved
		case brn.Spec.Action == v1alpha1.ActionReboot && (a.RebootRecord == nil || a.RebootRecord.ToVersion != brn.Spec.TargetVersion || a.RebootRecord.BootID == a.BootID):
			moved = s.reboot(n, w) || moved
		}
		if brn.Spec.Action != v1alpha1.ActionStage || a.ObservedGeneration == brn.Generation {
			w.stageDone = time.Time{}
		}
		if brn.Status.Phase != v1alpha1.PhaseDraining {
			w.drained = time.Time{}
		}
	}
	return moved
}

// stage plays the agent staging the target; it answers once the download is done.
func (s *simulation) stage(n NodeState, w *hostWorld) bool {
	brn := n.BRN
	a := brn.Status.Agent
	if w.stageDone.IsZero() {
		w.stageDone = s.later()
		return false
	}
	if s.in.Now.Before(w.stageDone) {
		return false
	}
	res := &v1alpha1.AgentAction{Action: v1alpha1.ActionStage, TargetVersion: brn.Spec.TargetVersion, Result: v1alpha1.ActionSucceeded, Time: metav1.NewTime(s.in.Now)}
	if s.rng.IntN(100) < s.failPct {
		res.Result, res.Message = v1alpha1.ActionFailed, "simulated download failure"
	} else {
		a.StagedVersion = brn.Spec.TargetVersion
	}
	a.LastAction, a.ObservedGeneration = res, brn.Generation
	s.logf("%-8s agent: stage %s %s", n.Node.Name, brn.Spec.TargetVersion, res.Result)
	return true
}

// reboot plays the agent recording the boot and rebooting, and the host coming back.
func (s *simulation) reboot(n NodeState, w *hostWorld) bool {
	brn := n.BRN
	a := brn.Status.Agent
	if a.RebootRecord == nil || a.RebootRecord.ToVersion != brn.Spec.TargetVersion {
		a.RebootRecord = &v1alpha1.RebootRecord{BootID: a.BootID, FromVersion: a.CurrentVersion, ToVersion: brn.Spec.TargetVersion, Time: metav1.NewTime(s.in.Now)}
		a.ObservedGeneration = brn.Generation
		setReady(n.Node, false)
		w.bootDone = s.later()
		s.logf("%-8s agent: reboot into %s", n.Node.Name, brn.Spec.TargetVersion)
		return true
	}
	if s.in.Now.Before(w.bootDone) {
		return false
	}
	w.boots++
	a.BootID = fmt.Sprintf("boot-%d", w.boots)
	if s.rng.IntN(100) < s.failPct {
		a.LastAction = &v1alpha1.AgentAction{Action: v1alpha1.ActionReboot, TargetVersion: brn.Spec.TargetVersion, Result: v1alpha1.ActionFailed,
			Reason: v1alpha1.ReasonFallback, Message: "simulated boot failure: the host fell back to " + a.CurrentVersion, Time: metav1.NewTime(s.in.Now)}
	} else {
		a.CurrentVersion = brn.Spec.TargetVersion
	}
	setReady(n.Node, true)
	w.podsReadyAt = s.in.Now.Add(time.Duration(s.rng.IntN(3)) * time.Minute)
	s.logf("%-8s host: booted %s", n.Node.Name, a.CurrentVersion)
	return true
}

// pending reports whether a host or its pods will change by time alone.
func (s *simulation) pending() bool {
	for _, w := range s.world {
		for _, t := range []time.Time{w.stageDone, w.drained, w.bootDone, w.podsReadyAt} {
			if t.After(s.in.Now) {
				return true
			}
		}
	}
	return false
}

// settled reports whether every governed node is Updated on its policy's target or Failed.
func settled(plan Plan) bool {
	for _, d := range plan.Nodes {
		if d.Policy != "" && d.Phase != v1alpha1.PhaseUpdated && d.Phase != v1alpha1.PhaseFailed {
			return false
		}
	}
	return true
}

// resumeHalted plays a person: a halted rollout is resumed, and its failed nodes are retried
// once.
func (s *simulation) resumeHalted(plan Plan) bool {
	resumed := false
	for p := range s.in.Policies {
		pol := &s.in.Policies[p]
		if !plan.Policies[pol.Name].Halted {
			continue
		}
		s.logf("resume policy %s and retry its failed nodes", pol.Name)
		resumed = true
		pol.Status.ResumeTime = mtime(s.in.Now)
		for _, n := range s.in.Nodes {
			if n.BRN.Spec.Policy == pol.Name && n.BRN.Status.Phase == v1alpha1.PhaseFailed && n.BRN.Status.FailureCount == 1 {
				n.BRN.Annotations = map[string]string{v1alpha1.AnnotationRetry: ""}
			}
		}
	}
	return resumed
}

// run steps until the fleet settles. After a host or agent changed, it plans again at once
// (a reconcile on the watch event); otherwise time moves a minute while a host is busy or the
// plan polls, else to the plan's NextWake. A rollout halted by its failure budget is resumed by a "person" an hour
// later. With nothing in flight and no NextWake, the fleet must have settled.
func (s *simulation) run(maxSteps int) Plan {
	s.t.Helper()
	for {
		plan, moved := s.step()
		switch {
		case settled(plan) && !s.pending() && !moved:
			return plan
		case s.steps >= maxSteps:
			s.t.Fatalf("not settled after %d steps at %s: %s", s.steps, s.in.Now, stuckReasons(plan))
		case moved:
		case s.pending() || plan.Poll:
			s.in.Now = s.in.Now.Add(time.Minute)
		case s.resumeHalted(plan):
			s.in.Now = s.in.Now.Add(time.Hour)
		case !plan.NextWake.IsZero():
			if !plan.NextWake.After(s.in.Now) {
				s.t.Fatalf("NextWake %s is not after now %s", plan.NextWake, s.in.Now)
			}
			s.in.Now = plan.NextWake
		default:
			s.t.Fatalf("stuck at %s: %s", s.in.Now, stuckReasons(plan))
		}
	}
}

func stuckReasons(plan Plan) string {
	var b strings.Builder
	for _, d := range plan.Nodes {
		if d.Policy != "" && d.Phase != v1alpha1.PhaseUpdated && d.Phase != v1alpha1.PhaseFailed {
			fmt.Fprintf(&b, "%s %s %s %s; ", d.Name, d.Phase, d.Reason, d.Message)
			if b.Len() > 600 {
				break
			}
		}
	}
	return b.String()
}

// wavesFleet is a large policy exercising every rule at once.
func wavesFleet(n int) Input {
	nodes := fleetOf("n", n, []string{"a", "b", "c"}, "1.20.0", "1.21.0")
	for i := range nodes {
		if i%10 == 0 {
			nodes[i].Node.Labels["pool"] = "gpu"
		}
	}
	pol := policy("fleet", func(s *v1alpha1.UpdatePolicySpec) {
		s.MaxUnavailable = intOrStr("10%")
		s.MaxUnavailablePerZone = intOrStr("4")
		s.PauseBetweenNodes = dur(2 * time.Minute)
		s.Staging = &v1alpha1.StagingSpec{MaxConcurrent: intOrStr("8")}
		s.FailurePolicy.MaxFailedNodes = 4
		s.MaintenanceWindows = []v1alpha1.MaintenanceWindow{
			{Schedule: "0 22 * * *", Duration: metav1Duration(6 * time.Hour), TimeZone: "Europe/Berlin"},
		}
		s.Waves = []v1alpha1.Wave{
			{Name: "canary", Nodes: intOrStr("2"), SoakTime: dur(30 * time.Minute)},
			{Name: "gpu", NodeSelector: selector("pool", "gpu"), MaxUnavailable: intOrStr("2"), SoakTime: dur(10 * time.Minute)},
			{Name: "half", Nodes: intOrStr("50%"), MaxUnavailable: intOrStr("25%")},
		}
	})
	return Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{pol}, Nodes: nodes, ControllerNode: "n-005"}
}

// splitFleet is two policies by label with conflicts, exclusions and no windows.
func splitFleet(n int) Input {
	nodes := fleetOf("m", n, []string{"a", "b"}, "1.20.0", "1.21.0")
	for i := range nodes {
		lbl := nodes[i].Node.Labels
		lbl["pool"] = []string{"blue", "green"}[i%2]
		switch {
		case i%37 == 0:
			lbl["legacy"] = "true" // selected by both policies: governed by neither
		case i%41 == 0:
			nodes[i].Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
		}
	}
	blue := policy("blue", selecting("pool", "blue"), func(s *v1alpha1.UpdatePolicySpec) {
		s.MaxUnavailable = intOrStr("5")
		s.FailurePolicy.MaxFailedNodes = 2
	})
	green := policy("green", func(s *v1alpha1.UpdatePolicySpec) {
		s.NodeSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "pool", Operator: "In", Values: []string{"green"}},
		}}
		s.MaxUnavailable = intOrStr("20%")
		s.MaxUnavailablePerZone = intOrStr("50%")
		s.Version = "1.21.0"
	})
	legacy := policy("legacy", selecting("legacy", "true"))
	return Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{blue, green, legacy}, Nodes: nodes}
}

func TestSequences(t *testing.T) {
	scenarios := []struct {
		name    string
		fleet   func(int) Input
		nodes   int
		failPct int
	}{
		{"waves", wavesFleet, 300, 2},
		{"split", splitFleet, 200, 3},
	}
	for _, sc := range scenarios {
		for seed := uint64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprintf("%s/seed=%d", sc.name, seed), func(t *testing.T) {
				t.Parallel()
				s := newSimulation(t, seed, sc.fleet(sc.nodes), sc.failPct)
				plan := s.run(20000)
				for i, d := range plan.Nodes {
					if d.Policy != "" && d.Phase == v1alpha1.PhaseUpdated && d.RolloutTarget != "1.21.0" {
						t.Errorf("%s updated to %q", d.Name, d.RolloutTarget)
					}
					if s.in.Nodes[i].Node.Spec.Unschedulable {
						t.Errorf("%s left cordoned", d.Name)
					}
				}
				t.Logf("settled after %d steps at %s", s.steps, s.in.Now)
			})
		}
	}
}

// TestGoldenSequence keeps a readable log of one small rollout in testdata.
func TestGoldenSequence(t *testing.T) {
	nodes := fleetOf("node", 6, []string{"a", "b"}, "1.20.0", "1.21.0")
	pol := policy("small", func(s *v1alpha1.UpdatePolicySpec) {
		s.MaxUnavailable = intOrStr("2")
		s.MaxUnavailablePerZone = intOrStr("1")
		s.PauseBetweenNodes = dur(5 * time.Minute)
		s.FailurePolicy.MaxFailedNodes = 1
		s.Waves = []v1alpha1.Wave{{Name: "canary", Nodes: intOrStr("1"), SoakTime: dur(20 * time.Minute)}}
		s.MaintenanceWindows = []v1alpha1.MaintenanceWindow{
			{Schedule: "0 13 * * *", Duration: metav1Duration(3 * time.Hour), TimeZone: "UTC"},
		}
	})
	s := newSimulation(t, 7, Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{pol}, Nodes: nodes, ControllerNode: "node-002"}, 10)
	s.log = &strings.Builder{}
	plan := s.run(2000)
	fmt.Fprintf(s.log, "settled: progress %s, phase %s\n", plan.Policies["small"].Progress, plan.Policies["small"].Phase)
	path := filepath.Join("testdata", "sequence.golden")
	if *update {
		if err := os.WriteFile(path, []byte(s.log.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := s.log.String(); got != string(want) {
		t.Errorf("sequence differs from %s (run with -update to accept):\n%s", path, got)
	}
}
