package planner

import (
	"slices"
	"strings"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// Forecast is the rest of one policy's rollout as the planner expects it to go: what this
// pass decides, and when each node not done yet is expected to be disrupted and back.
type Forecast struct {
	// Report is the pass's report of the policy (target, budgets, waves, ETA...).
	Report PolicyReport
	// PerNode is how long a node's disruption is expected to last.
	PerNode time.Duration
	// Nodes are the governed nodes not done yet, in the order they are expected to move:
	// the nodes disrupted now first, then by wave.
	Nodes []ForecastNode
}

// ForecastNode is one node's expected course.
type ForecastNode struct {
	Name, Wave string
	// Phase, Reason and Message are this pass's decision for the node.
	Phase   v1alpha1.NodePhase
	Reason  v1alpha1.Reason
	Message string
	// Start is when its disruption is expected to start (zero: disrupted now, or it is not
	// expected to start at all); Back when it is expected to be updated (zero: not expected).
	Start, Back time.Time
}

// ComputeForecast plans one pass, as Compute does, and forecasts the named policy's rollout
// from it; false when no such policy is in the input.
func ComputeForecast(in Input, policy string) (Forecast, bool) {
	out := make([]NodeDecision, len(in.Nodes))
	passes := preparePolicies(&in)
	idx := newSelectorIndex(passes)
	disrupted := scope(in, passes, idx, observe(in, passes, idx), out)
	carryOn(in, passes, disrupted, out)
	for _, p := range passes {
		if p.policy.Name == policy {
			p.plan(out)
			return p.forecast(out), true
		}
	}
	return Forecast{}, false
}

// forecast lays the estimate out node by node. The waiting nodes of a wave go in the order
// admissions take them: those already staging or staged first, then as compareCandidates.
func (pp *policyPass) forecast(out []NodeDecision) Forecast {
	f := Forecast{Report: pp.report, PerNode: pp.perNode}
	waiting := make([][]int, len(pp.waves)) // node indices per wave
	for k, i := range pp.members {
		switch out[i].Phase {
		case v1alpha1.PhasePending, v1alpha1.PhaseStaging, v1alpha1.PhaseStaged:
			waiting[pp.waveOf[k]] = append(waiting[pp.waveOf[k]], i)
		}
	}
	for w := range waiting {
		slices.SortFunc(waiting[w], func(a, b int) int { return pp.compareWaiting(out, a, b) })
	}
	node := func(i int) ForecastNode {
		d := &out[i]
		return ForecastNode{Name: d.Name, Wave: d.Wave, Phase: d.Phase, Reason: d.Reason, Message: d.Message}
	}
	in := pp.etaInput(out, func(i int, back time.Time) {
		n := node(i)
		n.Back = back
		f.Nodes = append(f.Nodes, n)
	})
	starts := make([][]ForecastNode, len(pp.waves))
	in.started = func(w int, start, back time.Time) {
		n := node(waiting[w][len(starts[w])])
		n.Start, n.Back = start, back
		starts[w] = append(starts[w], n)
	}
	estimateCompletion(in)
	for w := range waiting {
		f.Nodes = append(f.Nodes, starts[w]...)
		for _, i := range waiting[w][len(starts[w]):] { // not expected to start
			f.Nodes = append(f.Nodes, node(i))
		}
	}
	return f
}

// compareWaiting orders two waiting nodes of a wave as admissions would take them.
func (pp *policyPass) compareWaiting(out []NodeDecision, a, b int) int {
	ahead := func(i int) bool { return out[i].Phase != v1alpha1.PhasePending }
	if ahead(a) != ahead(b) {
		return boolOrder(ahead(b))
	}
	last := func(i int) bool { return out[i].Name == pp.in.ControllerNode }
	retried := func(i int) bool { brn := pp.in.Nodes[i].BRN; return brn != nil && brn.Status.FailureCount > 0 }
	switch {
	case last(a) != last(b):
		return boolOrder(last(a))
	case retried(a) != retried(b):
		return boolOrder(retried(a))
	}
	return strings.Compare(out[a].Name, out[b].Name)
}
