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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/invariants"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// simulation plays the controller and the agents around the planner: it moves nodes in
// flight through their phases at seeded random times, fails some, and steps a fake clock.
type simulation struct {
	t       *testing.T
	rng     *rand.Rand
	in      Input
	due     map[string]time.Time // when a node in flight leaves its phase
	failPct int                  // chance in percent that a staging or a reboot fails
	checker *invariants.Checker
	log     *strings.Builder // nil: no golden log
	steps   int
}

func newSimulation(t *testing.T, seed uint64, in Input, failPct int) *simulation {
	return &simulation{
		t: t, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), in: in,
		due: map[string]time.Time{}, failPct: failPct, checker: invariants.NewChecker(),
	}
}

func (s *simulation) logf(format string, args ...any) {
	if s.log != nil {
		fmt.Fprintf(s.log, "%s  ", s.in.Now.UTC().Format("01-02 15:04"))
		fmt.Fprintf(s.log, format+"\n", args...)
	}
}

// step plans once, applies the plan, checks the invariants, then plays the controller.
// It returns the plan and whether the controller moved a node.
func (s *simulation) step() (Plan, bool) {
	s.t.Helper()
	s.steps++
	before := snapshot(s.in)
	plan := Compute(s.in)
	apply(&s.in, plan)
	for _, v := range s.checker.Step(before, snapshot(s.in)) {
		s.t.Fatalf("step %d at %s: %s", s.steps, s.in.Now, v)
	}
	for i, d := range plan.Nodes {
		if s.log != nil && (d.Phase != before.Nodes[i].BRN.Status.Phase || d.Reason != before.Nodes[i].BRN.Status.Reason) {
			s.logf("%-8s %-11s → %-11s wave=%-6s %s: %s", d.Name, before.Nodes[i].BRN.Status.Phase, d.Phase, d.Wave, d.Reason, d.Message)
		}
		if d.Admitted() {
			s.enter(i, d.Phase)
		}
	}
	s.checkHalt(plan)
	return plan, s.playController()
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

// enter schedules when a node leaves a phase it just entered.
func (s *simulation) enter(i int, phase v1alpha1.NodePhase) {
	s.due[s.in.Nodes[i].Node.Name] = s.in.Now.Add(time.Duration(1+s.rng.IntN(8)) * time.Minute)
	if phase == v1alpha1.PhaseDraining {
		s.in.Nodes[i].Node.Spec.Unschedulable = true
	}
}

// playController moves every node in flight whose time has come to its next phase, and
// reports whether it moved any.
func (s *simulation) playController() bool {
	moved := false
	for i, n := range s.in.Nodes {
		brn := n.BRN
		due, ok := s.due[n.Node.Name]
		if !ok || s.in.Now.Before(due) {
			continue
		}
		moved = true
		st := &brn.Status
		next := v1alpha1.NodePhase("")
		switch st.Phase {
		case v1alpha1.PhaseStaging:
			next = v1alpha1.PhaseStaged
			if s.rng.IntN(100) < s.failPct {
				s.fail(i, v1alpha1.ReasonStageFailed)
				continue
			}
			st.Agent.StagedVersion = brn.Spec.TargetVersion
			delete(s.due, n.Node.Name)
		case v1alpha1.PhaseDraining:
			next = v1alpha1.PhaseRebooting
			brn.Spec.Action = v1alpha1.ActionReboot
			setReady(n.Node, false)
		case v1alpha1.PhaseRebooting:
			next = v1alpha1.PhaseVerifying
			setReady(n.Node, true)
			if s.rng.IntN(100) < s.failPct {
				s.fail(i, v1alpha1.ReasonFallback)
				continue
			}
			st.Agent.CurrentVersion = brn.Spec.TargetVersion
		case v1alpha1.PhaseVerifying:
			next = v1alpha1.PhaseStabilizing
			brn.Spec.Action = v1alpha1.ActionNone
			n.Node.Spec.Unschedulable = false
		case v1alpha1.PhaseStabilizing:
			next = v1alpha1.PhaseUpdated
			st.UpdatedTime = mtime(s.in.Now)
			st.FailureCount = 0
			delete(s.due, n.Node.Name)
		default:
			delete(s.due, n.Node.Name)
			continue
		}
		s.logf("%-8s %-11s → %-11s (controller)", n.Node.Name, st.Phase, next)
		st.Phase, st.Reason, st.Message = next, "", ""
		if next != v1alpha1.PhaseStaged && next != v1alpha1.PhaseUpdated {
			s.enter(i, next)
		}
	}
	return moved
}

// fail marks a node Failed for its target, uncordoned and Ready, as the controller would.
func (s *simulation) fail(i int, reason v1alpha1.Reason) {
	n := s.in.Nodes[i]
	st := &n.BRN.Status
	s.logf("%-8s %-11s → Failed      (controller) %s", n.Node.Name, st.Phase, reason)
	st.Phase, st.Reason, st.Message = v1alpha1.PhaseFailed, reason, "simulated failure"
	st.FailedTarget, st.FailedTime = n.BRN.Spec.TargetVersion, mtime(s.in.Now)
	st.FailureCount++
	n.BRN.Spec.Action = v1alpha1.ActionNone
	n.Node.Spec.Unschedulable = false
	setReady(n.Node, true)
	delete(s.due, n.Node.Name)
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

// run steps until the fleet settles. After the controller moved a node, it plans again at
// once (a reconcile); otherwise time moves a minute while nodes are in flight, else to the
// plan's NextWake. A rollout halted by its failure budget is resumed by a "person" an hour
// later. With nothing in flight and no NextWake, the fleet must have settled.
func (s *simulation) run(maxSteps int) Plan {
	s.t.Helper()
	for {
		plan, moved := s.step()
		switch {
		case settled(plan) && len(s.due) == 0 && !moved:
			return plan
		case s.steps >= maxSteps:
			s.t.Fatalf("not settled after %d steps at %s: %s", s.steps, s.in.Now, stuckReasons(plan))
		case moved:
		case len(s.due) > 0:
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
