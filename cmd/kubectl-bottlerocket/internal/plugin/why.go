package plugin

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// Facts are the objects an explanation of one node is derived from: its BottlerocketNode, the
// UpdatePolicy named in its spec.policy (nil when none, or when it is gone) and the
// BottlerocketNodes of that policy (the node itself included).
type Facts struct {
	Node   *v1alpha1.BottlerocketNode
	Policy *v1alpha1.UpdatePolicy
	Peers  []v1alpha1.BottlerocketNode
	// Now is the injected clock's time; Location the zone times are shown in.
	Now      time.Time
	Location *time.Location
}

// Explanation is what `why` prints about one node.
type Explanation struct {
	Node    string
	Policy  string
	Phase   v1alpha1.NodePhase
	Reason  v1alpha1.Reason
	Message string
	Wave    string
	Target  string
	// Since is when the node entered its phase (zero when unknown).
	Since time.Time
	// Unblock says what lets the node move on, in words a person acts on.
	Unblock string
}

// unblocker says what moves a node waiting or held for one reason.
type unblocker func(f *Facts) string

// unblockers by reason; a reason not listed falls back to the node's own message.
var unblockers = map[v1alpha1.Reason]unblocker{
	v1alpha1.ReasonPolicyPaused: func(f *Facts) string {
		return "paused: run kubectl bottlerocket resume " + f.policyName()
	},
	v1alpha1.ReasonRolloutHalted:   unblockHalted,
	v1alpha1.ReasonDryRun:          unblockDryRun,
	v1alpha1.ReasonOutsideWindow:   unblockWindow,
	v1alpha1.ReasonInvalidSchedule: unblockWindow,
	v1alpha1.ReasonWindowTooShort: func(f *Facts) string {
		return f.Node.Status.Message + " (spec.finishWithinWindow); it starts in a window long enough for it, or set finishWithinWindow to false"
	},
	v1alpha1.ReasonSoaking:              unblockSoak,
	v1alpha1.ReasonWaitingForWave:       unblockWave,
	v1alpha1.ReasonBudgetExhausted:      unblockBudget,
	v1alpha1.ReasonWaitingForDisruption: unblockBudget,
	v1alpha1.ReasonWaveBudgetExhausted:  unblockWaveBudget,
	v1alpha1.ReasonZoneBudgetExhausted: func(f *Facts) string {
		return f.Node.Status.Message + ": it starts when a node of that zone is back"
	},
	v1alpha1.ReasonPauseBetweenNodes: unblockPauseBetween,
	v1alpha1.ReasonStagingLimit:      unblockStagingLimit,
	v1alpha1.ReasonBackoff: func(f *Facts) string {
		return "it retries by itself: " + f.Node.Status.Message
	},
	v1alpha1.ReasonExcluded: func(f *Facts) string {
		return "excluded: run kubectl bottlerocket include " + f.Node.Name
	},
	v1alpha1.ReasonNotGoverned: func(*Facts) string {
		return "no UpdatePolicy selects this node: make a policy's nodeSelector select its Node's labels"
	},
	v1alpha1.ReasonPolicyConflict: func(f *Facts) string {
		return f.Node.Status.Message + ": change the policies' nodeSelectors so that one selects this node"
	},
	v1alpha1.ReasonAwaitingAgent: func(f *Facts) string {
		return "the agent has not reported the host yet: check the agent pod on node " + f.Node.Name
	},
	v1alpha1.ReasonTargetNotOffered: unblockNotOffered,
	v1alpha1.ReasonControllerNodeLast: func(f *Facts) string {
		return "the controller runs on this node: it goes after the other nodes of wave " + f.Node.Status.Wave
	},
	v1alpha1.ReasonUnsupportedHost: func(*Facts) string {
		return "the host is older than Bottlerocket 0.4.1: update it by hand once; the operator takes over then"
	},
	v1alpha1.ReasonEvictionBlocked: unblockDrain,
	v1alpha1.ReasonMultiplePDBs:    unblockDrain,
	v1alpha1.ReasonDrainRefused:    unblockDrain,
	v1alpha1.ReasonNoCapacity:      unblockDrain,
	v1alpha1.ReasonEvicting:        unblockDrain,
	v1alpha1.ReasonStabilizing:     unblockStable,
}

// Explain derives what `why` says about a node from the facts alone.
func Explain(f *Facts) Explanation {
	st := &f.Node.Status
	e := Explanation{
		Node: f.Node.Name, Policy: f.Node.Spec.Policy, Phase: st.Phase, Reason: st.Reason,
		Message: st.Message, Wave: st.Wave, Target: f.Node.Spec.TargetVersion,
	}
	if st.PhaseStartTime != nil {
		e.Since = st.PhaseStartTime.Time
	}
	if e.Target == "" && f.Policy != nil {
		e.Target = f.Policy.Status.TargetVersion
	}
	e.Unblock = unblock(f)
	return e
}

// unblock picks what to say by phase first (Failed, in flight, done), then by reason.
func unblock(f *Facts) string {
	st := &f.Node.Status
	switch st.Phase {
	case v1alpha1.PhaseFailed:
		return unblockFailed(f)
	case v1alpha1.PhaseUpdated:
		return "nothing: it runs " + orUnknown(f.targetVersion())
	case v1alpha1.PhaseRebooting, v1alpha1.PhaseVerifying:
		return unblockReboot(f)
	case v1alpha1.PhaseDraining, v1alpha1.PhaseStabilizing:
		if u, ok := unblockers[st.Reason]; ok {
			return u(f)
		}
		return unblockReboot(f)
	case v1alpha1.PhaseStaging:
		return "nothing: the agent is downloading " + orUnknown(f.Node.Spec.TargetVersion) + "; it moves on once the host reports it staged"
	}
	if st.Reason == v1alpha1.ReasonUpToDate {
		return "nothing: " + orUnknown(st.Message)
	}
	if u, ok := unblockers[st.Reason]; ok && (f.Policy != nil || !needsPolicy(st.Reason)) {
		return u(f)
	}
	if f.Policy == nil && f.Node.Spec.Policy != "" {
		return "its policy " + f.Node.Spec.Policy + " is gone: " + orUnknown(st.Message)
	}
	return orUnknown(st.Message)
}

// needsPolicy reports whether the reason's explanation reads the policy.
func needsPolicy(r v1alpha1.Reason) bool {
	switch r {
	case v1alpha1.ReasonExcluded, v1alpha1.ReasonNotGoverned, v1alpha1.ReasonPolicyConflict,
		v1alpha1.ReasonAwaitingAgent, v1alpha1.ReasonUnsupportedHost, v1alpha1.ReasonBackoff,
		v1alpha1.ReasonZoneBudgetExhausted, v1alpha1.ReasonControllerNodeLast:
		return false
	}
	return true
}

func orUnknown(s string) string {
	if s == "" {
		return "(the controller gives no message)"
	}
	return s
}

func (f *Facts) policyName() string {
	if f.Policy != nil {
		return f.Policy.Name
	}
	return f.Node.Spec.Policy
}

func (f *Facts) targetVersion() string {
	if f.Policy != nil && f.Policy.Status.TargetVersion != "" {
		return f.Policy.Status.TargetVersion
	}
	return f.Node.Spec.TargetVersion
}

func (f *Facts) at(t time.Time) string { return at(t, f.Now, f.Location, "") }

func unblockFailed(f *Facts) string {
	st := &f.Node.Status
	s := fmt.Sprintf("it failed for %s (%s)", orUnknown(st.FailedTarget), st.Reason)
	if st.FailedTarget != "" && f.Policy != nil && st.FailedTarget != f.Policy.Status.TargetVersion {
		return s + "; the rollout now targets " + f.Policy.Status.TargetVersion + ", which it is tried for by itself"
	}
	return s + "; it is not retried for that version until you run kubectl bottlerocket retry " + f.Node.Name
}

func unblockHalted(f *Facts) string {
	p := f.Policy
	failed := 0
	for i := range f.Peers {
		if f.Peers[i].Status.Phase == v1alpha1.PhaseFailed {
			failed++
		}
	}
	return fmt.Sprintf("the rollout halted: %d nodes failed, failurePolicy.maxFailedNodes %d: run kubectl bottlerocket resume %s (or retry the failed nodes, or change spec.version)",
		failed, p.Spec.MaxFailedNodesOrDefault(), p.Name)
}

func unblockDryRun(f *Facts) string {
	return fmt.Sprintf("policy %s is in dry-run (%s): set spec.dryRun to false to let it act", f.policyName(), f.Node.Status.Message)
}

func unblockWindow(f *Facts) string {
	w := windowsAt(&f.Policy.Spec, f.Node.Status.Wave, f.Now)
	switch {
	case w.err != nil:
		return "a maintenance window is invalid, so nothing starts: fix spec.maintenanceWindows (" + w.err.Error() + ")"
	case w.open:
		return "a maintenance window is open now: the controller starts it at its next pass"
	case w.change.IsZero():
		return "no maintenance window of this wave opens again: change spec.maintenanceWindows"
	}
	return "the window opens " + at(w.change, f.Now, w.zone, w.zoneName)
}

// waveIndex returns the position of the node's wave in the policy's status.waves (-1: none).
func (f *Facts) waveIndex() int {
	for i, w := range f.Policy.Status.Waves {
		if w.Name == f.Node.Status.Wave {
			return i
		}
	}
	return -1
}

// soakOf returns a wave's soakTime from the spec (0 for the implicit last wave).
func soakOf(spec *v1alpha1.UpdatePolicySpec, name string) time.Duration {
	for i := range spec.Waves {
		if spec.Waves[i].Name == name {
			return spec.Waves[i].SoakTimeOrDefault()
		}
	}
	return 0
}

func unblockSoak(f *Facts) string {
	waves := f.Policy.Status.Waves
	for _, w := range waves[:max(f.waveIndex(), 0)] {
		if w.CompletionTime == nil {
			continue
		}
		if ends := w.CompletionTime.Add(soakOf(&f.Policy.Spec, w.Name)); ends.After(f.Now) {
			return fmt.Sprintf("wave %s soaks until %s", w.Name, f.at(ends))
		}
	}
	return "an earlier wave soaks: " + orUnknown(f.Node.Status.Message)
}

func unblockWave(f *Facts) string {
	for _, w := range f.Policy.Status.Waves[:max(f.waveIndex(), 0)] {
		if w.CompletionTime == nil {
			return fmt.Sprintf("wave %s must finish first: %d of %d nodes Updated or Failed", w.Name, w.Updated+w.Failed, w.Nodes)
		}
	}
	return "an earlier wave must finish first: " + orUnknown(f.Node.Status.Message)
}

// down lists the policy's nodes that hold a disruption slot (in the wave, when wave is set).
func (f *Facts) down(wave string) []string {
	var names []string
	for i := range f.Peers {
		n := &f.Peers[i]
		if n.Status.Phase.Unavailable() && (wave == "" || n.Status.Wave == wave) {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	return names
}

func unblockBudget(f *Facts) string {
	st := &f.Policy.Status
	budget, err := f.Policy.Spec.MaxUnavailableOf(int(st.Nodes.Total))
	if err != nil {
		return "maxUnavailable is invalid: " + err.Error()
	}
	unavailable := max(int(st.Unavailable), len(f.down("")))
	if budget == 0 {
		return "maxUnavailable is 0: nothing may be disrupted; raise spec.maxUnavailable"
	}
	if unavailable < budget {
		return fmt.Sprintf("%d of %d nodes down: a slot is free, the controller starts it at its next pass", unavailable, budget)
	}
	return fmt.Sprintf("%d nodes already down, budget %d%s: it starts when one of them is done",
		unavailable, budget, names(f.down(""), 3))
}

func unblockWaveBudget(f *Facts) string {
	wave := f.Node.Status.Wave
	size := 0
	for i := range f.Peers {
		if f.Peers[i].Status.Wave == wave {
			size++
		}
	}
	for i := range f.Policy.Spec.Waves {
		if w := &f.Policy.Spec.Waves[i]; w.Name == wave {
			limit, err := w.MaxUnavailableOf(size)
			if err != nil {
				return err.Error()
			}
			down := f.down(wave)
			return fmt.Sprintf("%d nodes of wave %s already down, wave budget %d%s: it starts when one of them is done",
				len(down), wave, limit, names(down, 3))
		}
	}
	return orUnknown(f.Node.Status.Message)
}

func unblockPauseBetween(f *Facts) string {
	pause := f.Policy.Spec.PauseBetweenNodesOrDefault()
	var free time.Time
	for i := range f.Peers {
		if t := f.Peers[i].Status.UpdatedTime; t != nil {
			if ends := t.Add(pause); ends.After(f.Now) && (free.IsZero() || ends.Before(free)) {
				free = ends
			}
		}
	}
	if free.IsZero() {
		return "the pause between nodes is over: the controller starts it at its next pass"
	}
	return fmt.Sprintf("pauseBetweenNodes %s: a slot is free again at %s", pause, f.at(free))
}

func unblockStagingLimit(f *Facts) string {
	var staging []string
	for i := range f.Peers {
		if f.Peers[i].Status.Phase == v1alpha1.PhaseStaging {
			staging = append(staging, f.Peers[i].Name)
		}
	}
	sort.Strings(staging)
	limit, _ := f.Policy.Spec.StagingMaxConcurrentOf(int(f.Policy.Status.Nodes.Total))
	return fmt.Sprintf("%d nodes staging, staging.maxConcurrent %d%s: it stages when one of them is staged",
		len(staging), limit, names(staging, 3))
}

func unblockNotOffered(f *Facts) string {
	offered := "nothing"
	if a := f.Node.Status.Agent; a != nil && len(a.AvailableVersions) > 0 {
		offered = strings.Join(a.AvailableVersions, ", ")
	}
	return fmt.Sprintf("the host's update repository does not offer %s (it offers %s): it waits until the repository does, or change spec.version",
		orUnknown(f.targetVersion()), offered)
}

// unblockDrain: a drain held up ends at drain.timeout, measured from the phase's start.
func unblockDrain(f *Facts) string {
	st := &f.Node.Status
	s := orUnknown(st.Message)
	if f.Policy == nil || st.PhaseStartTime == nil || st.Phase != v1alpha1.PhaseDraining {
		return s
	}
	d := f.Policy.Spec.Drain
	timeout := 15 * time.Minute
	if d.Timeout != nil {
		timeout = d.Timeout.Duration
	}
	action := "the node is uncordoned and Failed (onTimeout Abort)"
	if d.OnTimeout == v1alpha1.DrainTimeoutForce {
		action = "the node reboots with the pods left (onTimeout Force)"
	}
	return fmt.Sprintf("%s; at drain.timeout, %s, %s", s, f.at(st.PhaseStartTime.Add(timeout)), action)
}

// unblockReboot: the host must be back, on the target and healthy, by health.readyTimeout.
func unblockReboot(f *Facts) string {
	st := &f.Node.Status
	s := orUnknown(st.Message)
	if f.Policy == nil || st.PhaseStartTime == nil {
		return s
	}
	timeout := 10 * time.Minute
	if t := f.Policy.Spec.Health.ReadyTimeout; t != nil {
		timeout = t.Duration
	}
	return fmt.Sprintf("%s; it must be Ready on %s by %s (health.readyTimeout) or it fails",
		s, orUnknown(f.Node.Spec.TargetVersion), f.at(st.PhaseStartTime.Add(timeout)))
}

func unblockStable(f *Facts) string {
	st := &f.Node.Status
	if f.Policy == nil || st.HealthySince == nil {
		return orUnknown(st.Message)
	}
	stable := time.Minute
	if s := f.Policy.Spec.Health.StableFor; s != nil {
		stable = s.Duration
	}
	return fmt.Sprintf("healthy since %s; Updated at %s if it stays healthy (health.stableFor %s)",
		when(st.HealthySince.Time, f.Now, f.Location, ""), f.at(st.HealthySince.Add(stable)), stable)
}

// names renders up to n names as " (a, b, c, …)", or nothing.
func names(all []string, n int) string {
	if len(all) == 0 {
		return ""
	}
	return " (" + list(all, n) + ")"
}

// list renders up to n names as "a, b, c, …".
func list(all []string, n int) string {
	if len(all) > n {
		return strings.Join(all[:n], ", ") + ", …"
	}
	return strings.Join(all, ", ")
}
