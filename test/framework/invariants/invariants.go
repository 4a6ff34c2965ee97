// Package invariants checks the rollout invariants on successive observations of a fleet.
//
// It is written independently of the planner: it recomputes governance, budgets, windows,
// wave order and failure budgets from the policies and the nodes, using only the API types'
// own arithmetic, so that a planner bug cannot hide itself. The controller's tests and the
// end-to-end watcher reuse it.
package invariants

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/internal/kubeutil"
)

// implicitWave names the wave of nodes no policy wave claims (the lifecycle contract's "rest").
const implicitWave = "rest"

// Rules a Violation names.
const (
	RuleUngoverned  = "StartWithoutPolicy"
	RulePaused      = "StartWhilePaused"
	RuleDryRun      = "ChangeInDryRun"
	RuleHalted      = "StartWhileHalted"
	RuleWaveOrder   = "WaveOrder"
	RuleSoak        = "Soak"
	RuleWindow      = "DrainOutsideWindow"
	RuleBudget      = "MaxUnavailable"
	RuleZoneBudget  = "MaxUnavailablePerZone"
	RuleWaveBudget  = "WaveMaxUnavailable"
	RuleStaging     = "StagingMaxConcurrent"
	RuleSkippedStep = "SkippedStaging"
	RuleCordoned    = "LeftCordoned"
)

// Node is one observed node and its BottlerocketNode (nil if none).
type Node struct {
	Node *corev1.Node
	BRN  *v1alpha1.BottlerocketNode
}

// Snapshot is the fleet at one instant.
type Snapshot struct {
	Now      time.Time
	Policies []v1alpha1.UpdatePolicy
	Nodes    []Node
}

// Violation is one broken invariant.
type Violation struct {
	Rule    string
	Policy  string
	Node    string
	Message string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s: policy %s node %s: %s", v.Rule, v.Policy, v.Node, v.Message)
}

// Checker follows a fleet from step to step. It remembers when it first saw each wave of
// each rollout complete, as the planner persists it.
type Checker struct {
	completed map[waveKey]time.Time
	// charged maps a node seen disrupted under a policy (governed by it, or its spec.policy)
	// to that policy, until the node is seen back: Ready, schedulable, in no disrupting
	// phase. Whatever the policies say meanwhile (an exclusion, a selector edit, a second
	// policy), it counts against that policy's budgets.
	charged map[string]string
}

type waveKey struct{ policy, target, wave string }

// NewChecker returns a Checker that has seen nothing yet.
func NewChecker() *Checker {
	return &Checker{completed: map[waveKey]time.Time{}, charged: map[string]string{}}
}

// Step checks the transition from before to after, two observations at after.Now, typically
// the fleet a planner saw and the fleet with its decisions applied. Every node that entered
// Staging or Draining must have been allowed to; the budgets must hold after it.
func (c *Checker) Step(before, after Snapshot) []Violation {
	prev := make(map[string]*v1alpha1.BottlerocketNode, len(before.Nodes))
	for _, n := range before.Nodes {
		if n.BRN != nil {
			prev[n.Node.Name] = n.BRN
		}
	}
	f := newFleet(after)
	f.charged = c.charge(f)
	c.recordCompletions(f)
	var out []Violation
	for i, n := range after.Nodes {
		if n.BRN == nil {
			continue
		}
		old := prev[n.Node.Name]
		var was v1alpha1.NodePhase
		if old != nil {
			was = old.Status.Phase
		}
		p := f.governor[i]
		// A dry run starts nothing; a node already in flight when it was turned on finishes.
		if p >= 0 && after.Policies[p].Spec.DryRun && old != nil && old.Spec.Action != n.BRN.Spec.Action && !inFlight(was) {
			out = append(out, f.violation(RuleDryRun, p, i, "spec.action changed from %s to %s in dry-run (the node was %s)", old.Spec.Action, n.BRN.Spec.Action, was))
		}
		now := n.BRN.Status.Phase
		entered := now != was && (now == v1alpha1.PhaseStaging || now == v1alpha1.PhaseDraining)
		if !entered {
			continue
		}
		if p < 0 {
			out = append(out, f.violation(RuleUngoverned, p, i, "entered %s though no single policy governs it", now))
			continue
		}
		if now == v1alpha1.PhaseDraining && was != v1alpha1.PhaseStaged {
			out = append(out, f.violation(RuleSkippedStep, p, i, "entered Draining from %q, not Staged", was))
		}
		out = append(out, c.checkStart(f, p, i)...)
		if now == v1alpha1.PhaseDraining {
			out = append(out, f.checkDrain(p, i)...)
		} else {
			out = append(out, f.checkStaging(p, i)...)
		}
	}
	return out
}

// fleet is a snapshot with governance recomputed.
type fleet struct {
	Snapshot
	governor []int // policy index governing each node, -1 for none
	charged  []int // policy index each node is charged to (governor, or disrupted under), -1 for none
}

func newFleet(s Snapshot) *fleet {
	f := &fleet{Snapshot: s, governor: make([]int, len(s.Nodes))}
	sels := make([]labels.Selector, len(s.Policies))
	for j := range s.Policies {
		sel := labels.Everything()
		if ls := s.Policies[j].Spec.NodeSelector; ls != nil {
			var err error
			if sel, err = metav1.LabelSelectorAsSelector(ls); err != nil {
				sel = labels.Nothing()
			}
		}
		sels[j] = sel
	}
	for i, n := range s.Nodes {
		f.governor[i] = -1
		if n.Node.Annotations[v1alpha1.AnnotationExclude] == "true" {
			continue
		}
		matches := 0
		for j, sel := range sels {
			if sel.Matches(labels.Set(n.Node.Labels)) {
				matches++
				f.governor[i] = j
			}
		}
		if matches != 1 {
			f.governor[i] = -1
		}
	}
	return f
}

func (f *fleet) violation(rule string, p, i int, format string, args ...any) Violation {
	v := Violation{Rule: rule, Node: f.Nodes[i].Node.Name, Message: fmt.Sprintf(format, args...)}
	if p >= 0 {
		v.Policy = f.Policies[p].Name
	}
	return v
}

// members calls fn for every node policy p governs.
func (f *fleet) members(p int, fn func(i int)) {
	for i, g := range f.governor {
		if g == p {
			fn(i)
		}
	}
}

// waveNames lists a policy's waves in order, the implicit one last.
func waveNames(spec *v1alpha1.UpdatePolicySpec) []string {
	names := make([]string, 0, len(spec.Waves)+1)
	implicit := true
	for _, w := range spec.Waves {
		names = append(names, w.Name)
		implicit = implicit && w.Name != implicitWave
	}
	if implicit {
		names = append(names, implicitWave)
	}
	return names
}

// done reports whether a node is finished with target: Updated on it, or Failed for it.
func done(n Node, target string) bool {
	st := &n.BRN.Status
	switch st.Phase {
	case v1alpha1.PhaseUpdated:
		return st.Agent != nil && st.Agent.CurrentVersion == target
	case v1alpha1.PhaseFailed:
		return st.FailedTarget == target
	}
	return false
}

// recordCompletions remembers every wave seen complete for the first time: the latest
// Updated or Failed time of its nodes.
func (c *Checker) recordCompletions(f *fleet) {
	type tally struct {
		nodes, done int
		last        time.Time
	}
	tallies := map[waveKey]*tally{}
	for i, n := range f.Nodes {
		if f.governor[i] < 0 || n.BRN == nil || n.BRN.Status.RolloutTarget == "" {
			continue
		}
		st := &n.BRN.Status
		k := waveKey{f.Policies[f.governor[i]].Name, st.RolloutTarget, st.Wave}
		t := tallies[k]
		if t == nil {
			t = &tally{}
			tallies[k] = t
		}
		t.nodes++
		if done(n, st.RolloutTarget) {
			t.done++
			for _, at := range []*metav1.Time{st.UpdatedTime, st.FailedTime} {
				if at != nil && at.After(t.last) {
					t.last = at.Time
				}
			}
		}
	}
	for k, t := range tallies {
		if _, seen := c.completed[k]; !seen && t.done == t.nodes {
			c.completed[k] = t.last
		}
	}
}

// checkStart checks what holds for any node entering Staging or Draining: policy not paused
// nor in dry-run, rollout not halted, every earlier wave complete and soaked.
func (c *Checker) checkStart(f *fleet, p, i int) []Violation {
	pol := &f.Policies[p]
	st := &f.Nodes[i].BRN.Status
	target := f.Nodes[i].BRN.Spec.TargetVersion
	var out []Violation
	if pol.Spec.Paused {
		out = append(out, f.violation(RulePaused, p, i, "entered %s while the policy is paused", st.Phase))
	}
	if pol.Spec.DryRun {
		out = append(out, f.violation(RuleDryRun, p, i, "entered %s in dry-run", st.Phase))
	}
	failed := 0
	f.members(p, func(j int) {
		b := f.Nodes[j].BRN
		if j == i || b == nil || b.Status.Phase != v1alpha1.PhaseFailed || b.Status.FailedTarget != target {
			return
		}
		if r := pol.Status.ResumeTime; r == nil || b.Status.FailedTime == nil || b.Status.FailedTime.After(r.Time) {
			failed++
		}
	})
	if limit := max(int(pol.Spec.FailurePolicy.MaxFailedNodes), 1); failed >= limit {
		out = append(out, f.violation(RuleHalted, p, i, "entered %s with %d nodes failed for %s (limit %d)", st.Phase, failed, target, limit))
	}
	soaks := map[string]time.Duration{}
	for _, w := range pol.Spec.Waves {
		if w.SoakTime != nil {
			soaks[w.Name] = w.SoakTime.Duration
		}
	}
	populated := map[string]bool{}
	f.members(p, func(j int) {
		if b := f.Nodes[j].BRN; b != nil && b.Status.RolloutTarget == target {
			populated[b.Status.Wave] = true
		}
	})
	for _, w := range waveNames(&pol.Spec) {
		if w == st.Wave {
			break
		}
		if !populated[w] {
			continue
		}
		at, ok := c.completed[waveKey{pol.Name, target, w}]
		switch {
		case !ok:
			out = append(out, f.violation(RuleWaveOrder, p, i, "wave %s started before wave %s completed", st.Wave, w))
		case !at.IsZero() && f.Now.Before(at.Add(soaks[w])):
			out = append(out, f.violation(RuleSoak, p, i, "wave %s started before wave %s soaked (until %s)", st.Wave, w, at.Add(soaks[w])))
		}
	}
	return out
}

// charge updates which policy each node is charged to, from the world: a node disrupted (see
// unavailable) while governed by a policy or recorded as its (spec.policy) is charged to it
// until it is seen back. It returns each node's charge for this snapshot.
func (c *Checker) charge(f *fleet) []int {
	byName := make(map[string]int, len(f.Policies))
	for j := range f.Policies {
		byName[f.Policies[j].Name] = j
	}
	out := make([]int, len(f.Nodes))
	for i, n := range f.Nodes {
		name := n.Node.Name
		if !n.Unavailable() {
			delete(c.charged, name)
		} else if _, ok := c.charged[name]; !ok {
			switch {
			case f.governor[i] >= 0:
				c.charged[name] = f.Policies[f.governor[i]].Name
			case n.BRN != nil && n.BRN.Spec.Policy != "":
				c.charged[name] = n.BRN.Spec.Policy
			}
		}
		out[i] = f.governor[i]
		if p, ok := byName[c.charged[name]]; ok && n.Unavailable() {
			out[i] = p
		}
	}
	return out
}

// Instant checks the budgets at one instant, counted from the world: every node cordoned, not
// Ready or in a disrupting phase counts against the policy it is charged to (governed by it
// now, or disrupted under it and not back yet), whatever the policies say now; each policy's
// budget is resolved over the nodes it governs. It returns the most nodes unavailable under
// one policy too.
func (c *Checker) Instant(s Snapshot) (peak int, out []Violation) {
	f := newFleet(s)
	f.charged = c.charge(f)
	for p := range s.Policies {
		governed := 0
		var down []string
		zones, zoneDown := map[string]int{}, map[string]int{}
		for i, n := range s.Nodes {
			zone := n.Node.Labels[v1alpha1.LabelZone]
			if f.governor[i] == p {
				governed++
				zones[zone]++
			}
			if f.charged[i] == p && n.Unavailable() {
				down = append(down, n.Node.Name)
				zoneDown[zone]++
			}
		}
		peak = max(peak, len(down))
		name := s.Policies[p].Name
		if limit, _ := s.Policies[p].Spec.MaxUnavailableOf(governed); len(down) > limit {
			slices.Sort(down)
			out = append(out, Violation{Rule: RuleBudget, Policy: name, Node: strings.Join(down, ","),
				Message: fmt.Sprintf("%d nodes unavailable at %s, budget %d", len(down), s.Now.Format(time.RFC3339Nano), limit)})
		}
		for zone, d := range zoneDown {
			if zl, _ := s.Policies[p].Spec.MaxUnavailablePerZoneOf(zones[zone]); d > zl {
				out = append(out, Violation{Rule: RuleZoneBudget, Policy: name,
					Message: fmt.Sprintf("zone %s has %d nodes unavailable, budget %d", zone, d, zl)})
			}
		}
	}
	return peak, out
}

// LeftCordoned lists the nodes the operator cordoned (its annotation on the Node) that are not
// in a phase holding the cordon (Draining, Rebooting, Verifying): at the end of a rollout, no
// node is left cordoned by us.
func LeftCordoned(s Snapshot) []Violation {
	var out []Violation
	for _, n := range s.Nodes {
		if _, ours := n.Node.Annotations[v1alpha1.AnnotationCordonedBy]; !ours {
			continue
		}
		if n.BRN != nil && holdsCordon(n.BRN.Status.Phase) {
			continue
		}
		out = append(out, Violation{Rule: RuleCordoned, Node: n.Node.Name,
			Message: fmt.Sprintf("left cordoned by the operator (unschedulable %v)", n.Node.Spec.Unschedulable)})
	}
	return out
}

// holdsCordon reports whether a node in phase holds its cordon by the lifecycle contract.
func holdsCordon(phase v1alpha1.NodePhase) bool {
	return phase == v1alpha1.PhaseDraining || phase == v1alpha1.PhaseRebooting || phase == v1alpha1.PhaseVerifying
}

// Unavailable reports whether a node consumes a disruption slot, from what the cluster shows:
// cordoned or not Ready, whoever caused it, or in a phase that disrupts it.
func (n Node) Unavailable() bool {
	return kubeutil.NodeUnavailable(n.Node) || (n.BRN != nil && n.BRN.Status.Phase.Unavailable())
}

// pausing reports whether node n's slot pauses at now: it became Updated, after a disruption,
// at or before now and less than pause ago. A node Updated after now (the observation is later
// than the instant judged) was still holding its slot then, not pausing it.
func pausing(n Node, now time.Time, pause time.Duration) bool {
	if n.BRN == nil || n.BRN.Status.Phase != v1alpha1.PhaseUpdated || n.BRN.Status.UpdatedTime == nil {
		return false
	}
	at := n.BRN.Status.UpdatedTime.Time
	return !at.After(now) && now.Before(at.Add(pause))
}

// checkDrain checks a node that entered Draining: a window of its wave is open, and the
// budgets (total with the pause after each Updated node, per zone, per wave) hold.
func (f *fleet) checkDrain(p, i int) []Violation {
	pol := &f.Policies[p]
	brn := f.Nodes[i].BRN
	var out []Violation
	if ok, err := pol.Spec.DisruptionAllowed(brn.Status.Wave, f.Now); !ok {
		out = append(out, f.violation(RuleWindow, p, i, "entered Draining outside a maintenance window (error: %v)", err))
	}
	zone := f.Nodes[i].Node.Labels[v1alpha1.LabelZone]
	var governed, used, cooling, zoneNodes, zoneUsed, waveNodes, waveUsed int
	pause := pol.Spec.PauseBetweenNodesOrDefault()
	for j, n := range f.Nodes {
		inZone := n.Node.Labels[v1alpha1.LabelZone] == zone
		inWave := n.BRN != nil && n.BRN.Status.RolloutTarget == brn.Status.RolloutTarget && n.BRN.Status.Wave == brn.Status.Wave
		if f.governor[j] == p {
			governed++
			zoneNodes += b2i(inZone)
			waveNodes += b2i(inWave)
		}
		switch {
		case f.charged[j] == p && n.Unavailable(): // counted from the world, whatever governs it now
			used++
			zoneUsed += b2i(inZone)
			waveUsed += b2i(inWave)
		case f.governor[j] == p && pausing(n, f.Now, pause):
			cooling++
		}
	}
	limit, _ := pol.Spec.MaxUnavailableOf(governed)
	if used+cooling > limit {
		out = append(out, f.violation(RuleBudget, p, i, "%d unavailable and %d slots pausing, limit %d", used, cooling, limit))
	}
	if zl, _ := pol.Spec.MaxUnavailablePerZoneOf(zoneNodes); zoneUsed > zl {
		out = append(out, f.violation(RuleZoneBudget, p, i, "zone %q: %d unavailable, limit %d", zone, zoneUsed, zl))
	}
	for k := range pol.Spec.Waves {
		if w := &pol.Spec.Waves[k]; w.Name == brn.Status.Wave {
			if wl, _ := w.MaxUnavailableOf(waveNodes); waveUsed > wl {
				out = append(out, f.violation(RuleWaveBudget, p, i, "wave %s: %d unavailable, limit %d", w.Name, waveUsed, wl))
			}
		}
	}
	return out
}

// checkStaging checks a node that entered Staging: staging.maxConcurrent holds.
func (f *fleet) checkStaging(p, i int) []Violation {
	pol := &f.Policies[p]
	governed, staging := 0, 0
	f.members(p, func(j int) {
		governed++
		if b := f.Nodes[j].BRN; b != nil && b.Status.Phase == v1alpha1.PhaseStaging {
			staging++
		}
	})
	if limit, _ := pol.Spec.StagingMaxConcurrentOf(governed); staging > limit {
		return []Violation{f.violation(RuleStaging, p, i, "%d nodes staging, limit %d", staging, limit)}
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// inFlight: a node in this phase is being updated; pausing or a dry run lets it finish.
func inFlight(phase v1alpha1.NodePhase) bool {
	switch phase {
	case v1alpha1.PhaseStaging, v1alpha1.PhaseDraining, v1alpha1.PhaseRebooting, v1alpha1.PhaseVerifying, v1alpha1.PhaseStabilizing:
		return true
	}
	return false
}
