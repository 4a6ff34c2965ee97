package planner

import (
	"strings"
	"testing"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

// in builds an input at t0 from policies and nodes.
func in(policies []v1alpha1.UpdatePolicy, nodes ...NodeState) Input {
	return Input{Now: t0, Policies: policies, Nodes: nodes}
}

func one(p v1alpha1.UpdatePolicy) []v1alpha1.UpdatePolicy { return []v1alpha1.UpdatePolicy{p} }

// at puts a node of the rollout to target in a phase.
func at(n NodeState, phase v1alpha1.NodePhase, target string) NodeState {
	n.BRN.Status.Phase, n.BRN.Status.RolloutTarget, n.BRN.Spec.TargetVersion = phase, target, target
	n.BRN.Spec.Action = v1alpha1.ActionStage
	if phase == v1alpha1.PhaseStaged || phase == v1alpha1.PhaseDraining {
		n.BRN.Status.Agent.StagedVersion = target // the agent reports the target staged
	}
	return n
}

// inWave records the node's wave for its rollout.
func inWave(n NodeState, wave string) NodeState {
	n.BRN.Status.Wave = wave
	return n
}

// updated makes the node run target, Updated at when.
func updated(n NodeState, target string, when time.Time) NodeState {
	n = at(n, v1alpha1.PhaseUpdated, target)
	n.BRN.Spec.Action = v1alpha1.ActionNone
	n.BRN.Status.Agent.CurrentVersion = target
	n.BRN.Status.UpdatedTime = mtime(when)
	return n
}

// failed makes the node Failed for target at when, after failures attempts.
func failed(n NodeState, target string, when time.Time, failures int32) NodeState {
	n = at(n, v1alpha1.PhaseFailed, target)
	n.BRN.Spec.Action = v1alpha1.ActionNone
	st := &n.BRN.Status
	st.FailedTarget, st.FailedTime, st.FailureCount, st.Reason = target, mtime(when), failures, v1alpha1.ReasonFallback
	return n
}

func withSpec(mods ...func(*v1alpha1.UpdatePolicySpec)) v1alpha1.UpdatePolicy {
	return policy("p", mods...)
}

func maxUnavailable(v string) func(*v1alpha1.UpdatePolicySpec) {
	return func(s *v1alpha1.UpdatePolicySpec) { s.MaxUnavailable = intOrStr(v) }
}

func window(schedule string, d time.Duration, zone string) func(*v1alpha1.UpdatePolicySpec) {
	return func(s *v1alpha1.UpdatePolicySpec) {
		s.MaintenanceWindows = append(s.MaintenanceWindows, v1alpha1.MaintenanceWindow{Schedule: schedule, Duration: metav1Duration(d), TimeZone: zone})
	}
}

type want struct {
	phase  v1alpha1.NodePhase
	reason v1alpha1.Reason
}

func h(name string) NodeState { return host(name, "a", "1.20.0", "1.21.0", "1.20.0") }

func TestRules(t *testing.T) {
	const v = "1.21.0"
	tests := []struct {
		name  string
		in    Input
		want  map[string]want
		check func(t *testing.T, p Plan)
	}{
		{
			name: "scope: not governed, conflict, excluded",
			in: func() Input {
				excl := h("excl")
				excl.Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
				both := h("both")
				both.Node.Labels["x"], both.Node.Labels["y"] = "1", "1"
				return in([]v1alpha1.UpdatePolicy{policy("px", selecting("x", "1")), policy("py", selecting("y", "1"))},
					h("none"), both, excl)
			}(),
			want: map[string]want{
				"none": {v1alpha1.PhaseIdle, v1alpha1.ReasonNotGoverned},
				"both": {v1alpha1.PhaseIdle, v1alpha1.ReasonPolicyConflict},
			},
			check: func(t *testing.T, p Plan) {
				if got := p.Policies["px"].ConflictsWith; len(got) != 1 || got[0] != "py" {
					t.Errorf("px conflicts = %v", got)
				}
				if got := p.Policies["py"].Phase; got != v1alpha1.RolloutInvalid {
					t.Errorf("py phase %s", got)
				}
				if !strings.Contains(p.Nodes[1].Message, "px, py") {
					t.Errorf("conflict message %q", p.Nodes[1].Message)
				}
			},
		},
		{
			name: "excluded node is not governed",
			in: func() Input {
				excl := h("excl")
				excl.Node.Annotations = map[string]string{v1alpha1.AnnotationExclude: "true"}
				return in(one(withSpec()), excl)
			}(),
			want: map[string]want{"excl": {v1alpha1.PhaseIdle, v1alpha1.ReasonExcluded}},
		},
		{
			name: "latest resolves to the newest offered version, numerically",
			in: func() Input {
				a := host("a", "a", "1.20.9", "1.20.9", "1.20.10")
				b := host("b", "a", "1.20.9", "1.20.9")
				e := host("e", "a", "1.20.9", "1.20.10", "1.20.9")
				noAgent := h("c")
				noAgent.BRN.Status.Agent = nil
				return in(one(withSpec(maxUnavailable("3"))), a, b, noAgent, NodeState{Node: h("d").Node}, e)
			}(),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonTargetNotOffered},
				"c": {v1alpha1.PhasePending, v1alpha1.ReasonAwaitingAgent},
				"d": {v1alpha1.PhasePending, v1alpha1.ReasonAwaitingAgent},
				"e": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
			},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.TargetVersion != "1.20.10" || !r.RolloutStartTime.Equal(t0) {
					t.Errorf("target %q start %s", r.TargetVersion, r.RolloutStartTime)
				}
			},
		},
		{
			name: "latest stays on the carried target until its rollout ends",
			in: func() Input {
				p := withSpec()
				p.Status.TargetVersion, p.Status.RolloutStartTime = v, mtime(t0.Add(-time.Hour))
				return in(one(p), updated(host("a", "a", v, v, "1.22.0"), v, t0.Add(-time.Hour)), host("b", "a", "1.20.0", v, "1.22.0"))
			}(),
			want: map[string]want{"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging}},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.TargetVersion != v || !r.RolloutStartTime.Equal(t0.Add(-time.Hour)) {
					t.Errorf("target %q start %s", r.TargetVersion, r.RolloutStartTime)
				}
			},
		},
		{
			name: "latest starts the next rollout once the last one ended",
			in: func() Input {
				p := withSpec()
				p.Status.TargetVersion = v
				return in(one(p), updated(host("a", "a", v, v, "1.22.0"), v, t0.Add(-time.Hour)))
			}(),
			want: map[string]want{"a": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging}},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.TargetVersion != "1.22.0" || !r.RolloutStartTime.Equal(t0) {
					t.Errorf("target %q start %s", r.TargetVersion, r.RolloutStartTime)
				}
			},
		},
		{
			name: "latest: one host's offer does not set the fleet's target, nor does a malformed or pre-release version",
			in: in(one(withSpec(maxUnavailable("4"))),
				host("a", "a", "1.20.0", "99.0.0", v, "1.20.0"),
				host("b", "a", "1.20.0", v, "1.21.1a5", "2.0.0-rc1", "1.20.0"),
				host("c", "a", "1.20.0", v, "1.21.1a5", "2.0.0-rc1", "1.20.0"),
				host("d", "a", "1.20.0", v, "1.21.1a5", "2.0.0-rc1", "1.20.0")),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
				"d": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
			},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.TargetVersion != v {
					t.Errorf("target %q, want %s", r.TargetVersion, v)
				}
			},
		},
		{
			name: "latest: a version offered to half the reporting hosts is not yet the target",
			in: in(one(withSpec()),
				host("a", "a", "1.20.0", "1.22.0", v, "1.20.0"), host("b", "a", "1.20.0", v, "1.20.0")),
			want: map[string]want{"a": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging}},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.TargetVersion != v {
					t.Errorf("target %q, want %s", r.TargetVersion, v)
				}
			},
		},
		{
			name: "latest moves on to a newer release when the carried target is withdrawn",
			in: func() Input {
				p := withSpec()
				p.Status.TargetVersion, p.Status.RolloutStartTime = "1.22.0", mtime(t0.Add(-time.Hour))
				return in(one(p), updated(host("a", "a", "1.22.0", "1.23.0"), "1.22.0", t0.Add(-time.Hour)),
					host("b", "a", v, v, "1.23.0"), host("c", "a", v, v, "1.23.0"))
			}(),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonStagingLimit},
			},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.TargetVersion != "1.23.0" || !r.RolloutStartTime.Equal(t0) {
					t.Errorf("target %q start %s, want 1.23.0 from now", r.TargetVersion, r.RolloutStartTime)
				}
			},
		},
		{
			name: "latest keeps a target no pending host is offered while nothing newer is",
			in: func() Input {
				p := withSpec()
				p.Status.TargetVersion = "1.22.0"
				return in(one(p), updated(host("a", "a", "1.22.0", "1.22.0"), "1.22.0", t0.Add(-time.Hour)),
					host("b", "a", v, v), host("c", "a", v, v, "1.22.0"))
			}(),
			want: map[string]want{
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonTargetNotOffered},
				"c": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
			},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.TargetVersion != "1.22.0" {
					t.Errorf("target %q, want 1.22.0", r.TargetVersion)
				}
			},
		},
		{
			name: "latest keeps a target a node is in flight for, though no pending host is offered it",
			in: func() Input {
				p := withSpec()
				p.Status.TargetVersion = "1.22.0"
				return in(one(p), at(host("a", "a", v, "1.23.0"), v1alpha1.PhaseStaged, "1.22.0"),
					host("b", "a", v, v, "1.23.0"), host("c", "a", v, v, "1.23.0"))
			}(),
			want: map[string]want{
				"a": {v1alpha1.PhaseDraining, ""},
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonTargetNotOffered},
			},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.TargetVersion != "1.22.0" {
					t.Errorf("target %q, want 1.22.0", r.TargetVersion)
				}
			},
		},
		{
			name: "latest never goes back to an older release when its target is withdrawn",
			in: func() Input {
				p := withSpec()
				p.Status.TargetVersion = "1.22.0"
				return in(one(p), updated(host("a", "a", "1.22.0", v), "1.22.0", t0.Add(-time.Hour)),
					host("b", "a", "1.20.0", v, "1.20.0"), host("c", "a", "1.20.0", v, "1.20.0"))
			}(),
			want: map[string]want{
				"a": {v1alpha1.PhaseUpdated, v1alpha1.ReasonUpToDate},
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonTargetNotOffered},
			},
		},
		{
			name: "a pin below the running version rolls back; a node on the pin is Updated",
			in: in(one(withSpec(func(s *v1alpha1.UpdatePolicySpec) { s.Version = "1.19.0" })),
				host("a", "a", "1.20.0", "1.19.0", "1.20.0"), host("b", "a", "1.19.0", "1.19.0")),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
				"b": {v1alpha1.PhaseUpdated, v1alpha1.ReasonUpToDate},
			},
		},
		{
			name: "budget: 10% of 11 nodes rounds up to 2",
			in: func() Input {
				nodes := fleetOf("n", 11, []string{"a"}, "1.20.0", v)
				for i := range 3 {
					nodes[i] = at(nodes[i], v1alpha1.PhaseStaged, v)
				}
				return in(one(withSpec(maxUnavailable("10%"))), nodes...)
			}(),
			want: map[string]want{
				"n-000": {v1alpha1.PhaseDraining, ""},
				"n-001": {v1alpha1.PhaseDraining, ""},
				"n-002": {v1alpha1.PhaseStaged, v1alpha1.ReasonBudgetExhausted},
			},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.MaxUnavailable != 2 || r.Unavailable != 2 {
					t.Errorf("budget %d unavailable %d", r.MaxUnavailable, r.Unavailable)
				}
			},
		},
		{
			name: "budget: 0 disrupts nothing but still stages",
			in:   in(one(withSpec(maxUnavailable("0"))), at(h("a"), v1alpha1.PhaseStaged, v), h("b")),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaged, v1alpha1.ReasonBudgetExhausted},
				"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
			},
		},
		{
			name: "budget: cordoned and NotReady nodes count, whoever caused them",
			in: func() Input {
				cordoned, notReady := h("c"), h("d")
				cordoned.Node.Spec.Unschedulable = true
				setReady(notReady.Node, false)
				return in(one(withSpec(maxUnavailable("2"))), at(h("a"), v1alpha1.PhaseStaged, v), cordoned, notReady)
			}(),
			want: map[string]want{"a": {v1alpha1.PhaseStaged, v1alpha1.ReasonBudgetExhausted}},
		},
		{
			name: "zone budget: 50% of a zone of 3 rounds up to 2",
			in: func() Input {
				var nodes []NodeState
				for _, n := range []string{"a1", "a2", "a3", "b1"} {
					nodes = append(nodes, at(host(n, n[:1], "1.20.0", v), v1alpha1.PhaseStaged, v))
				}
				return in(one(withSpec(maxUnavailable("10"), func(s *v1alpha1.UpdatePolicySpec) {
					s.MaxUnavailablePerZone = intOrStr("50%")
				})), nodes...)
			}(),
			want: map[string]want{
				"a1": {v1alpha1.PhaseDraining, ""}, "a2": {v1alpha1.PhaseDraining, ""},
				"a3": {v1alpha1.PhaseStaged, v1alpha1.ReasonZoneBudgetExhausted}, "b1": {v1alpha1.PhaseDraining, ""},
			},
		},
		{
			name: "wave budget: the wave's own maxUnavailable applies too",
			in: in(one(withSpec(maxUnavailable("10"), func(s *v1alpha1.UpdatePolicySpec) {
				s.Waves = []v1alpha1.Wave{{Name: "all", Nodes: intOrStr("100%"), MaxUnavailable: intOrStr("1")}}
			})), at(h("a"), v1alpha1.PhaseStaged, v), at(h("b"), v1alpha1.PhaseStaged, v)),
			want: map[string]want{
				"a": {v1alpha1.PhaseDraining, ""},
				"b": {v1alpha1.PhaseStaged, v1alpha1.ReasonWaveBudgetExhausted},
			},
		},
		{
			name: "pause between nodes: a freed slot waits",
			in: in(one(withSpec(func(s *v1alpha1.UpdatePolicySpec) { s.PauseBetweenNodes = dur(5 * time.Minute) })),
				updated(h("a"), v, t0.Add(-2*time.Minute)), at(h("b"), v1alpha1.PhaseStaged, v)),
			want: map[string]want{"b": {v1alpha1.PhaseStaged, v1alpha1.ReasonPauseBetweenNodes}},
			check: func(t *testing.T, p Plan) {
				if want := t0.Add(3 * time.Minute); !p.NextWake.Equal(want) {
					t.Errorf("NextWake %s, want %s", p.NextWake, want)
				}
			},
		},
		{
			name: "outside the window: no drain, staging allowed, next window reported",
			in: in(one(withSpec(maxUnavailable("5"), window("0 22 * * *", 2*time.Hour, "Europe/Berlin"))),
				at(h("a"), v1alpha1.PhaseStaged, v), h("b"), at(h("c"), v1alpha1.PhaseRebooting, v)),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaged, v1alpha1.ReasonOutsideWindow},
				"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
				"c": {v1alpha1.PhaseRebooting, v1alpha1.ReasonWaitingForReboot},
			},
			check: func(t *testing.T, p Plan) {
				next := time.Date(2026, 6, 1, 20, 0, 0, 0, time.UTC) // 22:00 CEST
				if got := p.Policies["p"].NextMaintenanceWindow; !got.Equal(next) {
					t.Errorf("next window %s, want %s", got, next)
				}
				// c's reboot deadline (health.readyTimeout from now) comes before the window.
				if deadline := t0.Add(DefaultReadyTimeout); !p.NextWake.Equal(deadline) {
					t.Errorf("NextWake %s, want c's deadline %s", p.NextWake, deadline)
				}
				in := in(one(withSpec(maxUnavailable("5"), window("0 22 * * *", 2*time.Hour, "Europe/Berlin"))),
					at(h("a"), v1alpha1.PhaseStaged, v), h("b"))
				if got := Compute(in).NextWake; !got.Equal(next) {
					t.Errorf("without a node in flight NextWake %s, want the window %s", got, next)
				}
			},
		},
		{
			name: "inside the window: drain",
			in:   in(one(withSpec(window("0 11 * * *", 2*time.Hour, "UTC"))), at(h("a"), v1alpha1.PhaseStaged, v)),
			want: map[string]want{"a": {v1alpha1.PhaseDraining, ""}},
		},
		{
			name: "finishWithinWindow: an update that would outlast the open window waits for the next",
			in: in(one(withSpec(window("0 11 * * *", 75*time.Minute, "UTC"), func(s *v1alpha1.UpdatePolicySpec) {
				s.FinishWithinWindow = true // the window closes at 12:15; drain 15m + ready 10m + stable 1m do not fit
			})), at(h("a"), v1alpha1.PhaseStaged, v)),
			want: map[string]want{"a": {v1alpha1.PhaseStaged, v1alpha1.ReasonWindowTooShort}},
			check: func(t *testing.T, p Plan) {
				if msg := p.Nodes[0].Message; !strings.Contains(msg, "26m0s") || !strings.Contains(msg, "12:15:00Z") {
					t.Errorf("message %q names neither the expected duration nor the window's end", msg)
				}
			},
		},
		{
			name: "finishWithinWindow: an update that fits starts",
			in: in(one(withSpec(window("0 11 * * *", 90*time.Minute, "UTC"), func(s *v1alpha1.UpdatePolicySpec) {
				s.FinishWithinWindow = true // closes at 12:30: 26m fit
			})), at(h("a"), v1alpha1.PhaseStaged, v)),
			want: map[string]want{"a": {v1alpha1.PhaseDraining, ""}},
		},
		{
			name: "without finishWithinWindow an update may outlast the window",
			in:   in(one(withSpec(window("0 11 * * *", 75*time.Minute, "UTC"))), at(h("a"), v1alpha1.PhaseStaged, v)),
			want: map[string]want{"a": {v1alpha1.PhaseDraining, ""}},
		},
		{
			name: "a wave's windows replace the policy's",
			in: in(one(withSpec(window("0 22 * * *", time.Hour, "UTC"), func(s *v1alpha1.UpdatePolicySpec) {
				s.Waves = []v1alpha1.Wave{{Name: "day", Nodes: intOrStr("100%"), MaintenanceWindows: []v1alpha1.MaintenanceWindow{
					{Schedule: "0 12 * * *", Duration: metav1Duration(time.Hour)}}}}
			})), at(h("a"), v1alpha1.PhaseStaged, v)),
			want: map[string]want{"a": {v1alpha1.PhaseDraining, ""}},
		},
		{
			name: "invalid schedule fails closed",
			in:   in(one(withSpec(window("61 * * * *", time.Hour, "UTC"))), at(h("a"), v1alpha1.PhaseStaged, v), h("b")),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaged, v1alpha1.ReasonInvalidSchedule},
				"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
			},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.Invalid == "" || r.InvalidReason != v1alpha1.ReasonInvalidSchedule || r.Phase != v1alpha1.RolloutInvalid {
					t.Errorf("report %+v", r)
				}
			},
		},
		{
			name: "invalid time zone fails closed",
			in:   in(one(withSpec(window("@daily", 24*time.Hour, "Mars/Olympus_Mons"))), at(h("a"), v1alpha1.PhaseStaged, v)),
			want: map[string]want{"a": {v1alpha1.PhaseStaged, v1alpha1.ReasonInvalidSchedule}},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; r.InvalidReason != v1alpha1.ReasonInvalidTimeZone {
					t.Errorf("reason %s", r.InvalidReason)
				}
			},
		},
		{
			name: "staging limit, unset: the resolved maxUnavailable",
			in:   in(one(withSpec(maxUnavailable("2"))), at(h("a"), v1alpha1.PhaseStaging, v), h("b"), h("c")),
			want: map[string]want{
				"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
				"c": {v1alpha1.PhasePending, v1alpha1.ReasonStagingLimit},
			},
		},
		{
			name: "paused: nothing new starts, nodes in flight keep their phase",
			in: in(one(withSpec(func(s *v1alpha1.UpdatePolicySpec) { s.Paused = true })),
				at(h("a"), v1alpha1.PhaseStaged, v), h("b"), at(h("c"), v1alpha1.PhaseVerifying, v)),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaged, v1alpha1.ReasonPolicyPaused},
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonPolicyPaused},
				"c": {v1alpha1.PhaseVerifying, v1alpha1.ReasonWrongVersion},
			},
			check: func(t *testing.T, p Plan) {
				// Only c's deadline wakes the controller: a paused rollout lets nodes in flight finish.
				if r := p.Policies["p"]; r.Phase != v1alpha1.RolloutPaused || !p.NextWake.Equal(t0.Add(DefaultReadyTimeout)) {
					t.Errorf("phase %s, NextWake %s", r.Phase, p.NextWake)
				}
			},
		},
		{
			name: "dry run: reports what would happen, moves nothing",
			in: in(one(withSpec(maxUnavailable("1"), func(s *v1alpha1.UpdatePolicySpec) { s.DryRun = true })),
				at(h("a"), v1alpha1.PhaseStaged, v), h("b"), h("c")),
			want: map[string]want{
				"a": {v1alpha1.PhaseStaged, v1alpha1.ReasonDryRun},
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonDryRun},
				"c": {v1alpha1.PhasePending, v1alpha1.ReasonStagingLimit},
			},
			check: func(t *testing.T, p Plan) {
				if d := p.Nodes[1]; d.Action != v1alpha1.ActionNone || !strings.Contains(d.Message, "would stage") {
					t.Errorf("b: %+v", d)
				}
				if got := strings.Join(p.Policies["p"].NextNodes, ","); got != "a,b,c" {
					t.Errorf("next nodes %s", got)
				}
				if r := p.Policies["p"]; r.Unavailable != 0 || r.Phase != v1alpha1.RolloutPaused {
					t.Errorf("dry run reports %d unavailable, phase %s", r.Unavailable, r.Phase)
				}
			},
		},
		{
			name: "failure budget spent: halted",
			in: in(one(withSpec(func(s *v1alpha1.UpdatePolicySpec) { s.FailurePolicy.MaxFailedNodes = 1 })),
				failed(h("a"), v, t0.Add(-time.Hour), 1), h("b")),
			want: map[string]want{
				"a": {v1alpha1.PhaseFailed, v1alpha1.ReasonFallback},
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonRolloutHalted},
			},
			check: func(t *testing.T, p Plan) {
				if r := p.Policies["p"]; !r.Halted || r.Phase != v1alpha1.RolloutHalted || r.FailedNodes != 1 {
					t.Errorf("report %+v", r)
				}
			},
		},
		{
			name: "resumed after a halt: earlier failures no longer count",
			in: func() Input {
				p := withSpec()
				p.Status.TargetVersion, p.Status.ResumeTime = v, mtime(t0.Add(-time.Minute))
				return in(one(p), failed(h("a"), v, t0.Add(-time.Hour), 1), h("b"))
			}(),
			want: map[string]want{
				"a": {v1alpha1.PhaseFailed, v1alpha1.ReasonFallback},
				"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
			},
		},
		{
			name: "a different failed target does not halt the rollout",
			in:   in(one(withSpec()), failed(h("a"), "1.20.5", t0.Add(-time.Hour), 1), h("b")),
			want: map[string]want{"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging}},
		},
		{
			name: "retry asked: backoff, then staging",
			in: func() Input {
				a := failed(h("a"), v, t0.Add(-3*time.Minute), 2) // 4 minutes of backoff
				b := failed(h("b"), v, t0.Add(-3*time.Minute), 1) // 2 minutes
				for _, n := range []NodeState{a, b} {
					n.BRN.Annotations = map[string]string{v1alpha1.AnnotationRetry: ""}
				}
				p := withSpec(maxUnavailable("2"), func(s *v1alpha1.UpdatePolicySpec) { s.FailurePolicy.MaxFailedNodes = 1 })
				return in(one(p), a, b)
			}(),
			want: map[string]want{
				"a": {v1alpha1.PhasePending, v1alpha1.ReasonBackoff},
				"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
			},
			check: func(t *testing.T, p Plan) {
				if want := t0.Add(time.Minute); !p.NextWake.Equal(want) {
					t.Errorf("NextWake %s, want %s", p.NextWake, want)
				}
			},
		},
		{
			name: "waves: the next wave waits for the previous one, then for its soak",
			in: func() Input {
				p := withSpec(maxUnavailable("5"), func(s *v1alpha1.UpdatePolicySpec) {
					s.Waves = []v1alpha1.Wave{
						{Name: "canary", Nodes: intOrStr("1"), SoakTime: dur(time.Hour)},
						{Name: "second", Nodes: intOrStr("1")},
					}
				})
				p.Status.TargetVersion = v
				return in(one(p), inWave(updated(h("a"), v, t0.Add(-10*time.Minute)), "canary"),
					inWave(at(h("b"), v1alpha1.PhasePending, v), "second"), h("c"))
			}(),
			want: map[string]want{
				"a": {v1alpha1.PhaseUpdated, v1alpha1.ReasonUpToDate},
				"b": {v1alpha1.PhasePending, v1alpha1.ReasonSoaking},
				"c": {v1alpha1.PhasePending, v1alpha1.ReasonWaitingForWave},
			},
			check: func(t *testing.T, p Plan) {
				r := p.Policies["p"]
				if len(r.Waves) != 3 || r.Waves[0].CompletionTime == nil || !r.Waves[0].CompletionTime.Equal(mtime(t0.Add(-10*time.Minute))) {
					t.Errorf("waves %+v", r.Waves)
				}
				if p.Nodes[2].Wave != ImplicitWave {
					t.Errorf("c in wave %q", p.Nodes[2].Wave)
				}
				if want := t0.Add(50 * time.Minute); !p.NextWake.Equal(want) {
					t.Errorf("NextWake %s, want %s", p.NextWake, want)
				}
			},
		},
		{
			name: "waves: selector waves claim first, count waves follow name order, recorded waves stay",
			in: func() Input {
				gpu := h("z-gpu")
				gpu.Node.Labels["pool"] = "gpu"
				p := withSpec(func(s *v1alpha1.UpdatePolicySpec) {
					s.Waves = []v1alpha1.Wave{
						{Name: "canary", Nodes: intOrStr("1")},
						{Name: "gpu", NodeSelector: selector("pool", "gpu")},
					}
				})
				return in(one(p), h("b"), gpu, inWave(at(h("c"), v1alpha1.PhasePending, v), "canary"), h("a"))
			}(),
			check: func(t *testing.T, p Plan) {
				got := []string{}
				for _, d := range p.Nodes {
					got = append(got, d.Name+"="+d.Wave)
				}
				if s := strings.Join(got, " "); s != "b=rest z-gpu=gpu c=canary a=rest" {
					t.Errorf("waves %s", s)
				}
			},
		},
		{
			name: "the controller's node goes last in its wave",
			in: func() Input {
				x := in(one(withSpec(maxUnavailable("3"))), h("a"), h("b"), h("c"))
				x.ControllerNode = "a"
				return x
			}(),
			want: map[string]want{
				"a": {v1alpha1.PhasePending, v1alpha1.ReasonControllerNodeLast},
				"b": {v1alpha1.PhaseStaging, v1alpha1.ReasonStaging},
			},
			check: func(t *testing.T, p Plan) {
				if got := strings.Join(p.Policies["p"].NextNodes, ","); got != "b,c,a" {
					t.Errorf("next nodes %s", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Compute(tt.in)
			got := decisionsByName(plan)
			for name, w := range tt.want {
				d := got[name]
				if d.Phase != w.phase || d.Reason != w.reason {
					t.Errorf("%s: %s/%s (%s), want %s/%s", name, d.Phase, d.Reason, d.Message, w.phase, w.reason)
				}
			}
			if tt.check != nil {
				tt.check(t, plan)
			}
		})
	}
}

// TestDecisionApply checks the helpers the controller uses to write a plan.
func TestDecisionApply(t *testing.T) {
	n := h("a")
	d := NodeDecision{Policy: "p", Phase: v1alpha1.PhaseStaging, Action: v1alpha1.ActionStage, TargetVersion: "1.21.0", Wave: "rest", RolloutTarget: "1.21.0"}
	d.From = n.BRN.Status.Phase
	if !d.Admitted() {
		t.Error("Idle → Staging not admitted")
	}
	d.ApplyTo(n.BRN, t0)
	st := n.BRN.Status
	if st.Phase != v1alpha1.PhaseStaging || !st.PhaseStartTime.Time.Equal(t0) || !st.UpdateStartTime.Time.Equal(t0) || n.BRN.Spec.Action != v1alpha1.ActionStage {
		t.Errorf("applied %+v %+v", n.BRN.Spec, st)
	}
	d.ApplyTo(n.BRN, t0.Add(time.Minute))
	if !n.BRN.Status.PhaseStartTime.Time.Equal(t0) {
		t.Error("phaseStartTime moved without a phase change")
	}
	var status v1alpha1.UpdatePolicyStatus
	r := PolicyReport{TargetVersion: "1.21.0", TargetSource: v1alpha1.TargetSourcePin, RolloutStartTime: t0, Progress: "1/2", MaxUnavailable: v1alpha1.Unlimited}
	r.ApplyTo(&status)
	if status.TargetVersion != "1.21.0" || status.TargetSource != v1alpha1.TargetSourcePin || status.RolloutStartTime == nil || status.NextMaintenanceWindow != nil || status.MaxUnavailable != 1<<31-1 {
		t.Errorf("status %+v", status)
	}
}

func TestRetryBackoff(t *testing.T) {
	for failures, want := range map[int32]time.Duration{0: 0, 1: 2 * time.Minute, 3: 8 * time.Minute, 10: 1024 * time.Minute, 11: 24 * time.Hour, 1000: 24 * time.Hour} {
		if got := RetryBackoff(failures); got != want {
			t.Errorf("RetryBackoff(%d) = %s, want %s", failures, got, want)
		}
	}
}

// TestPauseFollowsDisruptedNodesOnly checks that only a node this operator disrupted for the
// update (Stabilizing → Updated) starts pauseBetweenNodes: a node found already on the target
// took no slot, so it holds none back.
func TestPauseFollowsDisruptedNodesOnly(t *testing.T) {
	const v = "1.21.0"
	pause := withSpec(func(s *v1alpha1.UpdatePolicySpec) { s.PauseBetweenNodes = dur(5 * time.Minute) })
	fresh := host("fresh", "a", v, v)
	fresh.BRN.Status.Phase = v1alpha1.PhasePending
	b := at(h("b"), v1alpha1.PhaseStaging, v)
	fleet := in(one(pause), fresh, b)

	apply(&fleet, Compute(fleet)) // fresh is found on the target; b stages
	if st := fresh.BRN.Status; st.Phase != v1alpha1.PhaseUpdated || st.UpdatedTime != nil {
		t.Errorf("fresh: %s, updatedTime %v; want Updated with no updatedTime (it was never disrupted)", st.Phase, st.UpdatedTime)
	}
	staged(true)(&b)
	fleet.Now = t0.Add(time.Minute)
	apply(&fleet, Compute(fleet)) // b is staged
	fleet.Now = t0.Add(2 * time.Minute)
	if d := Compute(fleet).Nodes[1]; d.Phase != v1alpha1.PhaseDraining {
		t.Errorf("b: %s/%s (%s), want Draining: no node freed a slot", d.Phase, d.Reason, d.Message)
	}
}

// TestStagedImageLost checks that a Staged node whose host no longer has the target staged is
// not disrupted for it: Bottlerocket forgets a staged update when the host boots for another
// reason (thar-be-updates keeps its status in memory; after a boot staging_partition is null),
// and a Reboot intent would then find nothing to activate. The node stages again, and is
// Staged only once the agent reports the target staged.
func TestStagedImageLost(t *testing.T) {
	const v = "1.21.0"
	b := at(h("b"), v1alpha1.PhaseStaged, v)
	staged(true)(&b)
	b.BRN.Status.Agent.StagedVersion = "" // the host booted since
	fleet := in(one(withSpec()), b)

	d := Compute(fleet).Nodes[0]
	if d.Phase != v1alpha1.PhaseStaging || d.Action != v1alpha1.ActionStage {
		t.Fatalf("b: %s/%s, action %s (%s); want Staging again, not a disruption", d.Phase, d.Reason, d.Action, d.Message)
	}
	apply(&fleet, Compute(fleet))
	fleet.Now = t0.Add(time.Minute)
	if d := Compute(fleet).Nodes[0]; d.Phase != v1alpha1.PhaseStaging || d.Reason != v1alpha1.ReasonStaging {
		t.Errorf("b: %s/%s (%s); want Staging until the agent reports the target staged again (its last answer is older)", d.Phase, d.Reason, d.Message)
	}
	b.BRN.Status.Agent.StagedVersion = v
	if d := Compute(fleet).Nodes[0]; d.Phase != v1alpha1.PhaseStaged {
		t.Errorf("b: %s/%s (%s); want Staged once the target is staged again", d.Phase, d.Reason, d.Message)
	}
}

// TestSoakFollowsNodesFoundOnTarget checks that a wave whose nodes were found already on the
// target still soaks before the next wave is disrupted: it counts from when they became
// Updated, although they start no pauseBetweenNodes.
func TestSoakFollowsNodesFoundOnTarget(t *testing.T) {
	const v = "1.21.0"
	p := withSpec(maxUnavailable("5"), func(s *v1alpha1.UpdatePolicySpec) {
		s.Waves = []v1alpha1.Wave{{Name: "canary", Nodes: intOrStr("1"), SoakTime: dur(time.Hour)}, {Name: "second", Nodes: intOrStr("1")}}
	})
	fresh := inWave(at(host("fresh", "a", v, v), v1alpha1.PhasePending, v), "canary")
	b := inWave(at(h("b"), v1alpha1.PhaseStaging, v), "second")
	fleet := in(one(p), fresh, b)

	apply(&fleet, Compute(fleet)) // fresh is found on the target
	staged(true)(&b)
	fleet.Now = t0.Add(time.Minute)
	apply(&fleet, Compute(fleet)) // b is staged
	fleet.Now = t0.Add(2 * time.Minute)
	if d := Compute(fleet).Nodes[1]; d.Phase != v1alpha1.PhaseStaged || d.Reason != v1alpha1.ReasonSoaking {
		t.Errorf("b: %s/%s (%s), want Staged/Soaking: the canary wave soaks for an hour", d.Phase, d.Reason, d.Message)
	}
}

// TestPinBackToLatest checks that a target carried from a pin does not outlive the pin: a
// policy pinned to 1.21.0 with half its nodes done, switched back to "latest" with 1.22.0
// offered everywhere, moves its pending nodes to 1.22.0, not to the old pin first.
func TestPinBackToLatest(t *testing.T) {
	const pin, next = "1.21.0", "1.22.0"
	pinned := withSpec(maxUnavailable("2"), func(s *v1alpha1.UpdatePolicySpec) { s.Version = pin })
	x := in(one(pinned),
		updated(host("a", "a", pin, next, pin), pin, t0.Add(-time.Hour)),
		updated(host("b", "a", pin, next, pin), pin, t0.Add(-time.Hour)),
		host("c", "a", "1.20.0", next, pin, "1.20.0"),
		host("d", "a", "1.20.0", next, pin, "1.20.0"))
	x.Policies[0].Status.TargetVersion = "" // no rollout resolved yet
	r := Compute(x).Policies["p"]
	r.ApplyTo(&x.Policies[0].Status) // as the controller writes it
	if x.Policies[0].Status.TargetVersion != pin || x.Policies[0].Status.TargetSource != v1alpha1.TargetSourcePin {
		t.Fatalf("pinned target %q", x.Policies[0].Status.TargetVersion)
	}

	x.Policies[0].Spec.Version = v1alpha1.VersionLatest
	x.Now = t0.Add(time.Minute)
	plan := Compute(x)
	if got := plan.Policies["p"].TargetVersion; got != next {
		t.Errorf("target after switching back to latest %q, want %s", got, next)
	}
	got := decisionsByName(plan)
	for _, name := range []string{"c", "d"} { // pending: their next step is toward 1.22.0
		if d := got[name]; d.TargetVersion != next || d.RolloutTarget != next {
			t.Errorf("%s: %s for %q (%s), want the rollout to %s", name, d.Phase, d.TargetVersion, d.Message, next)
		}
	}
	if d := got["a"]; d.Phase != v1alpha1.PhaseStaging || d.TargetVersion != next {
		t.Errorf("a: %s for %q, want Staging for %s", d.Phase, d.TargetVersion, next)
	}
	if src := plan.Policies["p"].TargetSource; src != v1alpha1.TargetSourceLatest {
		t.Errorf("target source %q", src)
	}
}

// A node waiting for the wave before keeps its message while that wave makes progress: a count
// in it would rewrite the status of every waiting node at each node updated (in the e2e scale
// scenario, half the controller's writes), and the policy's status.waves shows that progress.
func TestWaitingForWaveHoldsItsMessage(t *testing.T) {
	p := policy("p", func(s *v1alpha1.UpdatePolicySpec) {
		s.MaxUnavailable = intOrStr("5")
		s.Waves = []v1alpha1.Wave{{Name: "first", Nodes: intOrStr("2")}}
	})
	p.Status.TargetVersion = "1.21.0"
	in := Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{p}, Nodes: fleetOf("n", 3, []string{"z"}, "1.20.0", "1.21.0")}
	before := decisionsByName(Compute(in))["n-002"]
	in.Nodes[0].BRN.Status.Agent.CurrentVersion = "1.21.0" // the first wave's first node is updated
	after := decisionsByName(Compute(in))["n-002"]
	if before.Reason != v1alpha1.ReasonWaitingForWave || after.Reason != v1alpha1.ReasonWaitingForWave {
		t.Fatalf("n-002 waits for %s, then %s: want %s both times", before.Reason, after.Reason, v1alpha1.ReasonWaitingForWave)
	}
	if before.Message != after.Message {
		t.Errorf("the waiting node's message changed with the wave's progress: %q, then %q", before.Message, after.Message)
	}
}
