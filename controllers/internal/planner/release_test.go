package planner

import (
	"testing"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// A node the operator disrupted stays charged to its policy's budget until it is back, however
// it stops being governed mid-update: its reboot is carried on, and it is released (Idle,
// nothing of ours held on its Node) only once it is Ready again; only then is the next node
// admitted.
func TestDisruptedNodeStaysChargedUntilBack(t *testing.T) {
	ungoverned := map[string]struct {
		edit   func(in *Input, a *NodeState)
		reason v1alpha1.Reason
	}{
		"excluded": {func(_ *Input, a *NodeState) {
			a.Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
		}, v1alpha1.ReasonExcluded},
		"selector edited": {func(in *Input, _ *NodeState) {
			in.Nodes[1].Node.Labels["pool"] = "main"
			in.Policies[0].Spec.NodeSelector = selector("pool", "main")
		}, v1alpha1.ReasonNotGoverned},
		"second policy overlaps": {func(in *Input, a *NodeState) {
			a.Node.Labels["pool"] = "special"
			in.Policies = append(in.Policies, policy("q", selecting("pool", "special")))
		}, v1alpha1.ReasonPolicyConflict},
	}
	for name, tc := range ungoverned {
		t.Run(name, func(t *testing.T) {
			a := at(h("a"), v1alpha1.PhaseRebooting, target)
			a.BRN.Spec.Action, a.BRN.Spec.Policy = v1alpha1.ActionReboot, "p"
			a.BRN.Status.PhaseStartTime = mtime(t0.Add(-time.Minute))
			a.BRN.Status.Agent.RebootRecord = &v1alpha1.RebootRecord{BootID: "boot-1", FromVersion: "1.20.0", ToVersion: target}
			a.BRN.Status.Agent.BootID = "boot-1"
			a.Node.Spec.Unschedulable = true
			notReady(&a)
			b := at(h("b"), v1alpha1.PhaseStaged, target)
			b.BRN.Spec.Policy = "p"
			in := in(one(withSpec(maxUnavailable("1"))), a, b)
			in.SchedulableNodes = 1
			tc.edit(&in, &a)

			pass := func(what string) map[string]NodeDecision {
				t.Helper()
				plan := Compute(in)
				ds := decisionsByName(plan)
				down := 0
				for i, d := range plan.Nodes {
					if d.Phase.Unavailable() || kubeutil.NodeUnavailable(in.Nodes[i].Node) {
						down++
					}
				}
				if down > 1 {
					t.Fatalf("%s: %d nodes unavailable under maxUnavailable 1: a %s (%s), b %s (%s)", what, down,
						ds["a"].Phase, ds["a"].Reason, ds["b"].Phase, ds["b"].Reason)
				}
				apply(&in, plan)
				in.Now = in.Now.Add(time.Second)
				return ds
			}

			ds := pass("while a reboots")
			if d := ds["a"]; d.Phase != v1alpha1.PhaseRebooting || d.Action != v1alpha1.ActionReboot || HoldFor(d.Phase) != HoldCordon {
				t.Fatalf("a, rebooting when it stopped being governed: %s %s (%s: %s); want its reboot carried on, cordoned", d.Phase, d.Action, d.Reason, d.Message)
			}
			if d := ds["b"]; d.Phase != v1alpha1.PhaseStaged || d.Reason != v1alpha1.ReasonBudgetExhausted {
				t.Fatalf("b admitted while a is down: %s (%s: %s)", d.Phase, d.Reason, d.Message)
			}

			a.BRN.Status.Agent.BootID, a.BRN.Status.Agent.CurrentVersion = "boot-2", target // the host came back
			ds = pass("the host came back, the Node not Ready yet")
			if d := ds["a"]; d.Phase != v1alpha1.PhaseVerifying || HoldFor(d.Phase) != HoldCordon {
				t.Fatalf("a back but not Ready: %s (%s: %s); want Verifying, cordoned", d.Phase, d.Reason, d.Message)
			}
			if d := ds["b"]; d.Phase != v1alpha1.PhaseStaged {
				t.Fatalf("b admitted while a is not Ready: %s", d.Phase)
			}

			setReady(a.Node, true)
			ds = pass("a Ready")
			if d := ds["a"]; d.Phase != v1alpha1.PhaseIdle || d.Action != v1alpha1.ActionNone || d.Reason != tc.reason || HoldFor(d.Phase) != HoldNothing {
				t.Fatalf("a back and Ready: %s %s (%s: %s); want released: Idle, None, %s", d.Phase, d.Action, d.Reason, d.Message, tc.reason)
			}

			a.Node.Spec.Unschedulable = false // the controller uncordoned it
			if d := pass("a released")["b"]; d.Phase != v1alpha1.PhaseDraining {
				t.Fatalf("b once a is back: %s (%s: %s); want Draining", d.Phase, d.Reason, d.Message)
			}
		})
	}
}

// A node draining when it stops being governed never went down: it is released at once
// (uncordoned), and its slot counts for the pass that saw it Draining.
func TestDrainingNodeReleasedAtOnce(t *testing.T) {
	a := at(h("a"), v1alpha1.PhaseDraining, target)
	a.BRN.Spec.Policy = "p"
	a.Node.Spec.Unschedulable = true
	a.Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
	b := at(h("b"), v1alpha1.PhaseStaged, target)
	in := in(one(withSpec(maxUnavailable("1"))), a, b)
	plan := Compute(in)
	ds := decisionsByName(plan)
	if d := ds["a"]; d.Phase != v1alpha1.PhaseIdle || d.Reason != v1alpha1.ReasonExcluded || HoldFor(d.Phase) != HoldNothing {
		t.Errorf("a: %s (%s: %s); want released at once", d.Phase, d.Reason, d.Message)
	}
	if d := ds["b"]; d.Phase != v1alpha1.PhaseStaged || d.Reason != v1alpha1.ReasonBudgetExhausted {
		t.Errorf("b admitted in the pass that saw a Draining: %s (%s)", d.Phase, d.Reason)
	}
	if got := plan.Policies["p"].Unavailable; got != 1 {
		t.Errorf("policy p reports %d unavailable, want 1 (a, until its Node is seen uncordoned)", got)
	}
}

// A node whose Node was deleted mid-update (status.deletedNodes) counts toward the failure
// budget of the rollout to its target, unless a person resumed the rollout since.
func TestDeletedNodesCountAsFailures(t *testing.T) {
	deleted := v1alpha1.DeletedNode{Name: "gone", TargetVersion: target, Phase: v1alpha1.PhaseRebooting,
		Reason: v1alpha1.ReasonNodeDeleted, Time: *mtime(t0.Add(-time.Minute))}
	for name, tc := range map[string]struct {
		mod    func(*v1alpha1.UpdatePolicyStatus)
		halted bool
	}{
		"deleted for the target":     {func(*v1alpha1.UpdatePolicyStatus) {}, true},
		"deleted for another target": {func(st *v1alpha1.UpdatePolicyStatus) { st.DeletedNodes[0].TargetVersion = "1.19.0" }, false},
		"deleted before a resume":    {func(st *v1alpha1.UpdatePolicyStatus) { st.ResumeTime = mtime(t0.Add(-time.Second)) }, false},
	} {
		t.Run(name, func(t *testing.T) {
			p := withSpec(maxUnavailable("1"))
			p.Spec.Version = target
			p.Status.DeletedNodes = []v1alpha1.DeletedNode{deleted}
			tc.mod(&p.Status)
			plan := Compute(in(one(p), at(h("b"), v1alpha1.PhaseStaged, target)))
			d := decisionsByName(plan)["b"]
			if got := plan.Policies["p"].Halted; got != tc.halted {
				t.Errorf("halted %v, want %v (b: %s %s)", got, tc.halted, d.Phase, d.Reason)
			}
			if tc.halted && d.Reason != v1alpha1.ReasonRolloutHalted {
				t.Errorf("b: %s (%s); want RolloutHalted", d.Phase, d.Reason)
			}
		})
	}
}

// A BottlerocketNode whose Node went while we held it cordoned is recorded, once, in its
// policy's deletedNodes, and halts the rollout in the same pass.
func TestNodeDeletedMidUpdateIsRecorded(t *testing.T) {
	gone := at(h("gone"), v1alpha1.PhaseRebooting, target).BRN
	gone.Spec.Policy = "p"
	staging := at(h("was-staging"), v1alpha1.PhaseStaging, target).BRN
	staging.Spec.Policy = "p"
	p := withSpec(maxUnavailable("1"))
	p.Spec.Version = target
	input := in(one(p), at(h("b"), v1alpha1.PhaseStaged, target))
	input.Deleted = []*v1alpha1.BottlerocketNode{gone, staging}
	plan := Compute(input)
	rep := plan.Policies["p"]
	if len(rep.DeletedNodes) != 1 || rep.DeletedNodes[0].Name != "gone" || rep.DeletedNodes[0].Reason != v1alpha1.ReasonNodeDeleted {
		t.Fatalf("deletedNodes %+v; want the rebooting node only, NodeDeleted", rep.DeletedNodes)
	}
	if d := decisionsByName(plan)["b"]; !rep.Halted || d.Reason != v1alpha1.ReasonRolloutHalted {
		t.Errorf("halted %v, b %s (%s); want halted at maxFailedNodes 1", rep.Halted, d.Phase, d.Reason)
	}
	input.Policies[0].Status.DeletedNodes = rep.DeletedNodes
	input.Now = input.Now.Add(time.Minute)
	if again := Compute(input).Policies["p"].DeletedNodes; len(again) != 1 || !again[0].Time.Equal(&rep.DeletedNodes[0].Time) {
		t.Errorf("recorded again: %+v", again)
	}
}
