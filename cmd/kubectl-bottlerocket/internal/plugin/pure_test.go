package plugin

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/leaderelection"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/controllers"
)

// now is the fake clock's time in every table: Saturday 2026-12-05 14:00 UTC.
var now = time.Date(2026, time.December, 5, 14, 0, 0, 0, time.UTC)

func mt(t time.Time) *metav1.Time { v := metav1.NewTime(t); return &v }

func node(name string, phase v1alpha1.NodePhase, reason v1alpha1.Reason, mutate ...func(*v1alpha1.BottlerocketNode)) v1alpha1.BottlerocketNode {
	n := v1alpha1.BottlerocketNode{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.BottlerocketNodeSpec{Policy: "fleet", TargetVersion: "1.26.0"},
		Status:     v1alpha1.BottlerocketNodeStatus{Phase: phase, Reason: reason, Message: "the controller's words", Wave: "rest"},
	}
	for _, m := range mutate {
		m(&n)
	}
	return n
}

func policy(mutate ...func(*v1alpha1.UpdatePolicy)) *v1alpha1.UpdatePolicy {
	p := &v1alpha1.UpdatePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "fleet"},
		Spec:       v1alpha1.UpdatePolicySpec{Version: "1.26.0", MaxUnavailable: ptr.To(intstr.FromInt32(3))},
		Status: v1alpha1.UpdatePolicyStatus{TargetVersion: "1.26.0", Progress: "1/10", Phase: v1alpha1.RolloutWaiting,
			Nodes: v1alpha1.NodeCounts{Total: 10}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func withWaves(p *v1alpha1.UpdatePolicy) {
	p.Spec.Waves = []v1alpha1.Wave{
		{Name: "canary", Nodes: ptr.To(intstr.FromInt32(1)), SoakTime: &metav1.Duration{Duration: 30 * time.Minute}},
		{Name: "rest", Nodes: ptr.To(intstr.FromString("100%")), MaxUnavailable: ptr.To(intstr.FromInt32(2))},
	}
	p.Status.Waves = []v1alpha1.WaveStatus{{Name: "canary", Nodes: 1, Updated: 1}, {Name: "rest", Nodes: 9}}
}

func down(names ...string) []v1alpha1.BottlerocketNode {
	var out []v1alpha1.BottlerocketNode
	for _, n := range names {
		out = append(out, node(n, v1alpha1.PhaseDraining, v1alpha1.ReasonEvicting))
	}
	return out
}

func TestExplainUnblock(t *testing.T) {
	berlin := func(p *v1alpha1.UpdatePolicy) {
		p.Spec.MaintenanceWindows = []v1alpha1.MaintenanceWindow{{Schedule: "0 22 * * 6", Duration: metav1.Duration{Duration: 4 * time.Hour}, TimeZone: "Europe/Berlin"}}
	}
	tests := []struct {
		name   string
		node   v1alpha1.BottlerocketNode
		policy *v1alpha1.UpdatePolicy
		peers  []v1alpha1.BottlerocketNode
		want   string
	}{{
		name:   "paused names the command that resumes",
		node:   node("a", v1alpha1.PhasePending, v1alpha1.ReasonPolicyPaused),
		policy: policy(func(p *v1alpha1.UpdatePolicy) { p.Spec.Paused = true }),
		want:   "paused: run kubectl bottlerocket resume fleet",
	}, {
		name:   "outside the window: when it opens, in the window's zone",
		node:   node("a", v1alpha1.PhasePending, v1alpha1.ReasonOutsideWindow),
		policy: policy(berlin),
		want:   "the window opens 22:00 Europe/Berlin (in 7h)",
	}, {
		name:   "a window too short for the update: the controller's measure, and the switch that allows it",
		node:   node("a", v1alpha1.PhaseStaged, v1alpha1.ReasonWindowTooShort),
		policy: policy(berlin, func(p *v1alpha1.UpdatePolicy) { p.Spec.FinishWithinWindow = true }),
		want:   "the controller's words (spec.finishWithinWindow); it starts in a window long enough for it, or set finishWithinWindow to false",
	}, {
		name:   "a window that opens next week shows its day and date",
		node:   node("a", v1alpha1.PhasePending, v1alpha1.ReasonOutsideWindow),
		policy: policy(func(p *v1alpha1.UpdatePolicy) { berlin(p); p.Spec.MaintenanceWindows[0].Schedule = "0 22 * * 5" }),
		want:   "the window opens Fri 2026-12-11 22:00 Europe/Berlin (in 6d7h)",
	}, {
		name: "a wave's own windows replace the policy's",
		node: node("a", v1alpha1.PhasePending, v1alpha1.ReasonOutsideWindow),
		policy: policy(berlin, withWaves, func(p *v1alpha1.UpdatePolicy) {
			p.Spec.Waves[1].MaintenanceWindows = []v1alpha1.MaintenanceWindow{{Schedule: "30 16 * * *", Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "UTC"}}
		}),
		want: "the window opens 16:30 UTC (in 2h30m)",
	}, {
		name: "soaking: the previous wave's completion plus its soakTime",
		node: node("a", v1alpha1.PhasePending, v1alpha1.ReasonSoaking),
		policy: policy(withWaves, func(p *v1alpha1.UpdatePolicy) {
			p.Status.Waves[0].CompletionTime = mt(now.Add(-18 * time.Minute))
		}),
		want: "wave canary soaks until 14:12 UTC (in 12m)",
	}, {
		name:   "waiting for a wave: its progress",
		node:   node("a", v1alpha1.PhasePending, v1alpha1.ReasonWaitingForWave),
		policy: policy(withWaves, func(p *v1alpha1.UpdatePolicy) { p.Status.Waves[0].Updated = 0 }),
		want:   "wave canary must finish first: 0 of 1 nodes Updated or Failed",
	}, {
		name:   "budget spent: how many are down, the resolved budget, who",
		node:   node("a", v1alpha1.PhasePending, v1alpha1.ReasonBudgetExhausted),
		policy: policy(func(p *v1alpha1.UpdatePolicy) { p.Status.Unavailable = 3 }),
		peers:  down("c", "b", "d"),
		want:   "3 nodes already down, budget 3 (b, c, d): it starts when one of them is done",
	}, {
		name: "a percentage budget is resolved over the governed nodes",
		node: node("a", v1alpha1.PhasePending, v1alpha1.ReasonBudgetExhausted),
		policy: policy(func(p *v1alpha1.UpdatePolicy) {
			p.Spec.MaxUnavailable = ptr.To(intstr.FromString("10%"))
			p.Status.Nodes.Total, p.Status.Unavailable = 25, 3
		}),
		peers: down("b", "c", "d"),
		want:  "3 nodes already down, budget 3 (b, c, d): it starts when one of them is done",
	}, {
		name:   "wave budget spent",
		node:   node("a", v1alpha1.PhasePending, v1alpha1.ReasonWaveBudgetExhausted),
		policy: policy(withWaves),
		peers:  append(down("b", "c"), node("a", v1alpha1.PhasePending, v1alpha1.ReasonWaveBudgetExhausted)),
		want:   "2 nodes of wave rest already down, wave budget 2 (b, c): it starts when one of them is done",
	}, {
		name: "pause between nodes: the earliest end of a pause",
		node: node("a", v1alpha1.PhasePending, v1alpha1.ReasonPauseBetweenNodes),
		policy: policy(func(p *v1alpha1.UpdatePolicy) {
			p.Spec.PauseBetweenNodes = &metav1.Duration{Duration: 10 * time.Minute}
		}),
		peers: []v1alpha1.BottlerocketNode{
			node("b", v1alpha1.PhaseUpdated, "", func(n *v1alpha1.BottlerocketNode) { n.Status.UpdatedTime = mt(now.Add(-4 * time.Minute)) }),
			node("c", v1alpha1.PhaseUpdated, "", func(n *v1alpha1.BottlerocketNode) { n.Status.UpdatedTime = mt(now.Add(-30 * time.Minute)) }),
		},
		want: "pauseBetweenNodes 10m0s: a slot is free again at 14:06 UTC (in 6m)",
	}, {
		name: "failed: the retry command",
		node: node("a", v1alpha1.PhaseFailed, v1alpha1.ReasonFallback, func(n *v1alpha1.BottlerocketNode) {
			n.Status.FailedTarget = "1.26.0"
		}),
		policy: policy(),
		want:   "it failed for 1.26.0 (BootFallback); it is not retried for that version until you run kubectl bottlerocket retry a",
	}, {
		name:   "halted: resume",
		node:   node("a", v1alpha1.PhasePending, v1alpha1.ReasonRolloutHalted),
		policy: policy(func(p *v1alpha1.UpdatePolicy) { p.Spec.FailurePolicy.MaxFailedNodes = 2 }),
		peers:  []v1alpha1.BottlerocketNode{node("x", v1alpha1.PhaseFailed, v1alpha1.ReasonFallback), node("y", v1alpha1.PhaseFailed, v1alpha1.ReasonReadyTimeout)},
		want:   "the rollout halted: 2 nodes failed, failurePolicy.maxFailedNodes 2: run kubectl bottlerocket resume fleet (or retry the failed nodes, or change spec.version)",
	}, {
		name: "excluded: include",
		node: node("a", v1alpha1.PhaseIdle, v1alpha1.ReasonExcluded, func(n *v1alpha1.BottlerocketNode) { n.Spec.Policy = "" }),
		want: "excluded: run kubectl bottlerocket include a",
	}, {
		name: "drain blocked: the message and when drain.timeout applies",
		node: node("a", v1alpha1.PhaseDraining, v1alpha1.ReasonEvictionBlocked, func(n *v1alpha1.BottlerocketNode) {
			n.Status.Message = "pod default/web-0 is held by PodDisruptionBudget default/web"
			n.Status.PhaseStartTime = mt(now.Add(-5 * time.Minute))
		}),
		policy: policy(),
		want:   "pod default/web-0 is held by PodDisruptionBudget default/web; at drain.timeout, 14:10 UTC (in 10m), the node is uncordoned and Failed (onTimeout Abort)",
	}, {
		name: "not offered: what the host is offered",
		node: node("a", v1alpha1.PhasePending, v1alpha1.ReasonTargetNotOffered, func(n *v1alpha1.BottlerocketNode) {
			n.Status.Agent = &v1alpha1.AgentStatus{AvailableVersions: []string{"1.25.0"}}
		}),
		policy: policy(),
		want:   "the host's update repository does not offer 1.26.0 (it offers 1.25.0): it waits until the repository does, or change spec.version",
	}, {
		name:   "a policy gone: the node's own message",
		node:   node("a", v1alpha1.PhasePending, v1alpha1.ReasonBudgetExhausted),
		policy: nil,
		want:   "its policy fleet is gone: the controller's words",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Explain(&Facts{Node: &tt.node, Policy: tt.policy, Peers: tt.peers, Now: now, Location: time.UTC})
			if e.Unblock != tt.want {
				t.Errorf("unblock:\n got %q\nwant %q", e.Unblock, tt.want)
			}
		})
	}
}

func TestSummarise(t *testing.T) {
	p := policy(withWaves, func(p *v1alpha1.UpdatePolicy) {
		p.Spec.MaxUnavailable = ptr.To(intstr.FromString("20%"))
		p.Status.Unavailable = 1
		p.Status.Waves[0].CompletionTime = mt(now.Add(-time.Hour))
		p.Spec.MaintenanceWindows = []v1alpha1.MaintenanceWindow{{Schedule: "0 13 * * *", Duration: metav1.Duration{Duration: 2 * time.Hour}}}
		p.Status.EstimatedCompletionTime = mt(now.Add(26 * time.Hour))
	})
	nodes := []v1alpha1.BottlerocketNode{
		node("n1", v1alpha1.PhasePending, v1alpha1.ReasonBudgetExhausted),
		node("n2", v1alpha1.PhasePending, v1alpha1.ReasonBudgetExhausted),
		node("n3", v1alpha1.PhasePending, v1alpha1.ReasonBudgetExhausted),
		node("n4", v1alpha1.PhasePending, v1alpha1.ReasonBudgetExhausted),
		node("n5", v1alpha1.PhaseFailed, v1alpha1.ReasonFallback),
		node("n6", v1alpha1.PhaseDraining, v1alpha1.ReasonEvictionBlocked),
		node("n7", v1alpha1.PhaseDraining, v1alpha1.ReasonEvicting),
		node("n8", v1alpha1.PhaseUpdated, v1alpha1.ReasonUpToDate),
		node("other", v1alpha1.PhasePending, v1alpha1.ReasonPolicyPaused, func(n *v1alpha1.BottlerocketNode) { n.Spec.Policy = "other" }),
	}
	s := Summarise(p, nodes, now, time.UTC)
	if s.Budget != "2" || s.Unavailable != 1 {
		t.Errorf("budget: got %d/%s, want 1/2 (20%% of 10 rounded up)", s.Unavailable, s.Budget)
	}
	if s.Wave != "rest 0/9" {
		t.Errorf("wave: got %q, want the first wave not complete", s.Wave)
	}
	if s.Window != "open until 15:00 UTC" {
		t.Errorf("window: got %q", s.Window)
	}
	if want := at(now.Add(26*time.Hour), now, time.UTC, ""); s.ETA != want || !strings.Contains(s.ETA, "(in 1d2h)") {
		t.Errorf("ETA: got %q, want %q", s.ETA, want)
	}
	var b strings.Builder
	if err := PrintSummaries(&b, []Summary{s}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"MaxUnavailable", "n1, n2, n3, …", "Failed: BootFallback", "EvictionBlockedByPDB"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"other", "n7", "n8"} {
		if strings.Contains(out, not) {
			t.Errorf("status shows %q, which is not held back by this policy:\n%s", not, out)
		}
	}
	if g := s.Held[0]; g.Reason != v1alpha1.ReasonBudgetExhausted || len(g.Nodes) != 4 {
		t.Errorf("largest group first: got %v", s.Held)
	}
}

func TestWindowDescribe(t *testing.T) {
	daily := func(sched, zone string) []v1alpha1.MaintenanceWindow {
		return []v1alpha1.MaintenanceWindow{{Schedule: sched, Duration: metav1.Duration{Duration: time.Hour}, TimeZone: zone}}
	}
	tests := []struct {
		windows []v1alpha1.MaintenanceWindow
		want    string
	}{
		{nil, "always"},
		{daily("0 22 * * *", "Europe/Berlin"), "22:00 Europe/Berlin"},
		{daily("30 13 * * *", "UTC"), "open until 14:30 UTC"},
		{daily("0 9 * * 1", "America/New_York"), "Mon 09:00 America/New_York"},
		{daily("0 9 * * 1", "Mars/Olympus"), "invalid: maintenanceWindows[0]: time zone \"Mars/Olympus\": unknown time zone Mars/Olympus"},
	}
	for _, tt := range tests {
		spec := v1alpha1.UpdatePolicySpec{MaintenanceWindows: tt.windows}
		if got := windowsAt(&spec, "", now).describe(now); got != tt.want {
			t.Errorf("%v: got %q, want %q", tt.windows, got, tt.want)
		}
	}
}

func TestPlans(t *testing.T) {
	halted := policy(func(p *v1alpha1.UpdatePolicy) {
		p.Status.Phase = v1alpha1.RolloutHalted
	})
	pausedHalted := policy(func(p *v1alpha1.UpdatePolicy) {
		p.Spec.Paused = true
		p.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionStalled, Status: "True", Reason: string(v1alpha1.ReasonFailureBudgetSpent)}}
	})
	failed := node("a", v1alpha1.PhaseFailed, v1alpha1.ReasonFallback)
	retried := node("a", v1alpha1.PhaseFailed, v1alpha1.ReasonFallback, func(n *v1alpha1.BottlerocketNode) {
		n.Annotations = map[string]string{v1alpha1.AnnotationRetry: "1"}
	})
	pending := node("a", v1alpha1.PhasePending, v1alpha1.ReasonBudgetExhausted)
	plain := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a"}}
	excluded := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a", Annotations: map[string]string{v1alpha1.AnnotationExclude: "true"}}}
	ts := "1796479200" // now, in seconds
	tests := []struct {
		name  string
		plan  Change
		patch string // "" : nothing written
	}{
		{"pause", PlanPause(policy()), `{"spec":{"paused":true}}`},
		{"pause a paused policy", PlanPause(policy(func(p *v1alpha1.UpdatePolicy) { p.Spec.Paused = true })), ""},
		{"resume a paused policy", PlanResume(policy(func(p *v1alpha1.UpdatePolicy) { p.Spec.Paused = true }), now), `{"spec":{"paused":false}}`},
		{"resume a halted rollout", PlanResume(halted, now), `{"metadata":{"annotations":{"updates.bottlerocket.aws/resume":"` + ts + `"}}}`},
		{"resume a paused, halted rollout", PlanResume(pausedHalted, now), `{"metadata":{"annotations":{"updates.bottlerocket.aws/resume":"` + ts + `"}},"spec":{"paused":false}}`},
		{"resume a running rollout: a resume would forgive its failures", PlanResume(policy(), now), ""},
		{"retry a Failed node", PlanRetry(&failed, now), `{"metadata":{"annotations":{"updates.bottlerocket.aws/retry":"` + ts + `"}}}`},
		{"retry again before the controller acted", PlanRetry(&retried, now), ""},
		{"retry a node that is not Failed", PlanRetry(&pending, now), ""},
		{"exclude", PlanExclude(plain), `{"metadata":{"annotations":{"updates.bottlerocket.aws/exclude":"true"}}}`},
		{"exclude an excluded node", PlanExclude(excluded), ""},
		{"include", PlanInclude(excluded), `{"metadata":{"annotations":{"updates.bottlerocket.aws/exclude":null}}}`},
		{"include a node not excluded", PlanInclude(plain), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if string(tt.plan.Patch) != tt.patch {
				t.Errorf("patch: got %s, want %s", tt.plan.Patch, tt.patch)
			}
			if tt.patch != "" && !json.Valid(tt.plan.Patch) {
				t.Errorf("patch is not JSON: %s", tt.plan.Patch)
			}
			if (tt.patch == "") != strings.Contains(tt.plan.Message, "(no change)") {
				t.Errorf("message %q must say (no change) exactly when nothing is written", tt.plan.Message)
			}
		})
	}
}

func TestDrainBlockers(t *testing.T) {
	pod := func(name string, labels map[string]string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: labels}}
	}
	pdb := func(name, app string, allowed, desired, healthy int32) policyv1.PodDisruptionBudget {
		return policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
			Status:     policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed, DesiredHealthy: desired, CurrentHealthy: healthy},
		}
	}
	web, db := map[string]string{"app": "web"}, map[string]string{"app": "db"}
	cache := []controllers.RefusedPod{{Pod: pod("cache-1", nil), Why: "has emptyDir data and drain.deleteEmptyDirData is false"}}
	tests := []struct {
		name      string
		pods      []corev1.Pod
		refused   []controllers.RefusedPod
		pdbs      []policyv1.PodDisruptionBudget
		others    int
		onTimeout v1alpha1.DrainTimeoutAction
		want      []string
	}{
		{"a budget with room refuses nothing", []corev1.Pod{pod("web-1", web)}, nil, []policyv1.PodDisruptionBudget{pdb("web", "web", 1, 2, 3)}, 3, "", nil},
		{"a budget allowing none is named once, with its counts", []corev1.Pod{pod("web-1", web), pod("web-2", web)}, nil,
			[]policyv1.PodDisruptionBudget{pdb("web", "web", 0, 3, 2)}, 3, "",
			[]string{"PDB shop/web allows 0 disruptions: it needs 3 healthy pods, 2 are (pod web-1)"}},
		{"a pod two budgets select cannot be evicted", []corev1.Pod{pod("db-1", db)}, nil,
			[]policyv1.PodDisruptionBudget{pdb("db", "db", 1, 1, 2), pdb("db-too", "db", 1, 1, 2)}, 3, "",
			[]string{"pod shop/db-1 is selected by 2 PodDisruptionBudgets: the API server refuses to evict it"}},
		{"a budget in another namespace does not count", []corev1.Pod{pod("web-1", web)}, nil,
			[]policyv1.PodDisruptionBudget{func() policyv1.PodDisruptionBudget { b := pdb("web", "web", 0, 1, 0); b.Namespace = "other"; return b }()}, 3, "", nil},
		{"pods and no other schedulable Node", []corev1.Pod{pod("web-1", web)}, nil, nil, 0, "", []string{"no other schedulable Node to take its 1 pods"}},
		{"no pods: nothing to refuse", nil, nil, nil, 0, "", nil},
		{"a pod the drain leaves is named, and what then happens (onTimeout unset: Abort)", nil, cache, nil, 0, "",
			[]string{"pod shop/cache-1 has emptyDir data and drain.deleteEmptyDirData is false: it is never evicted, the drain times out (onTimeout: Abort)"}},
		{"a pod the drain leaves comes first, then the budgets", []corev1.Pod{pod("web-1", web)}, cache,
			[]policyv1.PodDisruptionBudget{pdb("web", "web", 0, 3, 2)}, 3, v1alpha1.DrainTimeoutForce,
			[]string{"pod shop/cache-1 has emptyDir data and drain.deleteEmptyDirData is false: it is never evicted, the drain times out (onTimeout: Force)",
				"PDB shop/web allows 0 disruptions: it needs 3 healthy pods, 2 are (pod web-1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := drainBlockers(tt.pods, tt.refused, tt.pdbs, tt.others, v1alpha1.DrainSpec{OnTimeout: tt.onTimeout}.TimeoutAction()); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDrainBlockersNamePodsTheDrainLeaves checks that plan names the pods the controller's own
// drain rules (controllers.PodsToEvict) leave on a node: a running pod with emptyDir data
// under drain.deleteEmptyDirData: false, not a finished one, and none when the policy lets
// emptyDir data go.
func TestDrainBlockersNamePodsTheDrainLeaves(t *testing.T) {
	emptyDir := []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	pod := func(name string, phase corev1.PodPhase, volumes []corev1.Volume) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec: corev1.PodSpec{NodeName: "a", Volumes: volumes}, Status: corev1.PodStatus{Phase: phase}}
	}
	kube := fake.NewClientset(pod("web-1", corev1.PodRunning, nil), pod("cache-1", corev1.PodRunning, emptyDir),
		pod("batch-1", corev1.PodSucceeded, emptyDir))
	for _, tt := range []struct {
		name  string
		spec  v1alpha1.DrainSpec
		evict []string
		want  []string
	}{
		{"deleteEmptyDirData: false", v1alpha1.DrainSpec{DeleteEmptyDirData: ptr.To(false)}, []string{"batch-1", "web-1"},
			[]string{"pod shop/cache-1 has emptyDir data and drain.deleteEmptyDirData is false: it is never evicted, the drain times out (onTimeout: Abort)"}},
		{"deleteEmptyDirData: true", v1alpha1.DrainSpec{DeleteEmptyDirData: ptr.To(true)}, []string{"batch-1", "cache-1", "web-1"}, nil},
		{"deleteEmptyDirData unset (true)", v1alpha1.DrainSpec{}, []string{"batch-1", "cache-1", "web-1"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pods, refused, err := controllers.PodsToEvict(context.Background(), kube, "a", tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			var evict []string
			for _, p := range pods {
				evict = append(evict, p.Name)
			}
			if slices.Sort(evict); !slices.Equal(evict, tt.evict) {
				t.Errorf("evicted: got %q, want %q", evict, tt.evict)
			}
			if got := drainBlockers(pods, refused, nil, 3, tt.spec.TimeoutAction()); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// eventRecorders is the least a leader election lock needs to be built.
type eventRecorders struct{}

func (eventRecorders) GetEventRecorderFor(string) record.EventRecorder {
	return record.NewFakeRecorder(1)
}
func (eventRecorders) GetEventRecorder(string) recorder.EventRecorder { return nil }

// TestHolderPod checks that the pod plan looks for is the one whose hostname controller-runtime's
// leader election puts in the Lease it holds, and a pod's hostname is its name.
func TestHolderPod(t *testing.T) {
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	lock, err := leaderelection.NewResourceLock(&rest.Config{Host: "https://127.0.0.1:1"}, eventRecorders{}, leaderelection.Options{
		LeaderElection: true, LeaderElectionID: controllers.LeaderElectionID, LeaderElectionNamespace: "bottlerocket-update-operator"})
	if err != nil {
		t.Fatal(err)
	}
	if got := holderPod(lock.Identity()); got != hostname {
		t.Errorf("controller-runtime's identity %q: got pod %q, want %q", lock.Identity(), got, hostname)
	}
	if got := holderPod("bottlerocket-update-controller-6b8f9c7d4-x2x9k_0f6c2b1e-5d9a-4c3e-9a7b-2d1f8e6c4b3a"); got != "bottlerocket-update-controller-6b8f9c7d4-x2x9k" {
		t.Errorf("got %q", got)
	}
}
