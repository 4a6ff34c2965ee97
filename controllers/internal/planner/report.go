package planner

import (
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// buildReport fills the policy report from the decisions.
func (pp *policyPass) buildReport(out []NodeDecision) {
	r := &pp.report
	r.TargetVersion, r.TargetSource = pp.target, pp.source
	if st := &pp.policy.Status; pp.target != "" {
		r.RolloutStartTime = pp.in.Now
		if st.TargetVersion == pp.target && st.RolloutStartTime != nil {
			r.RolloutStartTime = st.RolloutStartTime.Time
		}
	}
	waiting := pp.countPhases(out)
	r.Progress = fmt.Sprintf("%d/%d", r.Counts.Updated, r.Counts.Total)
	r.MaxUnavailable = pp.maxUnavailable
	r.FailedNodes = pp.failed
	r.Halted = pp.failed >= pp.spec.MaxFailedNodesOrDefault()
	r.Invalid = strings.Join(pp.invalid, "; ")
	if current := pp.reportWaves(); current >= 0 {
		r.NextMaintenanceWindow = pp.waves[current].nextOpen
		if waiting || r.Counts.Staging > 0 {
			pp.wakeAt(pp.waves[current].windowChange)
		}
	}
	r.Phase = pp.rolloutPhase(waiting)
	if r.Phase == v1alpha1.RolloutProgressing || r.Phase == v1alpha1.RolloutWaiting {
		r.EstimatedCompletion = pp.estimate(out)
	}
}

// countPhases counts the governed nodes by decided phase, and reports whether any waits in
// Pending.
func (pp *policyPass) countPhases(out []NodeDecision) (waiting bool) {
	c := &pp.report.Counts
	c.Total = int32(len(pp.members))
	for _, i := range pp.members {
		switch out[i].Phase {
		case v1alpha1.PhaseIdle:
			c.Idle++
		case v1alpha1.PhasePending:
			c.Pending++
			waiting = true
		case v1alpha1.PhaseStaging, v1alpha1.PhaseStaged:
			c.Staging++
		case v1alpha1.PhaseUpdated:
			c.Updated++
		case v1alpha1.PhaseFailed:
			c.Failed++
		default:
			c.InProgress++
		}
	}
	return waiting
}

// reportWaves fills each wave's progress (the implicit wave only when it has nodes or is the
// only one) and returns the current wave: the first open and not complete, -1 if none.
func (pp *policyPass) reportWaves() int {
	r := &pp.report
	r.Waves = make([]v1alpha1.WaveStatus, 0, len(pp.waves))
	current := -1
	for k := range pp.waves {
		w := &pp.waves[k]
		if w.spec == nil && w.nodes == 0 && len(pp.waves) > 1 {
			continue
		}
		ws := v1alpha1.WaveStatus{Name: w.name, Nodes: int32(w.nodes), Updated: int32(w.updated), Failed: int32(w.failed)}
		if w.complete && !w.completion.IsZero() {
			t := metav1.NewTime(w.completion)
			ws.CompletionTime = &t
		}
		if current < 0 && w.open && !w.complete {
			current = k
		}
		r.Waves = append(r.Waves, ws)
	}
	return current
}

// rolloutPhase summarises the rollout for `kubectl get upol`.
func (pp *policyPass) rolloutPhase(waiting bool) v1alpha1.RolloutPhase {
	r := &pp.report
	c := &r.Counts
	switch {
	case r.Invalid != "" || len(r.ConflictsWith) > 0:
		return v1alpha1.RolloutInvalid
	case r.Halted:
		return v1alpha1.RolloutHalted
	case c.Updated+c.Failed+c.Idle == c.Total:
		return v1alpha1.RolloutUpToDate
	case r.Paused || r.DryRun:
		return v1alpha1.RolloutPaused
	case c.Staging+c.InProgress > 0:
		return v1alpha1.RolloutProgressing
	case waiting:
		return v1alpha1.RolloutWaiting
	}
	return v1alpha1.RolloutProgressing
}

// formatTime renders a time for messages.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}
