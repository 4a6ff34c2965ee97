package planner

import (
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// waveState is one wave of the rollout in this pass.
type waveState struct {
	name    string
	spec    *v1alpha1.Wave // nil for the implicit wave
	windows v1alpha1.Windows
	// windowOpen, windowChange and nextOpen are the windows' state at Now.
	windowOpen             bool
	windowChange, nextOpen time.Time

	nodes, updated, failed int
	unavailable, limit     int

	complete   bool
	completion time.Time // zero: complete with nothing to soak
	// open is set when every earlier wave is complete and soaked; otherwise blockReason and
	// blockMessage say which wave the rollout waits for.
	open         bool
	blockReason  v1alpha1.Reason
	blockMessage string
}

// parseWindows parses the policy's and every wave's windows; an error fails the policy closed.
func (pp *policyPass) parseWindows() {
	policyWindows, err := v1alpha1.ParseWindows(pp.spec.MaintenanceWindows)
	if err != nil {
		pp.failWindows(err)
	}
	pp.waves = make([]waveState, 0, len(pp.spec.Waves)+1)
	implicit := true
	for k := range pp.spec.Waves {
		w := &pp.spec.Waves[k]
		ws := waveState{name: w.Name, spec: w, windows: policyWindows}
		if len(w.MaintenanceWindows) > 0 {
			if ws.windows, err = v1alpha1.ParseWindows(w.MaintenanceWindows); err != nil {
				pp.failWindows(fmt.Errorf("wave %s: %w", w.Name, err))
			}
		}
		implicit = implicit && w.Name != ImplicitWave
		pp.waves = append(pp.waves, ws)
	}
	if implicit {
		pp.waves = append(pp.waves, waveState{name: ImplicitWave, windows: policyWindows})
	}
	for k := range pp.waves {
		w := &pp.waves[k]
		w.windowOpen, w.windowChange, w.nextOpen = w.windows.State(pp.in.Now)
	}
}

// failWindows records an invalid schedule or time zone: nothing may enter Draining.
func (pp *policyPass) failWindows(err error) {
	pp.badWindows = true
	pp.invalid = append(pp.invalid, err.Error())
	if pp.report.InvalidReason == "" {
		pp.report.InvalidReason = v1alpha1.ReasonInvalidSchedule
		if strings.Contains(err.Error(), "time zone") {
			pp.report.InvalidReason = v1alpha1.ReasonInvalidTimeZone
		}
	}
}

// assignWaves gives every governed node its wave for the rollout. A wave recorded for this
// rollout (status.wave with status.rolloutTarget == target) stays; other nodes go to the first
// selector wave matching them, then fill the count waves in name order (a wave already
// complete takes no newcomers), then the implicit wave.
func (pp *policyPass) assignWaves() {
	byName := make(map[string]int, len(pp.waves))
	for k, w := range pp.waves {
		byName[w.name] = k
	}
	last, ok := byName[ImplicitWave]
	if !ok {
		last = len(pp.waves) - 1
	}
	selectors := pp.waveSelectors()
	pp.waveOf = make([]int, len(pp.members))
	unassigned := make([]int, 0, len(pp.members)) // positions in members
	for k, i := range pp.members {
		if pp.waveOf[k] = pp.recordedOrSelectedWave(i, byName, selectors); pp.waveOf[k] < 0 {
			unassigned = append(unassigned, k)
		} else {
			pp.waves[pp.waveOf[k]].nodes++
		}
	}
	unassigned = pp.fillCountWaves(unassigned) // in name order, as the members are
	for _, k := range unassigned {
		pp.waveOf[k] = last
		pp.waves[last].nodes++
	}
}

// waveSelectors parses every wave's node selector (nil for waves without one); an invalid one
// selects nothing and makes the policy invalid.
func (pp *policyPass) waveSelectors() []labels.Selector {
	selectors := make([]labels.Selector, len(pp.waves))
	for k, w := range pp.waves {
		if w.spec == nil || w.spec.NodeSelector == nil {
			continue
		}
		sel, err := selectorFor(w.spec.NodeSelector)
		if err != nil {
			pp.invalid = append(pp.invalid, fmt.Sprintf("wave %s: nodeSelector: %v", w.name, err))
			sel = labels.Nothing()
		}
		selectors[k] = sel
	}
	return selectors
}

// recordedOrSelectedWave returns node i's wave recorded for this rollout, else the first wave
// whose selector matches it, else -1.
func (pp *policyPass) recordedOrSelectedWave(i int, byName map[string]int, selectors []labels.Selector) int {
	if brn := pp.in.Nodes[i].BRN; brn != nil && pp.target != "" && brn.Status.RolloutTarget == pp.target {
		if w, ok := byName[brn.Status.Wave]; ok {
			return w
		}
	}
	set := labels.Set(pp.in.Nodes[i].Node.Labels)
	for w, sel := range selectors {
		if sel != nil && sel.Matches(set) {
			return w
		}
	}
	return -1
}

// fillCountWaves fills the waves sized by a count, in order, from the unassigned nodes (a wave
// already complete takes none), and returns the nodes left.
func (pp *policyPass) fillCountWaves(unassigned []int) []int {
	for w := range pp.waves {
		ws := &pp.waves[w]
		if ws.spec == nil || ws.spec.Nodes == nil || pp.persistedCompletion(ws.name) != nil {
			continue
		}
		size, err := ws.spec.SizeOf(len(pp.members))
		if err != nil {
			pp.invalid = append(pp.invalid, err.Error())
		}
		for ; ws.nodes < size && len(unassigned) > 0; unassigned = unassigned[1:] {
			pp.waveOf[unassigned[0]] = w
			ws.nodes++
		}
	}
	return unassigned
}

// persistedCompletion returns the completion time the status carries for the named wave of
// this rollout, nil when none.
func (pp *policyPass) persistedCompletion(wave string) *time.Time {
	st := &pp.policy.Status
	if st.TargetVersion != pp.target || pp.target == "" {
		return nil
	}
	for i := range st.Waves {
		if st.Waves[i].Name == wave && st.Waves[i].CompletionTime != nil {
			return &st.Waves[i].CompletionTime.Time
		}
	}
	return nil
}

// completeWaves finds which waves are complete (every node Updated or Failed for the target;
// once recorded in status, a wave stays complete for its rollout) and which are open.
func (pp *policyPass) completeWaves(classes []nodeClass) {
	for k, i := range pp.members {
		w := &pp.waves[pp.waveOf[k]]
		switch classes[k] { // both classes have a BottlerocketNode
		case classUpdated:
			w.updated++
			w.completion = laterOf(w.completion, becameUpdated(&pp.in.Nodes[i].BRN.Status))
		case classFailed:
			w.failed++
			if t := pp.in.Nodes[i].BRN.Status.FailedTime; t != nil {
				w.completion = laterOf(w.completion, t.Time)
			}
		}
	}
	for k := range pp.waves {
		w := &pp.waves[k]
		if t := pp.persistedCompletion(w.name); t != nil {
			w.complete, w.completion = true, *t
		} else {
			w.complete = w.updated+w.failed == w.nodes && pp.target != ""
		}
		if k == 0 {
			w.open = true
			continue
		}
		prev := &pp.waves[k-1]
		soakEnds := prev.completion.Add(prev.soak())
		switch {
		case !prev.complete:
			w.blockReason = v1alpha1.ReasonWaitingForWave
			// No count of the wave's progress here: it would rewrite every waiting node's
			// status at each node done. The policy's status.waves shows it.
			w.blockMessage = fmt.Sprintf("waiting for wave %s to finish (progress: the UpdatePolicy's status.waves)", prev.name)
		case !prev.open:
			w.blockReason, w.blockMessage = prev.blockReason, prev.blockMessage
		case pp.in.Now.Before(soakEnds):
			pp.wakeAt(soakEnds)
			w.blockReason, w.blockMessage = v1alpha1.ReasonSoaking, fmt.Sprintf("wave %s soaks until %s", prev.name, formatTime(soakEnds))
		default:
			w.open = true
		}
	}
}

// soak returns how long the rollout waits after the wave completes.
func (w *waveState) soak() time.Duration {
	if w.spec == nil || w.completion.IsZero() {
		return 0
	}
	return w.spec.SoakTimeOrDefault()
}

// becameUpdated is when a node became Updated: updatedTime if this operator updated it, or
// when its phase turned Updated if it was found on the target (such a node sets no
// updatedTime: it took no disruption slot, but its wave soaks all the same). Zero: not known.
func becameUpdated(st *v1alpha1.BottlerocketNodeStatus) time.Time {
	var t time.Time
	if st.UpdatedTime != nil {
		t = st.UpdatedTime.Time
	}
	if st.Phase == v1alpha1.PhaseUpdated && st.PhaseStartTime != nil {
		t = laterOf(t, st.PhaseStartTime.Time)
	}
	return t
}

// laterOf returns the later of a and b.
func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// wakeAt records a time at which a decision may change.
func (pp *policyPass) wakeAt(t time.Time) {
	if t.After(pp.in.Now) {
		pp.wake = earliest(pp.wake, t)
	}
}
