package timeline

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bottlerocket-ops/update-operator/api/v1alpha1"
	"github.com/bottlerocket-ops/update-operator/test/framework/invariants"
)

// world builds snapshots of a small fleet: each step names every node's phase, and which
// nodes are cordoned or not Ready.
type world struct {
	policy v1alpha1.UpdatePolicy
	nodes  []invariants.Node
}

func newWorld(n int) *world {
	two := intstr.FromInt32(2)
	one := intstr.FromInt32(1)
	all := intstr.FromString("100%")
	w := &world{policy: v1alpha1.UpdatePolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "fleet"},
		Spec: v1alpha1.UpdatePolicySpec{
			Version: v1alpha1.VersionLatest, MaxUnavailable: &two,
			Waves: []v1alpha1.Wave{
				{Name: "canary", Nodes: &one, SoakTime: &metav1.Duration{Duration: 10 * time.Minute}},
				{Name: "rest", Nodes: &all},
			},
			MaintenanceWindows: []v1alpha1.MaintenanceWindow{{Schedule: "0 22 * * *", Duration: metav1.Duration{Duration: 2 * time.Hour}, TimeZone: "UTC"}},
		},
		Status: v1alpha1.UpdatePolicyStatus{TargetVersion: "1.26.0", MaxUnavailable: 2},
	}}
	for i := range n {
		wave := "rest"
		if i == 0 {
			wave = "canary"
		}
		w.nodes = append(w.nodes, invariants.Node{
			Node: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)},
				Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
			BRN: &v1alpha1.BottlerocketNode{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%d", i)},
				Status: v1alpha1.BottlerocketNodeStatus{Phase: v1alpha1.PhaseIdle, Wave: wave}},
		})
	}
	return w
}

// set gives node i a phase, cordoned and not Ready while it is disrupted.
func (w *world) set(i int, phase v1alpha1.NodePhase) {
	n := w.nodes[i]
	n.BRN.Status.Phase = phase
	n.Node.Spec.Unschedulable = phase == v1alpha1.PhaseDraining || phase == v1alpha1.PhaseRebooting
	ready := corev1.ConditionTrue
	if phase == v1alpha1.PhaseRebooting {
		ready = corev1.ConditionFalse
	}
	n.Node.Status.Conditions[0].Status = ready
}

// snapshot is a deep copy of the world at now.
func (w *world) snapshot(now time.Time) invariants.Snapshot {
	s := invariants.Snapshot{Now: now, Policies: []v1alpha1.UpdatePolicy{*w.policy.DeepCopy()}}
	for _, n := range w.nodes {
		s.Nodes = append(s.Nodes, invariants.Node{Node: n.Node.DeepCopy(), BRN: n.BRN.DeepCopy()})
	}
	return s
}

func TestPictureAgreesWithTheRollout(t *testing.T) {
	// Six nodes, budget 2, a canary soaked 10 min, a nightly window 22:00–24:00 UTC: the
	// canary at 22:00, the rest two at a time from 22:20, one of them failing; a person
	// cordons an updated node for a while (it counts: the picture shows the world); the
	// picture ends the next night at 22:30.
	start := time.Date(2026, 12, 1, 21, 50, 0, 0, time.UTC)
	w := newWorld(6)
	r := NewRecorder("fleet", time.UTC)
	at := start
	step := func(d time.Duration, change func()) {
		at = at.Add(d)
		change()
		r.Observe(w.snapshot(at))
	}
	// Applied before the release, the policy completed its waves at once for the version the
	// nodes ran: that is not this rollout's soak.
	w.policy.Status.TargetVersion = "1.25.0"
	w.policy.Status.Waves = []v1alpha1.WaveStatus{{Name: "canary", Nodes: 1, Updated: 1, CompletionTime: &metav1.Time{Time: at}}}
	step(0, func() {})
	step(time.Minute, func() { w.policy.Status.TargetVersion, w.policy.Status.Waves = "1.26.0", nil })
	step(9*time.Minute, func() { w.set(0, v1alpha1.PhaseDraining) })
	step(time.Minute, func() { w.set(0, v1alpha1.PhaseRebooting) })
	step(time.Minute, func() { w.set(0, v1alpha1.PhaseStabilizing) })
	var canaryDone time.Time
	step(time.Minute, func() {
		w.set(0, v1alpha1.PhaseUpdated)
		canaryDone = at
		w.policy.Status.Waves = []v1alpha1.WaveStatus{{Name: "canary", Nodes: 1, Updated: 1, CompletionTime: &metav1.Time{Time: at}}}
	})
	step(7*time.Minute, func() {}) // the soak goes on; nothing changes
	for _, pair := range [][2]int{{1, 2}, {3, 4}} {
		step(3*time.Minute, func() { w.set(pair[0], v1alpha1.PhaseDraining); w.set(pair[1], v1alpha1.PhaseDraining) })
		step(time.Minute, func() { w.set(pair[0], v1alpha1.PhaseRebooting); w.set(pair[1], v1alpha1.PhaseRebooting) })
		step(time.Minute, func() { w.set(pair[0], v1alpha1.PhaseUpdated); w.set(pair[1], v1alpha1.PhaseUpdated) })
	}
	step(time.Minute, func() { w.set(5, v1alpha1.PhaseDraining) })
	step(time.Minute, func() { w.set(5, v1alpha1.PhaseFailed); w.nodes[5].Node.Spec.Unschedulable = false })
	step(time.Minute, func() { w.nodes[0].Node.Spec.Unschedulable = true })
	step(time.Hour, func() { w.nodes[0].Node.Spec.Unschedulable = false })
	r.Finish(time.Date(2026, 12, 2, 22, 30, 0, 0, time.UTC))

	f, svg := draw(t, r)
	final := map[v1alpha1.NodePhase]int{v1alpha1.PhaseUpdated: 5, v1alpha1.PhaseFailed: 1}
	if !mapsEqual(f.Final, final) {
		t.Errorf("nodes by phase at the end: drawn %v, were %v", f.Final, final)
	}
	// Peak: the two rebooting nodes, plus none; the cordon by hand came later, alone.
	if f.PeakUnavailable != 2 || f.Budget != 2 {
		t.Errorf("unavailable: drawn peak %d of budget %d, was 2 of 2", f.PeakUnavailable, f.Budget)
	}
	if f.Windows != 2 {
		t.Errorf("maintenance windows shaded: %d, want 2 (22:00–24:00 on the first night, 22:00–22:30 on the next)", f.Windows)
	}
	soak := Soak{Wave: "canary", From: canaryDone, To: canaryDone.Add(10 * time.Minute)}
	if len(f.Soaks) != 1 || f.Soaks[0] != soak || !slices.Equal(f.WaveStarts, []string{"canary", "rest"}) {
		t.Errorf("waves: soaks shaded %v, starts marked %q; want [%v] and [canary rest]", f.Soaks, f.WaveStarts, soak)
	}
	for _, label := range []string{"Updated 5", "Failed 1", "unavailable, peak 2", "Rollout of policy fleet to 1.26.0", "Wed 00:00"} {
		if !strings.Contains(svg, label) {
			t.Errorf("the picture does not say %q", label)
		}
	}
}

func TestPictureCountsUnavailableFromTheNodes(t *testing.T) {
	// Nodes cordoned or not Ready count whatever their BottlerocketNode says: one cordoned by
	// a person, one NotReady on its own, while the operator disrupts a third.
	w := newWorld(4)
	r := NewRecorder("fleet", nil)
	now := time.Date(2026, 12, 1, 22, 30, 0, 0, time.UTC)
	r.Observe(w.snapshot(now))
	w.nodes[1].Node.Spec.Unschedulable = true
	w.nodes[2].Node.Status.Conditions[0].Status = corev1.ConditionFalse
	w.set(3, v1alpha1.PhaseDraining)
	r.Observe(w.snapshot(now.Add(time.Minute)))
	w.nodes[1].Node.Spec.Unschedulable = false
	r.Observe(w.snapshot(now.Add(2 * time.Minute)))

	f, _ := draw(t, r)
	if f.PeakUnavailable != 3 {
		t.Errorf("peak unavailable drawn %d, want 3 (cordoned by hand, NotReady, draining)", f.PeakUnavailable)
	}
	if want := map[v1alpha1.NodePhase]int{v1alpha1.PhaseIdle: 3, v1alpha1.PhaseDraining: 1}; !mapsEqual(f.Final, want) {
		t.Errorf("nodes by phase at the end: drawn %v, want %v", f.Final, want)
	}
}

func TestPictureEndsWithTheLastChange(t *testing.T) {
	// The last node finishes a moment before the picture ends (the demo stops as soon as it
	// sees it): the picture's right edge shows every node updated, not the moment before too.
	w := newWorld(3)
	r := NewRecorder("fleet", nil)
	now := time.Date(2026, 12, 1, 22, 30, 0, 0, time.UTC)
	r.Observe(w.snapshot(now))
	w.set(0, v1alpha1.PhaseUpdated)
	w.set(1, v1alpha1.PhaseUpdated)
	r.Observe(w.snapshot(now.Add(80 * time.Second)))
	w.set(2, v1alpha1.PhaseUpdated)
	r.Observe(w.snapshot(now.Add(90 * time.Second)))
	r.Finish(now.Add(90*time.Second + time.Millisecond))
	if f, _ := draw(t, r); !mapsEqual(f.Final, map[v1alpha1.NodePhase]int{v1alpha1.PhaseUpdated: 3}) {
		t.Errorf("nodes by phase at the end: drawn %v, want 3 Updated", f.Final)
	}
}

func TestPictureStartsWithThePolicy(t *testing.T) {
	// Nodes join NotReady before the policy exists: that is no part of its rollout.
	w := newWorld(3)
	r := NewRecorder("fleet", nil)
	now := time.Date(2026, 12, 1, 22, 30, 0, 0, time.UTC)
	for _, n := range w.nodes {
		n.Node.Status.Conditions[0].Status = corev1.ConditionFalse
	}
	before := w.snapshot(now)
	before.Policies = nil
	r.Observe(before)
	if err := r.Render(&bytes.Buffer{}); !errors.Is(err, ErrNothingObserved) {
		t.Fatalf("Render with no snapshot of the policy: %v, want ErrNothingObserved", err)
	}
	for _, n := range w.nodes {
		n.Node.Status.Conditions[0].Status = corev1.ConditionTrue
	}
	r.Observe(w.snapshot(now.Add(time.Second)))
	if f, _ := draw(t, r); f.PeakUnavailable != 0 {
		t.Fatalf("peak unavailable drawn %d, want 0: the nodes were Ready once the policy existed", f.PeakUnavailable)
	}
}

func TestReadRefusesAPictureThatIsNotWellFormed(t *testing.T) {
	for name, doc := range map[string]string{
		"unclosed": `<svg xmlns="http://www.w3.org/2000/svg"><g id="phases">`,
		"not svg":  `<html></html>`,
		"bad scale": `<svg xmlns="http://www.w3.org/2000/svg"><g id="unavailable" data-base="x" data-unit="1">` +
			`<polyline data-series="unavailable" points="1,2"/></g></svg>`,
	} {
		if _, err := Read(strings.NewReader(doc)); err == nil {
			t.Errorf("%s: read without an error", name)
		}
	}
}

// draw renders r and reads the picture back.
func draw(t *testing.T, r *Recorder) (Figures, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Render(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("the picture does not read back: %v\n%s", err, buf.String())
	}
	return f, buf.String()
}

func mapsEqual(a, b map[v1alpha1.NodePhase]int) bool {
	for k, v := range a {
		if v != 0 && b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}
