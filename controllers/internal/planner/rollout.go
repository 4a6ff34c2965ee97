package planner

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// policyPass is one policy's share of a pass: its parsed spec, the nodes it governs, and the
// counters admissions consume.
type policyPass struct {
	in     *Input
	views  []nodeView
	policy *v1alpha1.UpdatePolicy
	spec   *v1alpha1.UpdatePolicySpec

	selector   labels.Selector // nil when invalid: governs nothing
	invalid    []string        // why the policy fails closed
	badWindows bool            // an invalid schedule or time zone: nothing enters Draining

	members []int // indices into Input.Nodes
	// held are the nodes disrupted under the policy that it no longer governs: charged to
	// its budgets until they are back (see carryOn).
	held   []int
	target string
	source v1alpha1.TargetSource // where target came from
	runs   string                // the message of a node running target: one string for all
	waves  []waveState
	waveOf []int // wave index of each member, parallel to members

	maxUnavailable int
	zoneLimit      map[string]int
	zoneUnavail    map[string]int
	unavail        int       // governed nodes consuming the budget
	cooling        int       // slots freed less than pauseBetweenNodes ago
	coolingEnds    time.Time // when the first of them is usable again
	staging        int
	stagingLimit   int
	failed         int
	perNode        time.Duration // how long a disruption is expected to last

	report PolicyReport
	wake   time.Time // when an admission may change by time alone
	// flightWake is the earliest deadline or stableFor of a node in flight; unlike wake it
	// holds while the policy is paused or halted, since nodes in flight finish.
	flightWake time.Time
	poll       bool
}

// nodeClass is where a governed node stands before admissions.
type nodeClass int

const (
	classWaiting   nodeClass = iota // needs nothing now or cannot move (no agent, no target)
	classCandidate                  // Pending: may be admitted to Staging
	classStaged                     // Staged for the target: may be admitted to Draining
	classInFlight                   // Staging, or an Unavailable phase: kept
	classUpdated                    // runs the target
	classFailed                     // Failed for the target, not retried
)

func newPolicyPass(in *Input, p *v1alpha1.UpdatePolicy) *policyPass {
	pp := &policyPass{in: in, policy: p, spec: &p.Spec}
	sel, err := selectorFor(p.Spec.NodeSelector)
	if err != nil {
		pp.invalid = append(pp.invalid, fmt.Sprintf("nodeSelector: %v", err))
	} else {
		pp.selector = sel
	}
	pp.report.Paused, pp.report.DryRun = p.Spec.Paused, p.Spec.DryRun
	return pp
}

// plan decides every governed node and fills the report.
func (pp *policyPass) plan(out []NodeDecision) {
	pp.target, pp.source = pp.resolveTarget()
	pp.runs = "runs " + pp.target
	pp.parseWindows()
	pp.assignWaves()
	classes := make([]nodeClass, len(pp.members))
	for k, i := range pp.members {
		classes[k] = pp.classify(k, i, &out[i])
	}
	// Nodes in flight move first, so that a failure counts against the failure budget
	// before anything is admitted; their slots are counted by the phase they were seen in.
	pp.advanceInFlight(classes, out)
	pp.count(classes, out)
	pp.completeWaves(classes)
	pp.perNode = pp.expectedDisruption()
	pp.admit(classes, out)
	if pp.spec.DryRun {
		pp.freezeActions(classes, out)
	}
	pp.buildReport(out)
	if pp.spec.Paused || pp.report.Halted {
		pp.wake = time.Time{} // only a person can move the rollout on
	}
}

// freezeActions keeps the spec of every governed node not in flight as it is: a dry run
// starts nothing (nodes in flight finish).
func (pp *policyPass) freezeActions(classes []nodeClass, out []NodeDecision) {
	for k, i := range pp.members {
		if classes[k] == classInFlight {
			continue
		}
		if brn := pp.in.Nodes[i].BRN; brn != nil && brn.Spec.Action != "" {
			out[i].Action, out[i].TargetVersion = brn.Spec.Action, brn.Spec.TargetVersion
		}
	}
}

// agent returns a node's agent report, nil when there is none yet.
func (pp *policyPass) agent(i int) *v1alpha1.AgentStatus {
	return pp.views[i].agent
}

// classify gives a governed node its decision before admissions.
func (pp *policyPass) classify(k, i int, d *NodeDecision) nodeClass {
	brn := pp.in.Nodes[i].BRN
	d.Policy = pp.policy.Name
	d.Phase, d.Action = v1alpha1.PhasePending, v1alpha1.ActionNone
	d.TargetVersion, d.RolloutTarget = pp.target, pp.target
	d.Wave = pp.waves[pp.waveOf[k]].name
	switch {
	case brn != nil && brn.Status.Phase.Unavailable():
		pp.keep(d, brn)
		return classInFlight
	case pp.agent(i) == nil:
		d.Reason, d.Message = v1alpha1.ReasonAwaitingAgent, "the agent has not reported this host yet"
		return classWaiting
	case pp.target == "":
		idle(d, v1alpha1.ReasonUpToDate, "no version is offered to the governed hosts")
		d.TargetVersion, d.RolloutTarget = "", ""
		return classWaiting
	}
	return pp.classifyByStatus(brn, d)
}

// classifyByStatus classifies a node with an agent report by where its status says it is.
func (pp *policyPass) classifyByStatus(brn *v1alpha1.BottlerocketNode, d *NodeDecision) nodeClass {
	st := &brn.Status
	switch {
	case st.Phase == v1alpha1.PhaseStaged && st.RolloutTarget == pp.target && !hasStaged(st.Agent, pp.target):
		return classCandidate // the host booted since and lost the staged image: it stages again
	case (st.Phase == v1alpha1.PhaseStaging || st.Phase == v1alpha1.PhaseStaged) && st.RolloutTarget == pp.target:
		pp.keep(d, brn)
		d.Action = v1alpha1.ActionStage
		if st.Phase == v1alpha1.PhaseStaged {
			return classStaged
		}
		return classInFlight
	case st.Phase == v1alpha1.PhaseFailed && st.FailedTarget == pp.target && !retryRequested(brn):
		d.Phase, d.Reason, d.Message = v1alpha1.PhaseFailed, st.Reason, st.Message
		if d.Reason == "" {
			d.Reason = v1alpha1.ReasonFailedForTarget
		}
		return classFailed
	case st.Agent.CurrentVersion == pp.target:
		d.Phase, d.Reason, d.Message = v1alpha1.PhaseUpdated, v1alpha1.ReasonUpToDate, pp.runs
		return classUpdated
	}
	return classCandidate
}

// keep carries a node in flight over unchanged.
func (pp *policyPass) keep(d *NodeDecision, brn *v1alpha1.BottlerocketNode) {
	st := &brn.Status
	d.Phase, d.Action, d.TargetVersion = st.Phase, brn.Spec.Action, brn.Spec.TargetVersion
	d.Reason, d.Message = st.Reason, st.Message
	if st.RolloutTarget != pp.target {
		d.Wave, d.RolloutTarget = st.Wave, st.RolloutTarget // an earlier rollout's node finishing
	}
}

// hasStaged reports whether the agent reports target staged on the host (or running).
func hasStaged(a *v1alpha1.AgentStatus, target string) bool {
	return a != nil && (a.StagedVersion == target || a.CurrentVersion == target)
}

// retryRequested reports whether a person asked to retry a Failed node.
func retryRequested(brn *v1alpha1.BottlerocketNode) bool {
	_, ok := brn.Annotations[v1alpha1.AnnotationRetry]
	return ok
}

// unavailable reports whether governed node i consumes the budget: seen in or moving to an
// Unavailable phase, cordoned, or not Ready, whoever caused it.
func (pp *policyPass) unavailable(i int, d *NodeDecision) bool {
	return d.From.Unavailable() || d.Phase.Unavailable() || pp.views[i].down
}

// count resolves the budgets and counts what consumes them.
func (pp *policyPass) count(classes []nodeClass, out []NodeDecision) {
	spec := pp.spec
	governed := len(pp.members)
	var err error
	if pp.maxUnavailable, err = spec.MaxUnavailableOf(governed); err != nil {
		pp.invalid = append(pp.invalid, err.Error())
	}
	if pp.stagingLimit, err = spec.StagingMaxConcurrentOf(governed); err != nil {
		pp.invalid = append(pp.invalid, err.Error())
	}
	zoneNodes := map[string]int{}
	pp.zoneUnavail = map[string]int{}
	for k, i := range pp.members {
		zone := pp.views[i].zone
		zoneNodes[zone]++
		down := pp.unavailable(i, &out[i])
		if down {
			pp.unavail++
			pp.zoneUnavail[zone]++
			pp.waves[pp.waveOf[k]].unavailable++
		}
		pp.countClass(classes[k], i, down, &out[i])
	}
	pp.countHeld()
	pp.countDeleted()
	pp.report.Unavailable = pp.unavail
	pp.zoneLimit = make(map[string]int, len(zoneNodes))
	for zone, n := range zoneNodes {
		if pp.zoneLimit[zone], err = spec.MaxUnavailablePerZoneOf(n); err != nil {
			pp.invalid = append(pp.invalid, err.Error())
			break
		}
	}
	pp.waveLimits()
}

// countClass counts what node i's class consumes: a slot cooling after its update, a failure
// against the budget, a staging slot.
func (pp *policyPass) countClass(class nodeClass, i int, down bool, d *NodeDecision) {
	brn := pp.in.Nodes[i].BRN
	switch class {
	case classUpdated:
		pause := pp.spec.PauseBetweenNodesOrDefault()
		if !down && brn.Status.UpdatedTime != nil && pause > 0 {
			if ends := brn.Status.UpdatedTime.Add(pause); pp.in.Now.Before(ends) {
				pp.cooling++
				pp.coolingEnds = earliest(pp.coolingEnds, ends)
			}
		}
	case classFailed:
		if pp.countsAsFailure(brn) {
			pp.failed++
		}
	case classInFlight:
		if d.From == v1alpha1.PhaseStaging {
			pp.staging++
		}
	}
}

// waveLimits resolves each wave's maxUnavailable (the implicit wave has none of its own).
func (pp *policyPass) waveLimits() {
	for k := range pp.waves {
		w := &pp.waves[k]
		if w.spec == nil {
			w.limit = v1alpha1.Unlimited
			continue
		}
		var err error
		if w.limit, err = w.spec.MaxUnavailableOf(w.nodes); err != nil {
			pp.invalid = append(pp.invalid, err.Error())
		}
	}
}

// countsAsFailure reports whether a Failed node counts toward the failure budget: it failed
// for the target after the last resume.
func (pp *policyPass) countsAsFailure(brn *v1alpha1.BottlerocketNode) bool {
	resumed := pp.policy.Status.ResumeTime
	return resumed == nil || brn.Status.FailedTime == nil || brn.Status.FailedTime.After(resumed.Time)
}

// countDeleted records the nodes deleted mid-update under the policy, and counts those
// recorded (status.deletedNodes) toward the failure budget: those of this rollout's target
// deleted after the last resume.
func (pp *policyPass) countDeleted() {
	pp.report.DeletedNodes = recordDeleted(pp.policy, pp.in.Deleted, pp.in.Now)
	resumed := pp.policy.Status.ResumeTime
	for _, d := range pp.report.DeletedNodes {
		if d.TargetVersion == pp.target && pp.target != "" && (resumed == nil || d.Time.After(resumed.Time)) {
			pp.failed++
		}
	}
}

// RetryBackoff is how long a node that failed failures times in a row waits before a retry:
// 2^failures minutes, at most 24 hours.
func RetryBackoff(failures int32) time.Duration {
	const maxBackoff = 24 * time.Hour
	if failures <= 0 {
		return 0
	}
	if failures > 11 { // 2^11 minutes already exceed a day
		return maxBackoff
	}
	return min(time.Duration(1<<failures)*time.Minute, maxBackoff)
}
