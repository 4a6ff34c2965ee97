package planner

import (
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// A node the operator disrupted (Draining, Rebooting, Verifying, Stabilizing) can stop being
// governed mid-update: a person excludes it, its policy's selector no longer selects it, a
// second policy selects it too, or its policy is deleted. Such a node is released, but only
// once it is back: it stays charged to the budget of the policy it was disrupted under
// (spec.policy) until then, so that no other node takes its slot while it is still down.
//
//   - Draining: it never went down; released at once (uncordoned, Idle).
//   - Stabilizing: already Ready and uncordoned; released at once.
//   - Rebooting, Verifying: the reboot under way is carried on (spec.action stays Reboot, the
//     agent reports its outcome) under the deadlines of the policy it was disrupted under;
//     once the Node is Ready on the new boot it is released (uncordoned, Idle), and a host
//     that fell back or did not come back in time is Failed (uncordoned).
//
// The pass that sees it in a disrupted phase counts its slot, released or not.

// carryOn decides every disrupted node that no policy governs any more (their indices in
// Input.Nodes, out holding scope's decision: Idle and why), charges each to the policy it was
// disrupted under, and returns when to look again.
func carryOn(in Input, passes []*policyPass, disrupted []int, out []NodeDecision) (wake time.Time, poll bool) {
	for _, i := range disrupted {
		ns := in.Nodes[i]
		spec := &v1alpha1.UpdatePolicySpec{} // its policy gone: the default deadlines
		for _, p := range passes {
			if p.policy.Name == ns.BRN.Spec.Policy {
				p.held = append(p.held, i)
				spec = p.spec
			}
		}
		switch ns.BRN.Status.Phase {
		case v1alpha1.PhaseRebooting, v1alpha1.PhaseVerifying:
			f := &flight{d: &out[i], node: ns.Node, brn: ns.BRN, ev: &Evidence{}, policy: spec, now: in.Now}
			f.finishReboot()
			wake, poll = earliest(wake, f.wake), poll || f.poll
		}
	}
	return wake, poll
}

// finishReboot carries on the reboot of a node that is no longer governed, until it is back
// (released) or failed. d holds why the node is not governed.
func (f *flight) finishReboot() {
	why, whyMessage := f.d.Reason, f.d.Message
	st := &f.brn.Status
	f.d.Policy, f.d.Action, f.d.TargetVersion = f.brn.Spec.Policy, f.brn.Spec.Action, f.brn.Spec.TargetVersion
	f.d.Phase, f.d.Wave, f.d.RolloutTarget = st.Phase, st.Wave, st.RolloutTarget
	f.d.EvictedPDBs = st.EvictedPDBs
	if st.Phase == v1alpha1.PhaseRebooting {
		f.stepRebooting()
	} else {
		f.stepBack()
	}
	switch f.d.Phase {
	case v1alpha1.PhaseFailed:
	case v1alpha1.PhaseIdle:
		f.d.Policy, f.d.TargetVersion, f.d.Wave, f.d.RolloutTarget, f.d.EvictedPDBs = "", "", "", "", nil
		idle(f.d, why, whyMessage+"; released once back from the reboot under way")
	default:
		f.d.Message = whyMessage + "; the reboot under way is carried on until the node is back: " + f.d.Message
	}
}

// stepBack is the gate out of Verifying for a node that is no longer governed: it is back
// when its Node is Ready (on whatever version the host booted); a fallback the agent reports
// fails it.
func (f *flight) stepBack() {
	switch res := rebootFailure(f.brn); {
	case res != nil:
		f.fail(res.Reason, res.Message)
	case kubeutil.NodeReady(f.node):
		f.d.Phase, f.d.Action = v1alpha1.PhaseIdle, v1alpha1.ActionNone
	case f.sinceReboot(f.readyTimeout()):
		f.fail(v1alpha1.ReasonReadyTimeout, "the host did not come back within health.readyTimeout")
	default:
		f.wait(v1alpha1.ReasonNodeNotReady, "waiting for the Node to be Ready")
	}
}

// countHeld charges the nodes held under the policy (disrupted under it, no longer governed
// by it) to its budgets: in total, in their zone, and in their wave of this rollout.
func (pp *policyPass) countHeld() {
	for _, i := range pp.held {
		st := &pp.in.Nodes[i].BRN.Status
		pp.unavail++
		pp.zoneUnavail[pp.views[i].zone]++
		for k := range pp.waves {
			if pp.waves[k].name == st.Wave && st.RolloutTarget == pp.target {
				pp.waves[k].unavailable++
			}
		}
	}
}
