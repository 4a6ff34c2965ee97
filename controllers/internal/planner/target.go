package planner

import (
	"slices"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// resolveTarget returns the rollout's target and where it came from: a pinned version, or
// for "latest" the target carried from "latest" while its rollout can progress, else the
// newest release a quorum of the governed hosts is offered if it is newer than that carried
// target ("latest" never goes back). A target carried from a pin is not a "latest" rollout's:
// switching back to "latest" resolves afresh.
func (pp *policyPass) resolveTarget() (string, v1alpha1.TargetSource) {
	if v := pp.spec.Version; v != "" && v != v1alpha1.VersionLatest {
		return v, v1alpha1.TargetSourcePin
	}
	carried := pp.policy.Status.TargetVersion
	if pp.policy.Status.TargetSource == v1alpha1.TargetSourcePin {
		carried = ""
	}
	target := carried
	if carried == "" || !pp.canProgress(carried) {
		if newest := pp.quorumRelease(); carried == "" || v1alpha1.CompareVersions(newest, carried) > 0 {
			target = newest
		}
	}
	if target == "" {
		return "", ""
	}
	return target, v1alpha1.TargetSourceLatest
}

// canProgress reports whether the rollout to target can still move: a governed node is in
// flight for it, or a node that still needs it is offered it. A rollout that ended, or whose
// target is withdrawn or never offered to the nodes left, cannot.
func (pp *policyPass) canProgress(target string) bool {
	for _, i := range pp.members {
		brn := pp.in.Nodes[i].BRN
		if brn != nil && brn.Status.Phase.InFlight() && brn.Status.RolloutTarget == target {
			return true
		}
		if a := pp.agent(i); a != nil && pp.needs(brn, a, target) && slices.Contains(a.AvailableVersions, target) {
			return true
		}
	}
	return false
}

// needs reports whether a node with an agent report still needs target: it runs something
// else and has not failed for it (unless a person asked to retry).
func (pp *policyPass) needs(brn *v1alpha1.BottlerocketNode, a *v1alpha1.AgentStatus, target string) bool {
	st := &brn.Status
	failed := st.Phase == v1alpha1.PhaseFailed && st.FailedTarget == target && !retryRequested(brn)
	return a.CurrentVersion != target && !failed
}

// quorumRelease returns the newest release (v1alpha1.IsReleaseVersion) that more than half of
// the governed hosts whose agent reports are offered or run; "" when there is none. One host's
// report, or a minority's, never sets the fleet's target.
func (pp *policyPass) quorumRelease() string {
	hosts := map[string]int{}
	reporting := 0
	var versions []string
	for _, i := range pp.members {
		a := pp.agent(i)
		if a == nil {
			continue
		}
		reporting++
		versions = hostVersions(a, versions[:0])
		for _, v := range versions {
			hosts[v]++
		}
	}
	newest := ""
	for v, n := range hosts { // few distinct versions: each is checked once
		if 2*n > reporting && v1alpha1.IsReleaseVersion(v) && (newest == "" || v1alpha1.CompareVersions(v, newest) > 0) {
			newest = v
		}
	}
	return newest
}

// hostVersions appends to buf the versions a host is offered or runs, each once, as it
// reports them (quorumRelease checks which are releases).
func hostVersions(a *v1alpha1.AgentStatus, buf []string) []string {
	if a.CurrentVersion != "" {
		buf = append(buf, a.CurrentVersion)
	}
	for _, v := range a.AvailableVersions {
		if !slices.Contains(buf, v) {
			buf = append(buf, v)
		}
	}
	return buf
}
