package planner

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// benchInput is a fleet of n nodes under 10 policies, with waves, windows and zone limits,
// a tenth of it updated and a few nodes in flight.
func benchInput(n int) Input {
	in := Input{Now: t0, ControllerNode: "b-000007"}
	for p := range 10 {
		in.Policies = append(in.Policies, policy(fmt.Sprintf("pool-%d", p), selecting("pool", fmt.Sprint(p)), func(s *v1alpha1.UpdatePolicySpec) {
			s.MaxUnavailable = intOrStr("5%")
			s.MaxUnavailablePerZone = intOrStr("2%")
			s.PauseBetweenNodes = dur(time.Minute)
			s.MaintenanceWindows = []v1alpha1.MaintenanceWindow{
				{Schedule: "0 10 * * 1-5", Duration: metav1Duration(8 * time.Hour), TimeZone: "Europe/Berlin"},
			}
			s.Waves = []v1alpha1.Wave{
				{Name: "canary", Nodes: intOrStr("1"), SoakTime: dur(time.Hour)},
				{Name: "early", Nodes: intOrStr("10%")},
			}
		}))
	}
	zones := []string{"eu-1a", "eu-1b", "eu-1c"}
	for i := range n {
		h := host(fmt.Sprintf("b-%06d", i), zones[i%3], "1.20.0", "1.21.0", "1.20.0")
		h.Node.Labels["pool"] = fmt.Sprint(i % 10)
		h.Node.ResourceVersion, h.BRN.ResourceVersion = "1", "1" // as the API server gives them
		st := &h.BRN.Status
		switch {
		case i%10 == 1:
			st.Agent.CurrentVersion, st.Phase = "1.21.0", v1alpha1.PhaseUpdated
		case i%97 == 0:
			st.Phase, st.RolloutTarget, h.BRN.Spec.Action = v1alpha1.PhaseStaged, "1.21.0", v1alpha1.ActionStage
		case i%211 == 0:
			st.Phase, st.RolloutTarget, h.BRN.Spec.Action = v1alpha1.PhaseRebooting, "1.21.0", v1alpha1.ActionReboot
		}
		in.Nodes = append(in.Nodes, h)
	}
	return in
}

// BenchmarkCompute plans the fleet afresh, and as the controller does, with the Memo of the
// pass before (nothing changed since: an idle pass).
func BenchmarkCompute(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		for _, memo := range []bool{false, true} {
			name := fmt.Sprintf("nodes=%d", n)
			if memo {
				name += "/memo"
			}
			b.Run(name, func(b *testing.B) {
				in := benchInput(n)
				if memo {
					in.Memo = &Memo{}
					Compute(in)
				}
				b.ReportAllocs()
				for b.Loop() {
					Compute(in)
				}
			})
		}
	}
}

// BenchmarkReadOnce is the floor of a pass that reads every node's objects: it only reads, once
// per node, four fields a pass needs (a label, the phase, the versions offered, the failure
// count) and writes each node a decision. At 100,000 nodes that is memory more than arithmetic.
func BenchmarkReadOnce(b *testing.B) {
	in := benchInput(100_000)
	b.ReportAllocs()
	for b.Loop() {
		out := make([]NodeDecision, len(in.Nodes))
		for i, ns := range in.Nodes {
			d := &out[i]
			d.Name, d.Wave, d.From = ns.Node.Name, ns.Node.Labels["pool"], ns.BRN.Status.Phase
			if slices.Contains(ns.BRN.Status.Agent.AvailableVersions, "1.21.0") && ns.BRN.Status.FailureCount == 0 {
				d.Phase = v1alpha1.PhasePending
			}
		}
	}
}
