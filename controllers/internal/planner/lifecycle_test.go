package planner

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

const target = "1.21.0"

// flying is node "a" in phase since elapsed before t0, on its way to target, under a policy
// with the given drain and health rules, with the evidence gathered this pass.
type flying struct {
	phase   v1alpha1.NodePhase
	elapsed time.Duration
	drain   v1alpha1.DrainSpec
	health  v1alpha1.HealthSpec
	node    func(*NodeState)
	ev      *Evidence
}

func (f flying) input() Input {
	n := at(h("a"), f.phase, target)
	n.BRN.Status.PhaseStartTime = mtime(t0.Add(-f.elapsed))
	if f.phase.Unavailable() {
		n.Node.Spec.Unschedulable = true
	}
	if f.node != nil {
		f.node(&n)
	}
	n.Evidence = f.ev
	p := withSpec(func(s *v1alpha1.UpdatePolicySpec) { s.Drain, s.Health = f.drain, f.health })
	in := in(one(p), n, h("spare"))
	in.SchedulableNodes = 1
	return in
}

// Ways the world can look.
func (f flying) with(mods ...func(*NodeState)) flying {
	f.node = func(n *NodeState) {
		for _, m := range mods {
			m(n)
		}
	}
	return f
}

func staged(ok bool) func(*NodeState) {
	return func(n *NodeState) {
		res := v1alpha1.ActionSucceeded
		if !ok {
			res = v1alpha1.ActionFailed
		}
		n.BRN.Status.Agent.LastAction = &v1alpha1.AgentAction{Action: v1alpha1.ActionStage, TargetVersion: target, Result: res, Message: "download failed"}
		if ok {
			n.BRN.Status.Agent.StagedVersion = target
		}
	}
}

// rebootStarted says the controller asked for the reboot ago before now.
func rebootStarted(ago time.Duration) func(*NodeState) {
	return func(n *NodeState) { n.BRN.Status.RebootStartTime = mtime(t0.Add(-ago)) }
}

func rebootedTo(version string) func(*NodeState) {
	return func(n *NodeState) {
		a := n.BRN.Status.Agent
		n.BRN.Spec.Action = v1alpha1.ActionReboot
		a.RebootRecord = &v1alpha1.RebootRecord{BootID: "boot-1", FromVersion: "1.20.0", ToVersion: target}
		a.BootID, a.CurrentVersion = "boot-2", version
	}
}

func fellBack(n *NodeState) {
	rebootedTo("1.20.0")(n)
	n.BRN.Status.Agent.LastAction = &v1alpha1.AgentAction{Action: v1alpha1.ActionReboot, TargetVersion: target,
		Result: v1alpha1.ActionFailed, Reason: v1alpha1.ReasonFallback, Message: "fell back to 1.20.0"}
}

func notReady(n *NodeState) { setReady(n.Node, false) }

func healthySince(t time.Time) func(*NodeState) {
	return func(n *NodeState) { n.BRN.Status.HealthySince = mtime(t) }
}

func evicted(pdb string) func(*NodeState) {
	return func(n *NodeState) { n.BRN.Status.EvictedPDBs = []string{pdb} }
}

func draining(remaining int) *Evidence { return &Evidence{Drain: &DrainEvidence{Remaining: remaining}} }

// refused is a drain left with two pods, one of which it may not evict.
func refused() *Evidence {
	return &Evidence{Drain: &DrainEvidence{Remaining: 2, Blocked: v1alpha1.ReasonDrainRefused,
		Message: "pod apps/db is not evicted: it has emptyDir data and drain.deleteEmptyDirData is false"}}
}

func pods(ready bool, extra ...corev1.Pod) *Evidence {
	return &Evidence{PodsRead: true, Pods: append([]corev1.Pod{daemonPod("a", ready), workloadPod("a", ready)}, extra...)}
}

func budget(healthy, desired int32) *Evidence {
	ev := pods(true)
	ev.PDBs = map[string]*policyv1.PodDisruptionBudget{"apps/web": {Status: policyv1.PodDisruptionBudgetStatus{CurrentHealthy: healthy, DesiredHealthy: desired}}}
	return ev
}

// finished puts a pod in phase (a Job's pod that failed or succeeded, one not started yet),
// under another name.
func finished(p corev1.Pod, phase corev1.PodPhase) corev1.Pod {
	p.Name += "-" + string(phase)
	p.Status.Phase = phase
	return p
}

// terminating marks a pod as being deleted, under another name.
func terminating(p corev1.Pod) corev1.Pod {
	p.Name += "-terminating"
	p.DeletionTimestamp = mtime(t0.Add(-time.Minute))
	return p
}

// TestDeadlines drives each in-flight phase to either side of its deadline, with no API
// server: staging (1 h), drain.timeout with onTimeout Abort and Force, health.readyTimeout
// while rebooting, verifying and stabilizing, and health.stableFor.
func TestDeadlines(t *testing.T) {
	abort := v1alpha1.DrainSpec{Timeout: dur(5 * time.Minute), OnTimeout: v1alpha1.DrainTimeoutAbort}
	force := v1alpha1.DrainSpec{Timeout: dur(5 * time.Minute), OnTimeout: v1alpha1.DrainTimeoutForce}
	health := v1alpha1.HealthSpec{ReadyTimeout: dur(10 * time.Minute), StableFor: dur(2 * time.Minute)}
	blocking := health
	blocking.BlockingPodSelector = selector("app", "batch")
	batch := workloadPod("a", true)
	batch.Name, batch.Labels = "batch-1", map[string]string{"app": "batch"}
	tests := []struct {
		name string
		f    flying
		want want
		// wake is when the node needs the next look (zero: none from this node); poll whether
		// it depends on something unwatched.
		wake time.Duration
		poll bool
	}{
		{"staging: downloading within the hour", flying{phase: v1alpha1.PhaseStaging, elapsed: 59 * time.Minute},
			want{v1alpha1.PhaseStaging, v1alpha1.ReasonStaging}, time.Minute, false},
		{"staging: not staged within the hour", flying{phase: v1alpha1.PhaseStaging, elapsed: time.Hour},
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonStageTimeout}, 0, false},
		{"staging: the agent staged it", flying{phase: v1alpha1.PhaseStaging, elapsed: time.Minute}.with(staged(true)),
			want{v1alpha1.PhaseStaged, v1alpha1.ReasonWaitingForDisruption}, 0, false},
		{"staging: the agent failed", flying{phase: v1alpha1.PhaseStaging, elapsed: time.Minute}.with(staged(false)),
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonStageFailed}, 0, false},

		{"draining: pods left before drain.timeout", flying{phase: v1alpha1.PhaseDraining, elapsed: 4 * time.Minute, drain: abort, ev: draining(2)},
			want{v1alpha1.PhaseDraining, v1alpha1.ReasonEvicting}, time.Minute, true},
		{"draining: pods left at drain.timeout, onTimeout Abort", flying{phase: v1alpha1.PhaseDraining, elapsed: 5 * time.Minute, drain: abort, ev: draining(2)},
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonDrainTimeout}, 0, false},
		{"draining: pods left at drain.timeout, onTimeout Force", flying{phase: v1alpha1.PhaseDraining, elapsed: 5 * time.Minute, drain: force, ev: draining(2)},
			want{v1alpha1.PhaseRebooting, v1alpha1.ReasonWaitingForReboot}, 0, false},
		{"draining: default drain.timeout is 15 minutes", flying{phase: v1alpha1.PhaseDraining, elapsed: 14 * time.Minute, ev: draining(1)},
			want{v1alpha1.PhaseDraining, v1alpha1.ReasonEvicting}, time.Minute, true},
		{"draining: drained", flying{phase: v1alpha1.PhaseDraining, elapsed: time.Minute, drain: abort, ev: draining(0)},
			want{v1alpha1.PhaseRebooting, v1alpha1.ReasonWaitingForReboot}, 0, false},
		{"draining: a budget refuses", flying{phase: v1alpha1.PhaseDraining, elapsed: time.Minute, drain: abort,
			ev: &Evidence{Drain: &DrainEvidence{Remaining: 1, Blocked: v1alpha1.ReasonEvictionBlocked, Message: "refused"}}},
			want{v1alpha1.PhaseDraining, v1alpha1.ReasonEvictionBlocked}, 4 * time.Minute, true},

		{"draining: a pod the drain may not evict is said first", flying{phase: v1alpha1.PhaseDraining, elapsed: time.Minute, drain: abort, ev: refused()},
			want{v1alpha1.PhaseDraining, v1alpha1.ReasonDrainRefused}, 4 * time.Minute, true},
		{"draining: a pod the drain may not evict, at drain.timeout, onTimeout Abort", flying{phase: v1alpha1.PhaseDraining, elapsed: 5 * time.Minute, drain: abort, ev: refused()},
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonDrainTimeout}, 0, false},
		{"draining: the pods could not be listed: not drained", flying{phase: v1alpha1.PhaseDraining, elapsed: time.Minute, drain: abort,
			ev: &Evidence{Drain: &DrainEvidence{Incomplete: true, Blocked: v1alpha1.ReasonDrainRefused, Message: "listing the pods: the API server is away"}}},
			want{v1alpha1.PhaseDraining, v1alpha1.ReasonDrainRefused}, 4 * time.Minute, true},
		{"draining: the pods could not be listed at drain.timeout, onTimeout Force", flying{phase: v1alpha1.PhaseDraining, elapsed: 5 * time.Minute, drain: force,
			ev: &Evidence{Drain: &DrainEvidence{Incomplete: true, Blocked: v1alpha1.ReasonDrainRefused, Message: "listing the pods: the API server is away"}}},
			want{v1alpha1.PhaseRebooting, v1alpha1.ReasonWaitingForReboot}, 0, false},
		{"draining: no eviction pass at drain.timeout", flying{phase: v1alpha1.PhaseDraining, elapsed: 5 * time.Minute, drain: abort},
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonDrainTimeout}, 0, false},
		{"rebooting: not back within health.readyTimeout", flying{phase: v1alpha1.PhaseRebooting, elapsed: 9 * time.Minute, health: health},
			want{v1alpha1.PhaseRebooting, v1alpha1.ReasonWaitingForReboot}, time.Minute, false},
		{"rebooting: health.readyTimeout passed", flying{phase: v1alpha1.PhaseRebooting, elapsed: 10 * time.Minute, health: health},
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonReadyTimeout}, 0, false},
		{"rebooting: a new boot", flying{phase: v1alpha1.PhaseRebooting, elapsed: time.Minute, health: health}.with(rebootedTo(target)),
			want{v1alpha1.PhaseVerifying, v1alpha1.ReasonNodeNotReady}, 0, false},
		{"rebooting: the host fell back", flying{phase: v1alpha1.PhaseRebooting, elapsed: time.Minute, health: health}.with(fellBack),
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonFallback}, 0, false},

		{"verifying: NotReady within health.readyTimeout", flying{phase: v1alpha1.PhaseVerifying, elapsed: 9 * time.Minute, health: health}.with(rebootedTo(target), notReady),
			want{v1alpha1.PhaseVerifying, v1alpha1.ReasonNodeNotReady}, time.Minute, true},
		{"verifying: NotReady at health.readyTimeout", flying{phase: v1alpha1.PhaseVerifying, elapsed: 10 * time.Minute, health: health}.with(rebootedTo(target), notReady),
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonReadyTimeout}, 0, false},
		{"verifying: DaemonSet pods not Ready", flying{phase: v1alpha1.PhaseVerifying, elapsed: time.Minute, health: health, ev: pods(false)}.with(rebootedTo(target)),
			want{v1alpha1.PhaseVerifying, v1alpha1.ReasonDaemonSetsNotReady}, 9 * time.Minute, true},
		{"verifying: the old version came back", flying{phase: v1alpha1.PhaseVerifying, elapsed: time.Minute, health: health}.with(rebootedTo("1.20.0")),
			want{v1alpha1.PhaseVerifying, v1alpha1.ReasonWrongVersion}, 9 * time.Minute, true},
		{"verifying: verified", flying{phase: v1alpha1.PhaseVerifying, elapsed: time.Minute, health: health, ev: pods(true)}.with(rebootedTo(target)),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonStabilizing}, 0, false},
		{"verifying: a failed or terminating DaemonSet pod is not judged", flying{phase: v1alpha1.PhaseVerifying, elapsed: time.Minute, health: health,
			ev: pods(true, finished(daemonPod("a", false), corev1.PodFailed), terminating(daemonPod("a", false)))}.with(rebootedTo(target)),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonStabilizing}, 0, false},

		{"stabilizing: found healthy, held for stableFor", flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: health, ev: pods(true)}.with(rebootedTo(target)),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonStabilizing}, 2 * time.Minute, true},
		{"stabilizing: healthy for stableFor", flying{phase: v1alpha1.PhaseStabilizing, elapsed: 3 * time.Minute, health: health, ev: pods(true)}.with(rebootedTo(target), healthySince(t0.Add(-2*time.Minute))),
			want{v1alpha1.PhaseUpdated, v1alpha1.ReasonUpToDate}, 0, false},
		{"stabilizing: pods not Ready before readyTimeout + stableFor", flying{phase: v1alpha1.PhaseStabilizing, elapsed: 11 * time.Minute, health: health, ev: pods(false)}.with(rebootedTo(target)),
			want{v1alpha1.PhasePending, ""}, time.Minute, true},
		{"stabilizing: pods not Ready at readyTimeout + stableFor", flying{phase: v1alpha1.PhaseStabilizing, elapsed: 12 * time.Minute, health: health, ev: pods(false)}.with(rebootedTo(target)),
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonReadyTimeout}, 0, false},
		{"stabilizing: found healthy only after the deadline is held, not failed", flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Hour, health: health, ev: pods(true)}.with(rebootedTo(target)),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonStabilizing}, 2 * time.Minute, true},
		{"stabilizing: an evicted pod's budget is not healthy again", flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: health, ev: budget(1, 2)}.with(rebootedTo(target), evicted("apps/web")),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonPDBUnhealthy}, 11 * time.Minute, true},
		{"stabilizing: a Job's failed pod, a finished pod and a terminating pod are not judged", flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: health,
			ev: pods(true, finished(workloadPod("a", false), corev1.PodFailed), finished(workloadPod("a", false), corev1.PodSucceeded), terminating(workloadPod("a", false)))}.with(rebootedTo(target)),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonStabilizing}, 2 * time.Minute, true},
		{"stabilizing: a pod that should run and is not Ready is still judged", flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: health,
			ev: pods(true, finished(workloadPod("a", false), corev1.PodPending))}.with(rebootedTo(target)),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonPodsNotReady}, 11 * time.Minute, true},
		{"stabilizing: the host no longer runs the target (rolled back)", flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: health, ev: pods(true)}.with(rebootedTo("1.20.0")),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonWrongVersion}, 11 * time.Minute, true},
		{"stabilizing: the host no longer runs the target at readyTimeout + stableFor", flying{phase: v1alpha1.PhaseStabilizing, elapsed: 12 * time.Minute, health: health, ev: pods(true)}.with(rebootedTo("1.20.0")),
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonReadyTimeout}, 0, false},
		{"verifying: health.readyTimeout counts from the reboot, not from the phase", flying{phase: v1alpha1.PhaseVerifying, elapsed: time.Minute, health: health}.with(rebootedTo(target), notReady, rebootStarted(10*time.Minute)),
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonReadyTimeout}, 0, false},
		{"verifying: within health.readyTimeout of the reboot", flying{phase: v1alpha1.PhaseVerifying, elapsed: time.Minute, health: health}.with(rebootedTo(target), notReady, rebootStarted(4*time.Minute)),
			want{v1alpha1.PhaseVerifying, v1alpha1.ReasonNodeNotReady}, 6 * time.Minute, true},
		{"stabilizing: pods not Ready at readyTimeout + stableFor after the reboot", flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: health, ev: pods(false)}.with(rebootedTo(target), rebootStarted(12*time.Minute)),
			want{v1alpha1.PhaseFailed, v1alpha1.ReasonReadyTimeout}, 0, false},
		{"stabilizing: a blocking pod is on the node", flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: blocking, ev: pods(true, batch)}.with(rebootedTo(target)),
			want{v1alpha1.PhaseStabilizing, v1alpha1.ReasonBlockingPod}, 11 * time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Compute(tt.f.input())
			d := plan.Nodes[0]
			w := tt.want
			if w.phase == v1alpha1.PhasePending { // "stays where it is", reason as the evidence says
				w = want{tt.f.phase, v1alpha1.ReasonPodsNotReady}
			}
			if d.Phase != w.phase || d.Reason != w.reason {
				t.Errorf("%s/%s (%s), want %s/%s", d.Phase, d.Reason, d.Message, w.phase, w.reason)
			}
			var wantWake time.Time
			if tt.wake > 0 {
				wantWake = t0.Add(tt.wake)
			}
			if !plan.NextWake.Equal(wantWake) || plan.Poll != tt.poll {
				t.Errorf("next wake %s poll %v, want %s poll %v", plan.NextWake, plan.Poll, wantWake, tt.poll)
			}
		})
	}
}

// TestLifecycleRecords checks what a pass records on the node when it moves: the failure
// record, the stableFor timer, the budgets evicted from, and the Healthy condition.
func TestLifecycleRecords(t *testing.T) {
	health := v1alpha1.HealthSpec{ReadyTimeout: dur(10 * time.Minute), StableFor: dur(2 * time.Minute)}
	apply := func(f flying) (NodeDecision, *v1alpha1.BottlerocketNode) {
		in := f.input()
		d := Compute(in).Nodes[0]
		brn := in.Nodes[0].BRN.DeepCopy()
		d.ApplyTo(brn, t0)
		return d, brn
	}

	_, brn := apply(flying{phase: v1alpha1.PhaseStaging, elapsed: time.Hour})
	if st := brn.Status; st.FailedTarget != target || st.FailureCount != 1 || !st.FailedTime.Time.Equal(t0) || brn.Spec.Action != v1alpha1.ActionNone {
		t.Errorf("failed: %+v, action %s", st, brn.Spec.Action)
	}

	// The host's error text may be as long as the agent's message (4096); status.message takes 1024.
	_, brn = apply(flying{phase: v1alpha1.PhaseStaging, elapsed: time.Minute}.with(staged(false), func(n *NodeState) {
		n.BRN.Status.Agent.LastAction.Message = strings.Repeat("é", 4096)
	}))
	if n := utf8.RuneCountInString(brn.Status.Message); brn.Status.Reason != v1alpha1.ReasonStageFailed || n > 1024 {
		t.Errorf("stage failed: reason %s, message of %d characters, want at most 1024", brn.Status.Reason, n)
	}

	f := flying{phase: v1alpha1.PhaseDraining, elapsed: time.Minute, ev: &Evidence{Drain: &DrainEvidence{Remaining: 1, EvictedPDBs: []string{"apps/web"}}}}
	_, brn = apply(f.with(evicted("apps/db")))
	if got := brn.Status.EvictedPDBs; len(got) != 2 || got[0] != "apps/db" || got[1] != "apps/web" {
		t.Errorf("evicted PDBs %v, want both, sorted", got)
	}

	_, brn = apply(flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: health, ev: pods(true)}.with(rebootedTo(target)))
	c := brn.Status.Conditions
	if brn.Status.HealthySince == nil || !brn.Status.HealthySince.Time.Equal(t0) || len(c) != 1 || c[0].Type != v1alpha1.ConditionHealthy || c[0].Status != metav1.ConditionTrue {
		t.Errorf("healthy since %v, conditions %+v", brn.Status.HealthySince, c)
	}
	_, brn = apply(flying{phase: v1alpha1.PhaseStabilizing, elapsed: time.Minute, health: health, ev: pods(false)}.with(rebootedTo(target), healthySince(t0.Add(-time.Minute))))
	if brn.Status.HealthySince != nil || brn.Status.Conditions[0].Status != metav1.ConditionFalse {
		t.Errorf("unhealthy again: healthy since %v, conditions %+v", brn.Status.HealthySince, brn.Status.Conditions)
	}

	_, brn = apply(flying{phase: v1alpha1.PhaseStabilizing, elapsed: 3 * time.Minute, health: health, ev: pods(true)}.with(rebootedTo(target), healthySince(t0.Add(-2*time.Minute)), evicted("apps/web")))
	if st := brn.Status; st.Phase != v1alpha1.PhaseUpdated || !st.UpdatedTime.Time.Equal(t0) || st.EvictedPDBs != nil || st.HealthySince != nil || st.Conditions != nil {
		t.Errorf("updated: %+v", st)
	}
}
