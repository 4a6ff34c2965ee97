package invariants

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// stagedFleet returns a policy with maxUnavailable 1 over n Ready nodes, all Staged for 1.21.0 in
// wave "rest", in zones a and b.
func stagedFleet(n int) Snapshot {
	one := intstr.FromInt32(1)
	s := Snapshot{Now: now, Policies: []v1alpha1.UpdatePolicy{{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       v1alpha1.UpdatePolicySpec{MaxUnavailable: &one},
	}}}
	for i := range n {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i), Labels: map[string]string{v1alpha1.LabelZone: []string{"a", "b"}[i%2]}},
			Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		}
		brn := &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: node.Name}}
		brn.Spec = v1alpha1.BottlerocketNodeSpec{Action: v1alpha1.ActionStage, TargetVersion: "1.21.0", Policy: "p"}
		brn.Status = v1alpha1.BottlerocketNodeStatus{
			Phase: v1alpha1.PhaseStaged, Wave: implicitWave, RolloutTarget: "1.21.0",
			Agent: &v1alpha1.AgentStatus{CurrentVersion: "1.20.0"},
		}
		s.Nodes = append(s.Nodes, Node{Node: node, BRN: brn})
	}
	return s
}

// next copies s so that a test can plant changes in the copy.
func next(s Snapshot) Snapshot {
	out := Snapshot{Now: s.Now, Policies: make([]v1alpha1.UpdatePolicy, len(s.Policies))}
	for i := range s.Policies {
		s.Policies[i].DeepCopyInto(&out.Policies[i])
	}
	for _, n := range s.Nodes {
		out.Nodes = append(out.Nodes, Node{Node: n.Node.DeepCopy(), BRN: n.BRN.DeepCopy()})
	}
	return out
}

func drain(s Snapshot, i int) { s.Nodes[i].BRN.Status.Phase = v1alpha1.PhaseDraining }

func TestCheckerCatchesPlantedViolations(t *testing.T) {
	tests := []struct {
		name  string
		plant func(before, after *Snapshot)
		want  string // rule; "" = no violation
	}{
		{"one drain within budget", func(_, a *Snapshot) { drain(*a, 0) }, ""},
		{"two drains over maxUnavailable 1", func(_, a *Snapshot) { drain(*a, 0); drain(*a, 1) }, RuleBudget},
		{"a cordoned node already uses the slot", func(b, a *Snapshot) {
			b.Nodes[1].Node.Spec.Unschedulable = true
			a.Nodes[1].Node.Spec.Unschedulable = true
			drain(*a, 0)
		}, RuleBudget},
		{"slot still pausing after an update", func(b, a *Snapshot) {
			a.Policies[0].Spec.PauseBetweenNodes = &metav1.Duration{Duration: 5 * time.Minute}
			st := &a.Nodes[1].BRN.Status
			st.Phase, st.Agent.CurrentVersion, st.UpdatedTime = v1alpha1.PhaseUpdated, "1.21.0", &metav1.Time{Time: now.Add(-time.Minute)}
			drain(*a, 0)
		}, RuleBudget},
		{"a node updated after the drain started held no pausing slot then (no pause)", func(b, a *Snapshot) {
			// The watcher judges a drain at its phaseStartTime from a later observation, in which
			// a node that was still holding its slot then has become Updated since.
			st := &a.Nodes[1].BRN.Status
			st.Phase, st.Agent.CurrentVersion, st.UpdatedTime = v1alpha1.PhaseUpdated, "1.21.0", &metav1.Time{Time: now.Add(time.Second)}
			drain(*a, 0)
		}, ""},
		{"zone limit", func(_, a *Snapshot) {
			two, one := intstr.FromInt32(2), intstr.FromInt32(1)
			a.Policies[0].Spec.MaxUnavailable, a.Policies[0].Spec.MaxUnavailablePerZone = &two, &one
			drain(*a, 0)
			drain(*a, 2)
		}, RuleZoneBudget},
		{"drain outside the window", func(_, a *Snapshot) {
			a.Policies[0].Spec.MaintenanceWindows = []v1alpha1.MaintenanceWindow{{Schedule: "0 22 * * *", Duration: metav1.Duration{Duration: time.Hour}}}
			drain(*a, 0)
		}, RuleWindow},
		{"drain under an invalid time zone", func(_, a *Snapshot) {
			a.Policies[0].Spec.MaintenanceWindows = []v1alpha1.MaintenanceWindow{{Schedule: "@daily", Duration: metav1.Duration{Duration: 24 * time.Hour}, TimeZone: "No/Where"}}
			drain(*a, 0)
		}, RuleWindow},
		{"drain while paused", func(_, a *Snapshot) { a.Policies[0].Spec.Paused = true; drain(*a, 0) }, RulePaused},
		{"drain without staging", func(b, a *Snapshot) { b.Nodes[0].BRN.Status.Phase = v1alpha1.PhasePending; drain(*a, 0) }, RuleSkippedStep},
		{"action changed in dry-run", func(_, a *Snapshot) {
			a.Policies[0].Spec.DryRun = true
			a.Nodes[0].BRN.Spec.Action = v1alpha1.ActionNone
		}, RuleDryRun},
		{"a node in flight finishes in dry-run", func(b, a *Snapshot) {
			a.Policies[0].Spec.DryRun = true
			b.Nodes[0].BRN.Status.Phase, b.Nodes[0].BRN.Spec.Action = v1alpha1.PhaseDraining, v1alpha1.ActionStage
			a.Nodes[0].BRN.Status.Phase, a.Nodes[0].BRN.Spec.Action = v1alpha1.PhaseRebooting, v1alpha1.ActionReboot
		}, ""},
		{"start after the failure budget is spent", func(b, a *Snapshot) {
			for _, s := range []*Snapshot{b, a} {
				st := &s.Nodes[1].BRN.Status
				st.Phase, st.FailedTarget, st.FailedTime = v1alpha1.PhaseFailed, "1.21.0", &metav1.Time{Time: now.Add(-time.Hour)}
			}
			drain(*a, 0)
		}, RuleHalted},
		{"wave started before the previous one completed", func(_, a *Snapshot) {
			a.Policies[0].Spec.Waves = []v1alpha1.Wave{{Name: "canary"}}
			a.Nodes[1].BRN.Status.Wave = "canary"
			drain(*a, 0)
		}, RuleWaveOrder},
		{"wave started during the soak", func(_, a *Snapshot) {
			a.Policies[0].Spec.Waves = []v1alpha1.Wave{{Name: "canary", SoakTime: &metav1.Duration{Duration: time.Hour}}}
			st := &a.Nodes[1].BRN.Status
			st.Wave, st.Phase, st.Agent.CurrentVersion = "canary", v1alpha1.PhaseUpdated, "1.21.0"
			st.UpdatedTime = &metav1.Time{Time: now.Add(-10 * time.Minute)}
			drain(*a, 0)
		}, RuleSoak},
		{"excluded node started", func(_, a *Snapshot) {
			a.Nodes[0].Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
			drain(*a, 0)
		}, RuleUngoverned},
		{"staging over maxConcurrent", func(b, a *Snapshot) {
			for i := range 2 {
				b.Nodes[i].BRN.Status.Phase = v1alpha1.PhasePending
				a.Nodes[i].BRN.Status.Phase = v1alpha1.PhaseStaging
			}
		}, RuleStaging},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := stagedFleet(4)
			after := next(before)
			tt.plant(&before, &after)
			var rules []string
			for _, v := range NewChecker().Step(before, after) {
				rules = append(rules, v.Rule)
				if v.String() == "" || !strings.Contains(v.String(), v.Node) {
					t.Errorf("violation %#v renders badly", v)
				}
			}
			switch {
			case tt.want == "" && len(rules) > 0:
				t.Errorf("unexpected violations %v", rules)
			case tt.want != "" && !slices.Contains(rules, tt.want):
				t.Errorf("got %v, want %s", rules, tt.want)
			}
		})
	}
}

// TestCheckerRemembersWaveCompletion: a wave once complete stays complete for its rollout, as
// the planner persists it, so a late node in it does not block the next wave.
func TestCheckerRemembersWaveCompletion(t *testing.T) {
	c := NewChecker()
	s := stagedFleet(3)
	s.Policies[0].Spec.Waves = []v1alpha1.Wave{{Name: "canary"}}
	st := &s.Nodes[2].BRN.Status
	st.Wave, st.Phase, st.Agent.CurrentVersion = "canary", v1alpha1.PhaseUpdated, "1.21.0"
	if v := c.Step(s, next(s)); len(v) > 0 {
		t.Fatal(v)
	}
	late := next(s)
	late.Nodes[1].BRN.Status.Wave = "canary"
	late.Nodes[1].BRN.Status.Phase = v1alpha1.PhasePending
	after := next(late)
	drain(after, 0)
	if v := c.Step(late, after); len(v) > 0 {
		t.Errorf("late node reopened a completed wave: %v", v)
	}
}

// A node disrupted under a policy stays charged to it until it is back, whatever the policies
// say meanwhile: excluding it, or editing the selector so it is no longer selected, frees no
// slot while it is still down.
func TestInstantCountsFromTheWorld(t *testing.T) {
	for name, ungovern := range map[string]func(s *Snapshot){
		"excluded": func(s *Snapshot) {
			s.Nodes[0].Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
		},
		"selector edited": func(s *Snapshot) {
			s.Policies[0].Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "main"}}
			for _, n := range s.Nodes[1:] {
				n.Node.Labels["pool"] = "main"
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := NewChecker()
			s := stagedFleet(3)
			s.Nodes[0].BRN.Status.Phase = v1alpha1.PhaseRebooting
			s.Nodes[0].Node.Spec.Unschedulable = true
			if _, v := c.Instant(s); len(v) != 0 {
				t.Fatalf("one node rebooting under maxUnavailable 1: %v", v)
			}
			s = next(s)
			ungovern(&s)
			s.Nodes[0].BRN.Status.Phase, s.Nodes[0].BRN.Spec.Policy = v1alpha1.PhaseIdle, "" // the operator let go of it
			drain(s, 1)
			peak, v := c.Instant(s)
			if peak != 2 || len(v) != 1 || v[0].Rule != RuleBudget {
				t.Fatalf("the rebooting node stopped counting once no longer governed: peak %d, violations %v", peak, v)
			}
			s = next(s)
			s.Nodes[0].Node.Spec.Unschedulable = false // back
			if _, v := c.Instant(s); len(v) != 0 {
				t.Fatalf("the node is back: %v", v)
			}
		})
	}
}

func TestLeftCordoned(t *testing.T) {
	s := stagedFleet(2)
	for i := range s.Nodes {
		s.Nodes[i].Node.Annotations = map[string]string{v1alpha1.AnnotationCordonedBy: "bottlerocket-update-controller"}
		s.Nodes[i].Node.Spec.Unschedulable = true
	}
	s.Nodes[0].BRN.Status.Phase = v1alpha1.PhaseRebooting
	s.Nodes[1].BRN.Status.Phase = v1alpha1.PhaseIdle
	if v := LeftCordoned(s); len(v) != 1 || v[0].Node != "n1" || v[0].Rule != RuleCordoned {
		t.Errorf("violations %v; want n1 left cordoned (n0 holds its cordon rebooting)", v)
	}
}
