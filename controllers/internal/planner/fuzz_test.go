package planner

import (
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/invariants"
)

// fuzzBytes hands out fuzz input one choice at a time; past its end every choice is 0.
type fuzzBytes []byte

func (b *fuzzBytes) next() int {
	if len(*b) == 0 {
		return 0
	}
	v := int((*b)[0])
	*b = (*b)[1:]
	return v
}

func (b *fuzzBytes) pick(n int) int { return b.next() % n }
func (b *fuzzBytes) flag() bool     { return b.next()%2 == 1 }

func pickOf[T any](b *fuzzBytes, options ...T) T { return options[b.pick(len(options))] }

var (
	fuzzVersions = []string{"1.19.0", "1.20.0", "1.20.10", "1.21.0", "1.3.0"}
	fuzzPhases   = []v1alpha1.NodePhase{
		"", v1alpha1.PhaseIdle, v1alpha1.PhasePending, v1alpha1.PhaseStaging, v1alpha1.PhaseStaged,
		v1alpha1.PhaseDraining, v1alpha1.PhaseRebooting, v1alpha1.PhaseVerifying,
		v1alpha1.PhaseStabilizing, v1alpha1.PhaseUpdated, v1alpha1.PhaseFailed,
	}
	fuzzBudgets = []string{"0", "1", "2", "3", "10%", "50%", "100%", "-1", "x%"}
	fuzzWindows = []v1alpha1.MaintenanceWindow{
		{Schedule: "0 22 * * *", Duration: metav1.Duration{Duration: 4 * time.Hour}, TimeZone: "Europe/Berlin"},
		{Schedule: "@hourly", Duration: metav1.Duration{Duration: 10 * time.Minute}},
		{Schedule: "30 2 * * 0", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "America/New_York"},
		{Schedule: "not cron", Duration: metav1.Duration{Duration: time.Hour}},
		{Schedule: "0 1 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Mars/Olympus"},
	}
)

// fuzzPolicy builds one policy from the fuzz input.
func fuzzPolicy(b *fuzzBytes, i int) v1alpha1.UpdatePolicy {
	p := policy(fmt.Sprintf("p%d", i))
	s := &p.Spec
	if b.flag() {
		s.NodeSelector = selector("pool", pickOf(b, "a", "b"))
	}
	s.Version = pickOf(b, v1alpha1.VersionLatest, "1.21.0", "1.19.0")
	s.MaxUnavailable = intOrStr(pickOf(b, fuzzBudgets...))
	if b.flag() {
		s.MaxUnavailablePerZone = intOrStr(pickOf(b, fuzzBudgets...))
	}
	if b.flag() {
		s.Staging = &v1alpha1.StagingSpec{MaxConcurrent: intOrStr(pickOf(b, "1", "3", "50%"))}
	}
	s.PauseBetweenNodes = dur(time.Duration(b.pick(4)) * 5 * time.Minute)
	s.FailurePolicy.MaxFailedNodes = int32(b.pick(3) + 1)
	s.Paused, s.DryRun = b.pick(5) == 0, b.pick(5) == 0
	for range b.pick(3) {
		s.MaintenanceWindows = append(s.MaintenanceWindows, pickOf(b, fuzzWindows...))
	}
	for w := range b.pick(4) {
		wave := v1alpha1.Wave{Name: fmt.Sprintf("w%d", w), SoakTime: dur(time.Duration(b.pick(3)) * 15 * time.Minute)}
		if b.flag() {
			wave.NodeSelector = selector("tier", pickOf(b, "x", "y"))
		} else {
			wave.Nodes = intOrStr(pickOf(b, "1", "2", "30%"))
		}
		if b.flag() {
			wave.MaxUnavailable = intOrStr(pickOf(b, fuzzBudgets...))
		}
		if b.pick(4) == 0 {
			wave.MaintenanceWindows = []v1alpha1.MaintenanceWindow{pickOf(b, fuzzWindows...)}
		}
		s.Waves = append(s.Waves, wave)
	}
	if b.flag() {
		p.Status.TargetVersion = pickOf(b, fuzzVersions...)
	}
	if b.flag() {
		p.Status.ResumeTime = mtime(t0.Add(-time.Duration(b.pick(48)) * time.Hour))
	}
	return p
}

// fuzzNode builds one node in an arbitrary observed state.
func fuzzNode(b *fuzzBytes, i int, now time.Time) NodeState {
	n := host(fmt.Sprintf("n%02d", i), pickOf(b, "a", "b", ""), pickOf(b, fuzzVersions...), fuzzVersions[:b.pick(len(fuzzVersions)+1)]...)
	n.Node.Labels["pool"] = pickOf(b, "a", "b", "c")
	n.Node.Labels["tier"] = pickOf(b, "x", "y", "z")
	n.Node.Spec.Unschedulable = b.pick(6) == 0
	setReady(n.Node, b.pick(6) != 0)
	if b.pick(10) == 0 {
		n.Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
	}
	switch b.pick(8) {
	case 0:
		n.BRN = nil
		return n
	case 1:
		n.BRN.Status.Agent = nil
	}
	st := &n.BRN.Status
	st.Phase = pickOf(b, fuzzPhases...)
	st.RolloutTarget = pickOf(b, fuzzVersions...)
	st.Wave = pickOf(b, "w0", "w1", "w2", ImplicitWave, "gone")
	n.BRN.Spec.TargetVersion = st.RolloutTarget
	if st.Phase.InFlight() {
		n.BRN.Spec.Action = v1alpha1.ActionStage
	}
	ago := func() *metav1.Time { return mtime(now.Add(-time.Duration(b.pick(180)) * time.Minute)) }
	if b.flag() {
		st.UpdatedTime = ago()
	}
	if b.flag() {
		st.FailedTarget, st.FailedTime, st.FailureCount = pickOf(b, fuzzVersions...), ago(), int32(b.pick(40))
	}
	if b.pick(4) == 0 {
		n.BRN.Annotations = map[string]string{v1alpha1.AnnotationRetry: ""}
	}
	return n
}

// FuzzPlanner plans arbitrary fleets: nothing panics, every node gets one decision, no
// admission breaks an invariant, and the same input gives the same plan, whatever the order
// of its nodes.
func FuzzPlanner(f *testing.F) {
	f.Add([]byte{3, 1, 0, 1, 2, 0, 3, 1, 2, 1, 0, 1, 1, 9, 9, 9})
	f.Add([]byte("a longer seed that makes several policies, waves and windows appear"))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		b := fuzzBytes(data)
		in := Input{Now: t0.Add(time.Duration(b.next()*b.next()) * time.Minute), ControllerNode: "n03"}
		for i := range b.pick(3) + 1 {
			in.Policies = append(in.Policies, fuzzPolicy(&b, i))
		}
		for i := range b.pick(40) + 1 {
			in.Nodes = append(in.Nodes, fuzzNode(&b, i, in.Now))
		}
		before := snapshot(in)
		plan := Compute(in)
		if again := Compute(in); fmt.Sprint(again) != fmt.Sprint(plan) {
			t.Fatalf("not deterministic")
		}
		if reversed := Compute(reversedNodes(in)); fmt.Sprint(reversed.Policies) != fmt.Sprint(plan.Policies) ||
			fmt.Sprint(reversedDecisions(reversed.Nodes)) != fmt.Sprint(plan.Nodes) {
			t.Fatalf("the plan depends on the order the nodes are given in")
		}
		if len(plan.Nodes) != len(in.Nodes) {
			t.Fatalf("%d decisions for %d nodes", len(plan.Nodes), len(in.Nodes))
		}
		if !plan.NextWake.IsZero() && !plan.NextWake.After(in.Now) {
			t.Fatalf("NextWake %s not after now %s", plan.NextWake, in.Now)
		}
		checkMemo(t, &b, in, plan)
		apply(&in, plan)
		for _, v := range invariants.NewChecker().Step(before, snapshot(in)) {
			t.Errorf("%s", v)
		}
	})
}

// checkMemo checks that a Memo changes no plan: neither one made with an empty Memo, nor the
// next, made from it, of a fleet where nodes changed (with new resourceVersions, as the API
// server gives them), nodes went, and policies' selectors may have changed.
func checkMemo(t *testing.T, b *fuzzBytes, in Input, plan Plan) {
	t.Helper()
	for _, ns := range in.Nodes { // as the API server gives them
		ns.Node.ResourceVersion = "1"
		if ns.BRN != nil {
			ns.BRN.ResourceVersion = "1"
		}
	}
	memo := &Memo{}
	in.Memo = memo
	if got := Compute(in); fmt.Sprint(got) != fmt.Sprint(plan) {
		t.Fatalf("a plan made with an empty Memo differs")
	}
	next := in
	next.Nodes, next.Policies = nil, slices.Clone(in.Policies)
	if b.pick(3) == 0 {
		k := b.pick(len(next.Policies))
		p := next.Policies[k].DeepCopy()
		p.Spec.NodeSelector = selector("tier", pickOf(b, "x", "y"))
		next.Policies[k] = *p
	}
	for _, ns := range in.Nodes {
		switch b.pick(6) {
		case 0: // gone
			continue
		case 1: // relabelled, excluded or cordoned
			ns.Node = ns.Node.DeepCopy()
			ns.Node.ResourceVersion = "2"
			ns.Node.Labels["pool"] = pickOf(b, "a", "b", "c")
			if b.flag() {
				ns.Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
			}
			ns.Node.Spec.Unschedulable = b.flag()
		case 2: // the agent reported
			if ns.BRN != nil {
				ns.BRN = ns.BRN.DeepCopy()
				ns.BRN.ResourceVersion = "2"
				ns.BRN.Status.Agent = &v1alpha1.AgentStatus{CurrentVersion: pickOf(b, fuzzVersions...)}
			}
		case 3: // a new node, named to come right after it
			added := fuzzNode(b, 0, in.Now)
			added.Node.Name, added.Node.ResourceVersion = ns.Node.Name+"a", "1"
			if added.BRN != nil {
				added.BRN.Name, added.BRN.ResourceVersion = added.Node.Name, "1"
			}
			next.Nodes = append(next.Nodes, added)
		}
		next.Nodes = append(next.Nodes, ns)
	}
	next.Memo = nil
	want := Compute(next)
	next.Memo = memo
	if got := Compute(next); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the Memo of the pass before changed the plan")
	}
}

// reversedNodes returns in with its nodes in reverse order.
func reversedNodes(in Input) Input {
	in.Nodes = slices.Clone(in.Nodes)
	slices.Reverse(in.Nodes)
	return in
}

func reversedDecisions(d []NodeDecision) []NodeDecision {
	d = slices.Clone(d)
	slices.Reverse(d)
	return d
}
