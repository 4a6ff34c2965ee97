package planner

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
)

func nightly(t *testing.T, schedule string, d time.Duration) v1alpha1.Windows {
	t.Helper()
	ws, err := v1alpha1.ParseWindows([]v1alpha1.MaintenanceWindow{{Schedule: schedule, Duration: metav1Duration(d), TimeZone: "UTC"}})
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

func TestEstimateCompletion(t *testing.T) {
	evening := time.Date(2026, 6, 1, 20, 0, 0, 0, time.UTC) // Monday 20:00
	night := func(day, h, m int) time.Time { return time.Date(2026, 6, day, h, m, 0, 0, time.UTC) }
	unlimited := v1alpha1.Unlimited
	tests := []struct {
		name string
		in   etaInput
		want time.Time // zero: no estimate
	}{
		{
			name: "no windows: 20 nodes, budget 4, 10 min a node → 5 rounds",
			in:   etaInput{now: evening, budget: 4, perNode: 10 * time.Minute, waves: []etaWave{{waiting: 20, limit: unlimited}}},
			want: evening.Add(50 * time.Minute),
		},
		{
			name: "a 2 h nightly window from 22:00 holds the 5 rounds",
			in: etaInput{now: evening, budget: 4, perNode: 10 * time.Minute,
				waves: []etaWave{{waiting: 20, limit: unlimited, windows: nightly(t, "0 22 * * *", 2*time.Hour)}}},
			want: night(1, 22, 50),
		},
		{
			name: "a 30 min window holds 3 rounds a night: the rollout needs a second night",
			in: etaInput{now: evening, budget: 4, perNode: 10 * time.Minute,
				waves: []etaWave{{waiting: 20, limit: unlimited, windows: nightly(t, "0 22 * * *", 30*time.Minute)}}},
			want: night(2, 22, 20), // 12 nodes start 22:00–22:20 on Monday, 8 on Tuesday 22:00–22:10
		},
		{
			name: "a node started in the window may end after it; with finishWithinWindow it may not",
			in: etaInput{now: evening, budget: 4, perNode: 10 * time.Minute, fit: true,
				waves: []etaWave{{waiting: 20, limit: unlimited, windows: nightly(t, "0 22 * * *", 25*time.Minute)}}},
			want: night(3, 22, 10), // 2 rounds a night (22:00, 22:10; 22:20 would end at 22:30): 8, 8, 4
		},
		{
			name: "pauseBetweenNodes rests each slot after its node",
			in:   etaInput{now: evening, budget: 1, perNode: 10 * time.Minute, pause: 5 * time.Minute, waves: []etaWave{{waiting: 4, limit: unlimited}}},
			want: evening.Add(4*10*time.Minute + 3*5*time.Minute),
		},
		{
			name: "nodes disrupted now and slots resting hold the budget first",
			in: etaInput{now: evening, budget: 2, perNode: 10 * time.Minute, cooling: []time.Time{evening.Add(3 * time.Minute)},
				waves: []etaWave{{waiting: 2, limit: unlimited, busy: []time.Time{evening.Add(7 * time.Minute)}}}},
			want: evening.Add(17 * time.Minute), // starts at 3 and 7 min
		},
		{
			name: "waves go in order, each after the one before has soaked; a wave's own budget holds",
			in: etaInput{now: evening, budget: 4, perNode: 10 * time.Minute, waves: []etaWave{
				{waiting: 2, limit: unlimited, soak: time.Hour},
				{waiting: 4, limit: 1},
			}},
			want: evening.Add(10*time.Minute + time.Hour + 40*time.Minute),
		},
		{
			name: "a wave that completed before now soaks from its completion",
			in: etaInput{now: evening, budget: 4, perNode: 10 * time.Minute, waves: []etaWave{
				{done: evening.Add(-20 * time.Minute), limit: unlimited, soak: time.Hour},
				{waiting: 4, limit: unlimited},
			}},
			want: evening.Add(40*time.Minute + 10*time.Minute),
		},
		{
			name: "each wave keeps its own windows",
			in: etaInput{now: evening, budget: 4, perNode: 10 * time.Minute, waves: []etaWave{
				{waiting: 1, limit: unlimited},
				{waiting: 1, limit: unlimited, windows: nightly(t, "0 2 * * *", time.Hour)},
			}},
			want: night(2, 2, 10),
		},
		{
			name: "nothing left to start: the nodes disrupted now",
			in:   etaInput{now: evening, budget: 1, perNode: 10 * time.Minute, waves: []etaWave{{limit: unlimited, busy: []time.Time{evening.Add(4 * time.Minute)}}}},
			want: evening.Add(4 * time.Minute),
		},
		{
			name: "no budget: no estimate",
			in:   etaInput{now: evening, budget: 0, perNode: 10 * time.Minute, waves: []etaWave{{waiting: 1, limit: unlimited}}},
		},
		{
			name: "a window that never opens again: no estimate",
			in: etaInput{now: evening, budget: 1, perNode: 10 * time.Minute,
				waves: []etaWave{{waiting: 1, limit: unlimited, windows: nightly(t, "0 0 30 2 *", time.Hour)}}},
		},
		{
			name: "a window shorter than an update, with finishWithinWindow: no estimate",
			in: etaInput{now: evening, budget: 1, perNode: 2 * time.Hour, fit: true,
				waves: []etaWave{{waiting: 1, limit: unlimited, windows: nightly(t, "0 22 * * *", time.Hour)}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := estimateCompletion(tt.in); !got.Equal(tt.want) {
				t.Errorf("estimate %s, want %s", got, tt.want)
			}
		})
	}
}

// TestEstimateOnStatus follows the estimate through the policy's report: from the deadlines
// before any node finished, from the observed durations after.
func TestEstimateOnStatus(t *testing.T) {
	const v = "1.21.0"
	nodes := fleetOf("n", 8, []string{"a"}, "1.20.0", v)
	pol := policy("p", maxUnavailable("2"))
	plan := Compute(Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{pol}, Nodes: nodes})
	// Nothing observed yet: drain 15m + ready 10m + stable 1m a node, 4 rounds of 2.
	if got, want := plan.Policies["p"].EstimatedCompletion, t0.Add(4*26*time.Minute); !got.Equal(want) {
		t.Errorf("first estimate %s, want %s", got, want)
	}

	// Two nodes updated in 6 and 8 minutes: 7 minutes a node, 3 rounds left.
	nodes = fleetOf("n", 8, []string{"a"}, "1.20.0", v)
	for i, took := range map[int]time.Duration{0: 6 * time.Minute, 1: 8 * time.Minute} {
		nodes[i] = at(nodes[i], v1alpha1.PhaseUpdated, v)
		st := &nodes[i].BRN.Status
		st.Agent.CurrentVersion = v
		st.UpdatedTime, st.DrainStartTime = mtime(t0.Add(-time.Hour)), mtime(t0.Add(-time.Hour-took))
	}
	plan = Compute(Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{pol}, Nodes: nodes})
	if got, want := plan.Policies["p"].EstimatedCompletion, t0.Add(3*7*time.Minute); !got.Equal(want) {
		t.Errorf("estimate from observed durations %s, want %s", got, want)
	}

	// Paused: the rollout does not move on by itself, so there is no estimate.
	pol.Spec.Paused = true
	plan = Compute(Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{pol}, Nodes: nodes})
	if got := plan.Policies["p"].EstimatedCompletion; !got.IsZero() {
		t.Errorf("paused rollout estimated at %s", got)
	}
}

// TestEstimateAgreesWithTheRollout plays whole rollouts (random drain and boot times, a
// nightly window) and compares the estimate made once a quarter of the nodes are updated
// with when the last node was updated: the estimate names the right night, within the hour.
func TestEstimateAgreesWithTheRollout(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			nodes := fleetOf("n", 40, []string{"a", "b"}, "1.20.0", "1.21.0")
			pol := policy("p", maxUnavailable("4"), window("0 22 * * *", time.Hour, "UTC"))
			s := newSimulation(t, seed, Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{pol}, Nodes: nodes}, 0)
			var estimate, sampled, done time.Time
			s.observe = func(p Plan) {
				r := p.Policies["p"]
				if r.Counts.Updated >= 10 && sampled.IsZero() {
					estimate, sampled = r.EstimatedCompletion, s.in.Now
				}
				if r.Counts.Updated == 40 && done.IsZero() {
					done = s.in.Now
				}
			}
			s.run(20000)
			t.Logf("at %s (10/40 updated) the estimate was %s; the last node was updated at %s", sampled, estimate, done)
			if diff := estimate.Sub(done); diff < -time.Hour || diff > time.Hour {
				t.Errorf("estimate %s is %s off the completion %s", estimate, diff, done)
			}
		})
	}
}

// TestForecast lays the estimate out node by node: the node disrupted now first, then by
// wave, a staged node before the others, each start in the window (11:00–14:00); a host not
// offered the target yet keeps its place and says why it waits.
func TestForecast(t *testing.T) {
	const v = "1.21.0"
	nodes := []NodeState{
		at(h("a"), v1alpha1.PhaseRebooting, v), h("b"), at(h("c"), v1alpha1.PhaseStaged, v), h("d"),
		host("e", "a", "1.20.0", "1.20.0"), // offered nothing newer
	}
	nodes[0].BRN.Status.DrainStartTime = mtime(t0.Add(-5 * time.Minute))
	nodes[0].Node.Spec.Unschedulable = true
	pol := policy("p", maxUnavailable("2"), window("0 11 * * *", 3*time.Hour, "UTC"), func(s *v1alpha1.UpdatePolicySpec) {
		s.Waves = []v1alpha1.Wave{{Name: "canary", NodeSelector: selector("canary", "true"), SoakTime: dur(time.Hour)}}
	})
	nodes[3].Node.Labels["canary"] = "true"
	f, ok := ComputeForecast(Input{Now: t0, Policies: []v1alpha1.UpdatePolicy{pol}, Nodes: nodes}, "p")
	if !ok {
		t.Fatal("no forecast for p")
	}
	if f.PerNode != 26*time.Minute {
		t.Errorf("per node %s, want the deadlines' 26m", f.PerNode)
	}
	var got []string
	for _, n := range f.Nodes {
		got = append(got, fmt.Sprintf("%s %s %s→%s %s", n.Name, n.Wave, clock(n.Start), clock(n.Back), n.Reason))
	}
	want := []string{
		"a rest -→12:21 WaitingForReboot",     // drained 5 min ago: back in 21 min
		"d canary 12:00→12:26 Staging",        // the canary wave, alone
		"c rest 13:26→13:52 WaitingForWave",   // after the canary and its hour of soak; staged, so first
		"b rest 13:26→13:52 WaitingForWave",   // the second slot
		"e rest 13:52→14:18 TargetNotOffered", // expected once offered, its reason says why not yet
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("forecast:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04")
}
