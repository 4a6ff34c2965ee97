package planner

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// candidate is a node that may be admitted this pass.
type candidate struct {
	k, i    int // position in members, index in Input.Nodes
	wave    int
	last    bool // the controller's node
	retried bool // failed before: goes after its wave's first-timers
	staged  bool
}

// check is one rule a candidate must pass. It returns whether the rule holds the node back,
// and then the reason and message shown on the node.
type check func(pp *policyPass, c *candidate) (blocked bool, reason v1alpha1.Reason, message string)

// commonChecks hold back any new start, staging or disruption.
var commonChecks = []check{checkPaused, checkHalted, checkWave, checkControllerLast}

// stageChecks admit a Pending node to Staging.
var stageChecks = slices.Concat([]check{checkTargetOffered, checkBackoff}, commonChecks, []check{checkStagingLimit})

// drainChecks admit a Staged node to Draining.
var drainChecks = slices.Concat(commonChecks, []check{
	checkSchedule, checkWindow, checkBudget, checkZoneBudget, checkWaveBudget, checkPauseBetweenNodes,
})

// admit walks the candidates in order (wave, then first-timers before retried nodes, the
// controller's node last, then name) through their checks, and admits those that pass.
func (pp *policyPass) admit(classes []nodeClass, out []NodeDecision) {
	cands := pp.candidates(classes, out)
	for n := range cands {
		c := &cands[n] // not a copy per candidate: the checks would move each to the heap
		d := &out[c.i]
		checks := stageChecks
		if c.staged {
			checks = drainChecks
		}
		if blocked, reason, message := pp.runChecks(checks, c); blocked {
			d.Reason, d.Message = reason, message
		} else {
			pp.take(c, d)
		}
		if d.Reason != v1alpha1.ReasonTargetNotOffered && len(pp.report.NextNodes) < maxNextNodes {
			pp.report.NextNodes = append(pp.report.NextNodes, d.Name)
		}
	}
}

// candidates returns the nodes that may be admitted, in the order admit walks them. The
// members are in name order, so a stable placement by (wave, controller's node, retried)
// orders them: no comparison sort.
func (pp *policyPass) candidates(classes []nodeClass, out []NodeDecision) []candidate {
	bucket := func(c *candidate) int {
		b := c.wave * 4
		if c.last {
			b += 2
		}
		if c.retried {
			b++
		}
		return b
	}
	starts := make([]int, len(pp.waves)*4+1)
	cands := make([]candidate, 0, len(pp.members))
	for k, i := range pp.members {
		if classes[k] != classCandidate && classes[k] != classStaged {
			continue
		}
		c := candidate{
			k: k, i: i, wave: pp.waveOf[k],
			last:    out[i].Name == pp.in.ControllerNode,
			retried: pp.in.Nodes[i].BRN.Status.FailureCount > 0,
			staged:  classes[k] == classStaged,
		}
		starts[bucket(&c)+1]++
		cands = append(cands, c)
	}
	for b := 1; b < len(starts); b++ {
		starts[b] += starts[b-1]
	}
	ordered := make([]candidate, len(cands))
	for _, c := range cands {
		b := bucket(&c)
		ordered[starts[b]] = c
		starts[b]++
	}
	return ordered
}

func boolOrder(b bool) int {
	if b {
		return 1
	}
	return -1
}

// runChecks returns the first check that holds the candidate back.
func (pp *policyPass) runChecks(checks []check, c *candidate) (bool, v1alpha1.Reason, string) {
	for _, chk := range checks {
		if blocked, reason, message := chk(pp, c); blocked {
			return true, reason, message
		}
	}
	return false, "", ""
}

// take admits the candidate (Staging, or Draining for a Staged node) and consumes what it
// uses; in dry-run it only says what would happen, and still consumes, so that the report
// shows the nodes that would follow.
func (pp *policyPass) take(c *candidate, d *NodeDecision) {
	next, verb := v1alpha1.PhaseStaging, "stage"
	if c.staged {
		next, verb = v1alpha1.PhaseDraining, "start draining"
		zone := pp.views[c.i].zone
		if !pp.unavailable(c.i, d) {
			pp.unavail++
			pp.zoneUnavail[zone]++
			pp.waves[c.wave].unavailable++
			if !pp.spec.DryRun {
				pp.report.Unavailable++
			}
		}
	} else {
		pp.staging++
	}
	if pp.spec.DryRun {
		d.Reason = v1alpha1.ReasonDryRun
		d.Message = fmt.Sprintf("dry run: would %s (target %s)", verb, pp.target)
		return
	}
	d.Phase, d.Action, d.TargetVersion = next, v1alpha1.ActionStage, pp.target
	d.Reason, d.Message = "", "draining for "+pp.target
	if next == v1alpha1.PhaseStaging {
		d.Reason, d.Message = v1alpha1.ReasonStaging, "staging "+pp.target
	}
}

func checkTargetOffered(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	if slices.Contains(pp.in.Nodes[c.i].BRN.Status.Agent.AvailableVersions, pp.target) {
		return false, "", ""
	}
	return true, v1alpha1.ReasonTargetNotOffered, "the host is not offered " + pp.target
}

func checkPaused(pp *policyPass, _ *candidate) (bool, v1alpha1.Reason, string) {
	return pp.spec.Paused, v1alpha1.ReasonPolicyPaused, "the policy is paused"
}

func checkHalted(pp *policyPass, _ *candidate) (bool, v1alpha1.Reason, string) {
	if limit := pp.spec.MaxFailedNodesOrDefault(); pp.failed >= limit {
		return true, v1alpha1.ReasonRolloutHalted,
			fmt.Sprintf("%d nodes failed for %s (failurePolicy.maxFailedNodes %d): resume the rollout or change the version", pp.failed, pp.target, limit)
	}
	return false, "", ""
}

func checkBackoff(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	st := &pp.in.Nodes[c.i].BRN.Status
	if st.FailedTime == nil {
		return false, "", ""
	}
	ends := st.FailedTime.Add(RetryBackoff(st.FailureCount))
	if !pp.in.Now.Before(ends) {
		return false, "", ""
	}
	pp.wakeAt(ends)
	return true, v1alpha1.ReasonBackoff, fmt.Sprintf("failed %d times; retry after %s", st.FailureCount, formatTime(ends))
}

func checkWave(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	w := &pp.waves[c.wave]
	return !w.open, w.blockReason, w.blockMessage
}

func checkControllerLast(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	w := &pp.waves[c.wave]
	if !c.last || c.staged || w.updated+w.failed+1 >= w.nodes {
		return false, "", ""
	}
	return true, v1alpha1.ReasonControllerNodeLast, "the controller's node is updated last in its wave"
}

func checkStagingLimit(pp *policyPass, _ *candidate) (bool, v1alpha1.Reason, string) {
	if pp.staging < pp.stagingLimit {
		return false, "", ""
	}
	return true, v1alpha1.ReasonStagingLimit, fmt.Sprintf("%d nodes staging (staging.maxConcurrent %d)", pp.staging, pp.stagingLimit)
}

func checkSchedule(pp *policyPass, _ *candidate) (bool, v1alpha1.Reason, string) {
	if !pp.badWindows {
		return false, "", ""
	}
	return true, v1alpha1.ReasonInvalidSchedule, "invalid maintenance window: " + strings.Join(pp.invalid, "; ")
}

func checkWindow(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	w := &pp.waves[c.wave]
	if w.windowOpen {
		if pp.spec.FinishWithinWindow && !w.windowChange.IsZero() && pp.in.Now.Add(pp.perNode).After(w.windowChange) {
			return true, v1alpha1.ReasonWindowTooShort, fmt.Sprintf("an update is expected to take %s and the window closes at %s: waiting for the next window",
				pp.perNode.Round(time.Second), formatTime(w.windowChange))
		}
		return false, "", ""
	}
	if w.nextOpen.IsZero() {
		return true, v1alpha1.ReasonOutsideWindow, "no maintenance window opens again"
	}
	return true, v1alpha1.ReasonOutsideWindow, "next maintenance window opens " + formatTime(w.nextOpen)
}

// self is 1 when the candidate already counts as unavailable (cordoned or not Ready, by
// someone else): admitting it takes no further slot, so it is not counted against itself.
func (pp *policyPass) self(c *candidate) int {
	if pp.views[c.i].down {
		return 1
	}
	return 0
}

func checkBudget(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	if pp.unavail-pp.self(c) < pp.maxUnavailable {
		return false, "", ""
	}
	return true, v1alpha1.ReasonBudgetExhausted, fmt.Sprintf("%d of %d nodes may be unavailable", pp.unavail, pp.maxUnavailable)
}

func checkZoneBudget(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	zone := pp.views[c.i].zone
	if used, limit := pp.zoneUnavail[zone]-pp.self(c), pp.zoneLimit[zone]; used >= limit {
		return true, v1alpha1.ReasonZoneBudgetExhausted, fmt.Sprintf("zone %q: %d of %d nodes may be unavailable", zone, used, limit)
	}
	return false, "", ""
}

func checkWaveBudget(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	if w := &pp.waves[c.wave]; w.unavailable-pp.self(c) >= w.limit {
		return true, v1alpha1.ReasonWaveBudgetExhausted, fmt.Sprintf("wave %s: %d of %d nodes may be unavailable", w.name, w.unavailable, w.limit)
	}
	return false, "", ""
}

func checkPauseBetweenNodes(pp *policyPass, c *candidate) (bool, v1alpha1.Reason, string) {
	if pp.unavail-pp.self(c)+pp.cooling < pp.maxUnavailable {
		return false, "", ""
	}
	pp.wakeAt(pp.coolingEnds)
	return true, v1alpha1.ReasonPauseBetweenNodes, "a slot is free again at " + formatTime(pp.coolingEnds)
}
